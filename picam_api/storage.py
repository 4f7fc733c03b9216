"""The photo store: image files in the data dir, indexed in SQLite.

A file is written (atomically) before its index row, and a row is deleted before
its file, so after a crash the only possible leftovers are files with no row;
``recover()`` removes them and stale temp files on start.
"""
from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import json
import logging
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from .camera import Capture, CaptureSettings
from .clock import iso
from .db import Database
from .errors import InsufficientStorage, NotFound
from .files import atomic_write, inside, remove_temp_files
from .ids import is_id, new_id
from .pagination import make_cursor, open_cursor

log = logging.getLogger(__name__)

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
            trigger: str | None = None, taken_at: dt.datetime | None = None,
            on_indexed: Callable[[sqlite3.Connection], None] | None = None) -> Photo:
        """Write the image and index it. Nothing is indexed unless the file is whole.

        ``on_indexed(conn)`` runs inside the transaction that indexes the photo, so
        a caller's own bookkeeping (a time-lapse's frame count) commits with it.
        """
        self.check_space(len(capture.data))
        # UTC throughout: the id, the dated folder and taken_at must agree.
        taken_at = (taken_at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        photo_id = new_id(taken_at)
        relative = Path("photos", f"{taken_at:%Y/%m/%d}", f"{photo_id}.{EXTENSIONS[capture.format]}")
        photo = Photo(
            id=photo_id, taken_at=iso(taken_at), path=str(relative),
            width=capture.width, height=capture.height, format=capture.format,
            bytes=len(capture.data), etag=hashlib.sha256(capture.data).hexdigest()[:32],
            settings=settings.to_dict(), metadata=capture.metadata, source=source,
            timelapse_id=timelapse_id, sequence=sequence, trigger=trigger)
        try:
            # Inside the try: a write can fail after its rename (the directory's fsync),
            # and the file must not outlive the failure as an unindexed orphan.
            _write(self.root / relative, capture.data)
            with self.db.transaction() as conn:
                conn.execute(
                    f"INSERT INTO photos ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
                    (photo.id, photo.taken_at, photo.path, photo.width, photo.height,
                     photo.format, photo.bytes, photo.etag, json.dumps(photo.settings),
                     json.dumps(photo.metadata, default=str), photo.source,
                     photo.timelapse_id, photo.sequence, photo.trigger))
                if on_indexed:
                    on_indexed(conn)
        except BaseException:
            (self.root / relative).unlink(missing_ok=True)
            raise
        return photo

    # -- reading -----------------------------------------------------------------

    def get(self, photo_id: str) -> Photo:
        if not is_id(photo_id):
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
            args.append(open_cursor(self._cursor_key, cursor, timelapse))
        sql = (f"SELECT {COLUMNS} FROM photos {'WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY id DESC LIMIT ?")
        rows = self.db.conn.execute(sql, (*args, limit + 1)).fetchall()
        photos = [Photo.from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return photos, make_cursor(self._cursor_key, photos[-1].id, timelapse) if more else None

    def iter_frames(self, timelapse_id: str, batch: int = 200) -> Iterator[Photo]:
        """A time-lapse's frames in sequence order, read a batch at a time."""
        after = 0
        while True:
            rows = self.db.conn.execute(
                f"SELECT {COLUMNS} FROM photos WHERE timelapse_id = ? AND sequence > ? "
                f"ORDER BY sequence LIMIT ?", (timelapse_id, after, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield Photo.from_row(row)
            after = rows[-1]["sequence"]

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
            _write(path, buffer.getvalue())
            # Deleted (by a client or retention) while we drew it: its delete may
            # already have run, so take the thumbnail away ourselves.
            if not self.db.conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo.id,)).fetchone():
                path.unlink(missing_ok=True)
                raise NotFound(f"photo {photo.id} was deleted")
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

    def delete_frames(self, timelapse_id: str) -> int:
        """Delete every frame of a time-lapse; return how many."""
        photos = list(self.iter_frames(timelapse_id))
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM photos WHERE id = ?", [(p.id,) for p in photos])
        for photo in photos:
            self._unlink(photo)
        return len(photos)

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
        """Remove temp files, and image files and thumbnails with no row, left by a crash."""
        self.photos_dir.mkdir(parents=True, exist_ok=True)
        self.thumbs_dir.mkdir(parents=True, exist_ok=True)
        temps = remove_temp_files(self.root)
        rows = self.db.conn.execute("SELECT id, path FROM photos").fetchall()
        indexed = {path for _, path in rows}
        # A crash between deleting a row and its files leaves a thumbnail too.
        thumbnails = {f"{photo_id}.jpg" for photo_id, _ in rows}
        orphans = 0
        for path in self.photos_dir.rglob("*"):
            if path.is_file() and str(path.relative_to(self.root)) not in indexed:
                path.unlink()
                orphans += 1
        for path in self.thumbs_dir.iterdir():
            if path.is_file() and path.name not in thumbnails:
                path.unlink()
                orphans += 1
        if temps or orphans:
            log.warning("recovered from an unclean stop: removed %d temp file(s) and "
                        "%d unindexed image(s) or thumbnail(s)", temps, orphans)


def _write(path: Path, data: bytes) -> None:
    """``atomic_write``, with a full disk reported as 507 rather than a server fault."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("the disk is full; nothing was stored") from exc
        raise

