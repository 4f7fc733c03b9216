"""The photo store: image files in the data dir, indexed in SQLite.

A file is written (atomically) before its index row, and a row is deleted before
its file, so after a crash the only possible leftovers are files with no row;
``recover()`` removes them and stale temp files on start.
"""
from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .camera import Capture, CaptureSettings
from .db import Database
from .errors import BadRequest, InsufficientStorage, NotFound
from .files import atomic_write, inside, remove_temp_files

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")
EXTENSIONS = {"jpeg": "jpg", "png": "png"}
COLUMNS = ("id, taken_at, path, width, height, format, bytes, etag, settings, metadata, "
           "source, timelapse_id, sequence, trigger")


@dataclass(frozen=True)
class Photo:
    """One stored photo, as indexed."""

    id: str
    taken_at: str
    path: str
    width: int
    height: int
    format: str
    bytes: int
    etag: str
    settings: dict
    metadata: dict
    source: str
    timelapse_id: str | None
    sequence: int | None
    trigger: str | None

    @classmethod
    def from_row(cls, row) -> "Photo":
        values = dict(row)
        values["settings"] = json.loads(values["settings"])
        values["metadata"] = json.loads(values["metadata"])
        return cls(**values)

    @property
    def taken_at_datetime(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.taken_at)


class PhotoStore:
    """Stores, lists, serves and deletes photos; guards free space; applies retention."""

    def __init__(self, db: Database, data_dir: Path, reserve_bytes: int, thumbnail_px: int,
                 cursor_key: bytes):
        self.db = db
        self.root = data_dir
        self.photos_dir = data_dir / "photos"
        self.thumbs_dir = data_dir / "thumbnails"
        self.reserve_bytes = reserve_bytes
        self.thumbnail_px = thumbnail_px
        self._cursor_key = cursor_key

    # -- writing -----------------------------------------------------------------

    def check_space(self, incoming: int = 0) -> None:
        """Raise ``InsufficientStorage`` if storing ``incoming`` bytes would cross the reserve."""
        free = shutil.disk_usage(self.root).free
        if free - incoming < self.reserve_bytes:
            raise InsufficientStorage(
                f"only {free // 2**20} MiB free in the data dir; the reserve is "
                f"{self.reserve_bytes // 2**20} MiB. Delete photos or lower storage.reserve_mb.")

    def add(self, capture: Capture, settings: CaptureSettings, source: str = "api",
            timelapse_id: str | None = None, sequence: int | None = None,
            trigger: str | None = None, taken_at: dt.datetime | None = None) -> Photo:
        """Write the image and index it. Nothing is indexed unless the file is whole."""
        self.check_space(len(capture.data))
        taken_at = taken_at or dt.datetime.now(dt.timezone.utc)
        photo_id = f"{taken_at:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"
        relative = Path("photos", f"{taken_at:%Y/%m/%d}", f"{photo_id}.{EXTENSIONS[capture.format]}")
        try:
            atomic_write(self.root / relative, capture.data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage("the disk is full; nothing was stored") from exc
            raise
        photo = Photo(
            id=photo_id, taken_at=_iso(taken_at), path=str(relative),
            width=capture.width, height=capture.height, format=capture.format,
            bytes=len(capture.data), etag=hashlib.sha256(capture.data).hexdigest()[:32],
            settings=settings.to_dict(), metadata=capture.metadata, source=source,
            timelapse_id=timelapse_id, sequence=sequence, trigger=trigger)
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    f"INSERT INTO photos ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
                    (photo.id, photo.taken_at, photo.path, photo.width, photo.height,
                     photo.format, photo.bytes, photo.etag, json.dumps(photo.settings),
                     json.dumps(photo.metadata, default=str), photo.source,
                     photo.timelapse_id, photo.sequence, photo.trigger))
        except BaseException:
            (self.root / relative).unlink(missing_ok=True)
            raise
        return photo

    # -- reading -----------------------------------------------------------------

    def get(self, photo_id: str) -> Photo:
        if not ID_PATTERN.match(photo_id or ""):
            raise NotFound(f"no photo with id {photo_id[:80]!r}")
        row = self.db.conn.execute(f"SELECT {COLUMNS} FROM photos WHERE id = ?",
                                   (photo_id,)).fetchone()
        if row is None:
            raise NotFound(f"no photo with id {photo_id!r}")
        return Photo.from_row(row)

    def list(self, limit: int, cursor: str | None = None,
             timelapse: str | None = None) -> tuple[list[Photo], str | None]:
        """A page of photos, newest first, and the cursor of the next page (or None).

        Keyset pagination on the primary key, so a page costs the same however
        large the library is.
        """
        where, args = [], []
        if timelapse is not None:
            where.append("timelapse_id = ?")
            args.append(timelapse)
        if cursor:
            where.append("id < ?")
            args.append(self._open_cursor(cursor, timelapse))
        sql = (f"SELECT {COLUMNS} FROM photos {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY id DESC LIMIT ?")
        rows = self.db.conn.execute(sql, (*args, limit + 1)).fetchall()
        photos = [Photo.from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return photos, self._make_cursor(photos[-1].id, timelapse) if more else None

    def file(self, photo: Photo) -> Path:
        """The image file of ``photo``, resolved and checked to be inside the data dir."""
        path = inside(self.root, photo.path)
        if not path.is_file():
            raise NotFound(f"the image file of photo {photo.id} is missing")
        return path

    def thumbnail(self, photo: Photo) -> Path:
        """A small JPEG of ``photo``, made on first request and kept."""
        path = inside(self.thumbs_dir, f"{photo.id}.jpg")
        if not path.exists():
            with Image.open(self.file(photo)) as image:
                image.thumbnail((self.thumbnail_px, self.thumbnail_px))
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, "JPEG", quality=80)
            atomic_write(path, buffer.getvalue())
        return path

    def stats(self) -> dict[str, int]:
        count, total = self.db.conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM photos").fetchone()
        return {"count": count, "bytes": total}

    # -- deleting ----------------------------------------------------------------

    def delete(self, photo_id: str) -> None:
        """Remove the index row, then the image and its thumbnail."""
        photo = self.get(photo_id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM photos WHERE id = ?", (photo.id,))
        self._unlink(photo)

    def enforce_retention(self, max_photos: int, max_bytes: int, batch: int = 500) -> int:
        """Delete the oldest photos until both limits hold (0 = no limit); return the count."""
        deleted = 0
        while True:
            stats = self.stats()
            excess = max(stats["count"] - max_photos, 0) if max_photos else 0
            if not excess and not (max_bytes and stats["bytes"] > max_bytes):
                return deleted
            rows = self.db.conn.execute(
                f"SELECT {COLUMNS} FROM photos ORDER BY id ASC LIMIT ?",
                (min(batch, excess) if excess else 1,)).fetchall()
            if not rows:
                return deleted
            photos = [Photo.from_row(row) for row in rows]
            with self.db.transaction() as conn:
                conn.executemany("DELETE FROM photos WHERE id = ?", [(p.id,) for p in photos])
            for photo in photos:
                self._unlink(photo)
            deleted += len(photos)
            log.info("retention deleted %d photo(s), oldest %s", len(photos), photos[0].id)

    def _unlink(self, photo: Photo) -> None:
        (self.root / photo.path).unlink(missing_ok=True)
        (self.thumbs_dir / f"{photo.id}.jpg").unlink(missing_ok=True)

    # -- start-up ----------------------------------------------------------------

    def recover(self) -> None:
        """Remove temp files and unindexed image files left by a crash."""
        self.photos_dir.mkdir(parents=True, exist_ok=True)
        self.thumbs_dir.mkdir(parents=True, exist_ok=True)
        temps = remove_temp_files(self.root)
        indexed = {row[0] for row in self.db.conn.execute("SELECT path FROM photos")}
        orphans = 0
        for path in self.photos_dir.rglob("*"):
            if path.is_file() and str(path.relative_to(self.root)) not in indexed:
                path.unlink()
                orphans += 1
        if temps or orphans:
            log.warning("recovered from an unclean stop: removed %d temp file(s) and "
                        "%d unindexed image(s)", temps, orphans)

    # -- cursors -----------------------------------------------------------------

    def _make_cursor(self, last_id: str, timelapse: str | None) -> str:
        payload = json.dumps([last_id, timelapse], separators=(",", ":")).encode()
        mac = hmac.new(self._cursor_key, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def _open_cursor(self, cursor: str, timelapse: str | None) -> str:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload, mac = raw[:-12], raw[-12:]
            expected = hmac.new(self._cursor_key, payload, hashlib.sha256).digest()[:12]
            if not hmac.compare_digest(mac, expected):
                raise ValueError("signature")
            last_id, cursor_timelapse = json.loads(payload)
        except (ValueError, TypeError, UnicodeDecodeError):
            raise BadRequest("cursor is not one this server issued; start from the first page") \
                from None
        if cursor_timelapse != timelapse:
            raise BadRequest("cursor belongs to a different filter; keep the same query")
        return last_id


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")

