"""The photo store: image files in the data dir, indexed in SQLite.

A file is written (atomically) before its index row, and a row is deleted before
its file, so after a crash the only possible leftovers are files with no row
and temp files. ``recover()`` deletes only the temp files and thumbnails this
service made, and indexes the images again (they may be photos whose rows a
restored backup lacks): it never deletes a photo.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from . import resources
from .camera import Capture, CaptureSettings
from .clock import iso
from .db import Database
from .errors import DamagedFile, InsufficientStorage, NotFound
from .events import NO_EVENTS
from .files import FULL_ERRNOS, TEMP_NAME, atomic_write, inside, remove_temp_files
from .ids import ID_PATTERN, is_id, new_id
from .pagination import Page, keyset_page

log = logging.getLogger(__name__)

EXTENSIONS = {"jpeg": "jpg", "png": "png"}
PIL_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
EXIF_IFD, EXIF_DATETIME_ORIGINAL = 0x8769, 0x9003
THUMBNAIL_NAME = re.compile(f"({ID_PATTERN.pattern})\\.jpg")
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
                 cursor_key: bytes, events=NO_EVENTS):
        self.db = db
        self.events = events
        self.root = data_dir
        self.photos_dir = data_dir / "photos"
        self.thumbs_dir = data_dir / "thumbnails"
        self.reserve_bytes = reserve_bytes
        self.thumbnail_px = thumbnail_px
        self._cursor_key = cursor_key

    # -- writing -----------------------------------------------------------------

    def check_space(self, incoming: int = 0) -> None:
        """Raise ``InsufficientStorage`` if storing ``incoming`` bytes would cross the reserve.

        Also while the database's space reserve (``files.SpaceReserve``) is given up
        and cannot be made again: that room is for deleting, not for new photos.
        """
        if self.db.reserve is not None and not self.db.reserve.ensure():
            raise InsufficientStorage("the disk is full: the room kept for deleting photos is in "
                                      "use. Delete photos or free space in the data dir.")
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
        self.events.publish("photo.created", resources.photo(photo))
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
             timelapse: str | None = None) -> Page[Photo]:
        """A page of photos, newest first (``pagination.keyset_page``)."""
        def fetch(edge: str | None, backwards: bool, n: int) -> list[Photo]:
            where, args = self._filter(timelapse)
            if edge:
                where.append("id > ?" if backwards else "id < ?")
                args.append(edge)
            rows = self.db.conn.execute(
                f"SELECT {COLUMNS} FROM photos {'WHERE ' + ' AND '.join(where) if where else ''} "
                f"ORDER BY id {'ASC' if backwards else 'DESC'} LIMIT ?", (*args, n)).fetchall()
            return [Photo.from_row(row) for row in rows]
        return keyset_page(self._cursor_key, timelapse, limit, cursor, fetch)

    def count(self, timelapse: str | None = None) -> int:
        """How many photos (of one time-lapse) there are; a count over an index."""
        where, args = self._filter(timelapse)
        return self.db.conn.execute(
            f"SELECT count(*) FROM photos {'WHERE ' + ' AND '.join(where) if where else ''}",
            args).fetchone()[0]

    @staticmethod
    def _filter(timelapse: str | None) -> tuple[list[str], list]:
        return (["timelapse_id = ?"], [timelapse]) if timelapse is not None else ([], [])

    def iter_frames(self, timelapse_id: str, batch: int = 200, first: int = 1,
                    last: int | None = None) -> Iterator[Photo]:
        """A time-lapse's frames in sequence order (``first`` to ``last``), a batch at a time."""
        after = first - 1
        while True:
            rows = self.db.conn.execute(
                f"SELECT {COLUMNS} FROM photos WHERE timelapse_id = ? AND sequence > ? "
                f"AND sequence <= ? ORDER BY sequence LIMIT ?",
                (timelapse_id, after, last if last is not None else 2**62, batch)).fetchall()
            if not rows:
                return
            for row in rows:
                yield Photo.from_row(row)
            after = rows[-1]["sequence"]

    def frame_span(self, timelapse_id: str, first: int = 1,
                   last: int | None = None) -> tuple[int, int | None]:
        """How many frames of a time-lapse lie in ``first``..``last``, and the last one's sequence."""
        count, highest = self.db.conn.execute(
            "SELECT count(*), max(sequence) FROM photos WHERE timelapse_id = ? AND sequence >= ? "
            "AND sequence <= ?", (timelapse_id, first, last if last is not None else 2**62)).fetchone()
        return count, highest

    def oldest_id(self) -> str | None:
        """The id of the oldest photo (retention across photos and videos)."""
        row = self.db.conn.execute("SELECT id FROM photos ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def file(self, photo: Photo) -> Path:
        """The image file of ``photo``, resolved and checked to be inside the data dir."""
        path = inside(self.root, photo.path)
        if not path.is_file():
            raise NotFound(f"the image file of photo {photo.id} is missing")
        return path

    def open_image(self, photo: Photo) -> io.BufferedReader:
        """The image file of ``photo``, open: a delete after this cannot take it away."""
        return _open(self.file(photo), photo)

    def open_thumbnail(self, photo: Photo) -> io.BufferedReader:
        """A small JPEG of ``photo``, made on first request and kept; open, as ``open_image``."""
        path = inside(self.thumbs_dir, f"{photo.id}.jpg")
        try:
            return _open(path, photo)
        except NotFound:
            pass
        with self.open_image(photo) as source:
            try:
                with Image.open(source) as image:
                    image.thumbnail((self.thumbnail_px, self.thumbnail_px))
                    buffer = io.BytesIO()
                    image.convert("RGB").save(buffer, "JPEG", quality=80)
            except (OSError, ValueError, Image.DecompressionBombError):
                # Not the client's fault, and nothing a retry mends: a 500 that says so.
                raise DamagedFile(f"the image file of photo {photo.id} is damaged and cannot "
                                  "be made into a thumbnail; the file itself is still served "
                                  "at its image link") from None
        _write(path, buffer.getvalue())
        # Deleted (by a client or retention) while we drew it: its delete may
        # already have run, so take the thumbnail away ourselves.
        if not self.db.conn.execute("SELECT 1 FROM photos WHERE id = ?", (photo.id,)).fetchone():
            path.unlink(missing_ok=True)
            raise NotFound(f"photo {photo.id} was deleted")
        return _open(path, photo)

    def stats(self) -> dict[str, int]:
        count, total = self.db.conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM photos").fetchone()
        return {"count": count, "bytes": total}

    # -- deleting ----------------------------------------------------------------

    def delete(self, photo_id: str) -> None:
        """Remove the index row, then the image and its thumbnail."""
        photo = self.get(photo_id)
        with self.db.transaction(frees_space=True) as conn:
            conn.execute("DELETE FROM photos WHERE id = ?", (photo.id,))
        self._unlink(photo)

    def delete_frames(self, timelapse_id: str) -> int:
        """Delete every frame of a time-lapse; return how many."""
        photos = list(self.iter_frames(timelapse_id))
        with self.db.transaction(frees_space=True) as conn:
            conn.executemany("DELETE FROM photos WHERE id = ?", [(p.id,) for p in photos])
        for photo in photos:
            self._unlink(photo, "timelapse")
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
            with self.db.transaction(frees_space=True) as conn:
                conn.executemany("DELETE FROM photos WHERE id = ?", [(p.id,) for p in photos])
            for photo in photos:
                self._unlink(photo, "retention")
            deleted += len(photos)
            log.info("retention deleted %d photo(s), oldest %s", len(photos), photos[0].id)

    def _unlink(self, photo: Photo, reason: str = "api") -> None:
        """Remove the files of a photo whose row is gone, and say so."""
        (self.root / photo.path).unlink(missing_ok=True)
        (self.thumbs_dir / f"{photo.id}.jpg").unlink(missing_ok=True)
        self.events.publish("photo.deleted", {"id": photo.id, "timelapse_id": photo.timelapse_id,
                                              "reason": reason})

    # -- start-up ----------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Clean up after an unclean stop without losing a photo; return what it did.

        Deletes only what this service made and abandoned: ``atomic_write``'s temp
        files in its own folders, and thumbnails (named by photo id) of photos
        that are gone. A JPEG or PNG under photos/ with no row (the database was
        moved aside, or restored from an older backup) is indexed again with
        source "recovered"; any other file there or in thumbnails/ is moved to
        quarantine/, keeping its path. Each is named in the log.
        """
        self.photos_dir.mkdir(parents=True, exist_ok=True)
        self.thumbs_dir.mkdir(parents=True, exist_ok=True)
        done = {"temp_files_removed": remove_temp_files(self.photos_dir, recursive=True)
                + remove_temp_files(self.thumbs_dir) + remove_temp_files(self.root),
                "thumbnails_removed": 0, "reindexed": 0, "quarantined": 0}
        indexed = {path for (path,) in self.db.conn.execute("SELECT path FROM photos")}
        for path in sorted(self.photos_dir.rglob("*")):
            relative = str(path.relative_to(self.root))
            if relative in indexed or TEMP_NAME.fullmatch(path.name) or (
                    path.is_dir() and not path.is_symlink()):
                continue
            # A link could point anywhere: it is set aside, not followed.
            if not path.is_symlink() and path.is_file() and self._reindex(path, relative):
                done["reindexed"] += 1
            else:
                self._quarantine(path, "not an image this service stores")
                done["quarantined"] += 1
        ids = {photo_id for (photo_id,) in self.db.conn.execute("SELECT id FROM photos")}
        for path in sorted(self.thumbs_dir.iterdir()):
            match = THUMBNAIL_NAME.fullmatch(path.name)
            if match and path.is_file() and not path.is_symlink():
                if match.group(1) not in ids:
                    # Made by this service from a photo that is gone: it can be made again.
                    path.unlink()
                    done["thumbnails_removed"] += 1
            elif not TEMP_NAME.fullmatch(path.name):
                self._quarantine(path, "not a thumbnail this service made")
                done["quarantined"] += 1
        if any(done.values()):
            log.warning("recovered from an unclean stop or a restored database: %s",
                        ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in done.items()))
        return done

    def _reindex(self, path: Path, relative: str) -> bool:
        """Index an image file that has no row; False if it is not a JPEG or PNG we can read."""
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                image.verify()  # a torn or damaged file fails here
            with Image.open(io.BytesIO(data)) as image:
                fmt = PIL_FORMATS.get(image.format or "")
                width, height = image.size
                exif_time = image.getexif().get_ifd(EXIF_IFD).get(EXIF_DATETIME_ORIGINAL)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return False
        if fmt is None:
            return False
        photo_id = path.stem if is_id(path.stem) else None
        if photo_id is None or self.db.conn.execute("SELECT 1 FROM photos WHERE id = ?",
                                                    (photo_id,)).fetchone():
            taken_at = _exif_time(exif_time) or dt.datetime.fromtimestamp(path.stat().st_mtime,
                                                                          dt.timezone.utc)
            photo_id = new_id(taken_at)
        else:
            taken_at = dt.datetime.strptime(photo_id[:21], "%Y%m%dT%H%M%S%f").replace(
                tzinfo=dt.timezone.utc)
        settings = {"width": width, "height": height, "format": fmt}
        with self.db.transaction() as conn:
            conn.execute(
                f"INSERT INTO photos ({COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (photo_id, iso(taken_at), relative, width, height, fmt, len(data),
                 hashlib.sha256(data).hexdigest()[:32], json.dumps(settings),
                 json.dumps({"recovered_at": iso(dt.datetime.now(dt.timezone.utc))}),
                 "recovered", None, None, None))
        log.warning("indexed %s again as photo %s (it had no row)", relative, photo_id)
        return True

    def _quarantine(self, path: Path, why: str) -> None:
        target = self.root / "quarantine" / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target = target.with_name(f"{target.name}.{secrets.token_hex(4)}")
        os.replace(path, target)
        log.warning("moved %s to %s: %s", path.relative_to(self.root),
                    target.relative_to(self.root), why)


def _exif_time(value) -> dt.datetime | None:
    """EXIF's "YYYY:MM:DD HH:MM:SS" (local time of the camera; read as UTC), else None."""
    try:
        return dt.datetime.strptime(str(value), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _open(path: Path, photo: Photo) -> io.BufferedReader:
    try:
        return path.open("rb")
    except (FileNotFoundError, IsADirectoryError):
        raise NotFound(f"the file of photo {photo.id} is gone (deleted meanwhile)") from None


def _write(path: Path, data: bytes) -> None:
    """``atomic_write``, with a full disk reported as 507 rather than a server fault."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise InsufficientStorage("the disk is full; nothing was stored") from exc
        raise

