"""Capture requests: stored defaults, validation, the camera owner and the store."""
from __future__ import annotations

import json
from typing import Any, Mapping

from .camera import Capture, CameraOwner, CaptureSettings
from .camera import settings as camera_settings
from .db import Database
from .storage import Photo, PhotoStore

DEFAULTS_KEY = "capture_defaults"


class CaptureService:
    """Takes snapshots and photos with the user's defaults filled in.

    The defaults (GET/PATCH /api/v1/camera) live in the database, so they
    survive restarts; they are checked against the camera like any request.
    """

    def __init__(self, owner: CameraOwner, photos: PhotoStore, db: Database):
        self.owner = owner
        self.photos = photos
        self.db = db

    def defaults(self) -> dict[str, Any]:
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = ?", (DEFAULTS_KEY,)).fetchone()
        if row:
            return json.loads(row[0])
        return camera_settings.initial_defaults(self.owner.capabilities)

    def update_defaults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``changes`` merged over the current defaults, then store them."""
        settings = self.resolve(changes)
        value = settings.to_dict()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                         "DO UPDATE SET value = excluded.value", (DEFAULTS_KEY, json.dumps(value)))
        return value

    def resolve(self, requested: Mapping[str, Any]) -> CaptureSettings:
        return camera_settings.resolve(requested, self.defaults(), self.owner.capabilities)

    def snapshot(self, requested: Mapping[str, Any]) -> Capture:
        """Capture now and return the image; nothing is stored."""
        return self.owner.capture(self.resolve(requested))

    def take_photo(self, requested: Mapping[str, Any], source: str = "api", **tags) -> Photo:
        """Capture and store. The space check runs first so a full disk costs no capture."""
        settings = self.resolve(requested)
        self.photos.check_space()
        return self.photos.add(self.owner.capture(settings), settings, source=source, **tags)
