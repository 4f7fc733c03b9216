"""Capture requests: stored defaults, validation, the camera owner and the store."""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from .camera import Capture, CameraOwner, CaptureSettings
from .camera import settings as camera_settings
from .db import Database
from .errors import InvalidInput
from .storage import Photo, PhotoStore

log = logging.getLogger(__name__)

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
        self._warned_defaults = False

    def defaults(self) -> dict[str, Any]:
        caps = self.owner.capabilities
        factory = camera_settings.initial_defaults(caps)
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = ?", (DEFAULTS_KEY,)).fetchone()
        if row is None:
            return factory
        stored = {**factory, **json.loads(row[0])}
        try:
            camera_settings.resolve({}, stored, caps)
        except InvalidInput as exc:
            # Saved for another camera (a swapped module, or auto falling back to the
            # mock): a request must not fail on a field it never sent, so each field
            # that no longer fits takes its factory value. The stored row is kept for
            # when that camera comes back.
            bad = exc.extra["errors"]
            stored["controls"] = {name: value for name, value in stored["controls"].items()
                                  if f"controls.{name}" not in bad}
            stored.update({key: factory[key] for key in bad if key in factory})
            if not self._warned_defaults:
                self._warned_defaults = True
                log.warning("saved capture defaults do not fit this camera (%s); using the "
                            "factory value for those fields", exc.detail)
        return stored

    def update_defaults(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``changes`` merged over the current defaults, then store them.

        As in a JSON merge patch, a control set to null is removed from the defaults.
        """
        base = self.defaults()
        controls = {**base["controls"], **changes.get("controls", {})}
        base["controls"] = {name: value for name, value in controls.items() if value is not None}
        fields = {key: value for key, value in changes.items() if key != "controls"}
        settings = camera_settings.resolve(fields, base, self.owner.capabilities)
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
