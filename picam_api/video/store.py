"""The video index: one SQLite row per video, and its MP4 and thumbnail in the data dir.

A video's file appears only when it is whole: it is written under a temp name
and renamed into ``videos/YYYY/MM/DD/<id>.mp4`` (after an fsync) before its row
says ``ready``. So after a crash a row that is not ready has no file, a file
with no ready row is a leftover, and ``recover()`` removes those.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..db import Database
from ..errors import NotFound
from ..files import TEMP_SUFFIX, fsync_dir, inside
from ..ids import ID_PATTERN, is_id
from ..pagination import Page, keyset_page

log = logging.getLogger(__name__)

ACTIVE = ("queued", "recording", "rendering")
# temp_path's names: "." + "<id>.mp4" + "." + 8 hex digits + TEMP_SUFFIX.
TEMP_NAME = re.compile(rf"\.{ID_PATTERN.pattern}\.mp4\.[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}")


@dataclass
class Video:
    """One video, as indexed. ``options`` is the request that made it, resolved."""

    id: str
    state: str
    source: str  # timelapse | clip
    options: dict
    created_at: str
    timelapse_id: str | None = None
    trigger: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    progress: float = 0.0
    path: str | None = None
    frames: int | None = None
    frames_skipped: int = 0
    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    bytes: int | None = None
    attempts: int = 0
    last_error: str | None = None
    # Set while a worker runs it; never stored.
    cancel_requested: bool = field(default=False, compare=False, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def created_datetime(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.created_at)


COLUMNS = [f.name for f in fields(Video) if f.name != "cancel_requested"]


class VideoStore:
    """Reads and writes the ``videos`` table and the files beside it."""

    def __init__(self, db: Database, data_dir: Path, cursor_key: bytes):
        self.db = db
        self.root = data_dir
        self.videos_dir = data_dir / "videos"
        self.thumbs_dir = self.videos_dir / "thumbnails"
        self._cursor_key = cursor_key

    # -- rows ----------------------------------------------------------------------

    def insert(self, video: Video) -> None:
        with self.db.transaction() as conn:
            conn.execute(f"INSERT INTO videos ({', '.join(COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(COLUMNS))})", self._values(video, COLUMNS))

    def save(self, video: Video) -> None:
        columns = [c for c in COLUMNS if c != "id"]
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE videos SET {', '.join(c + ' = ?' for c in columns)} WHERE id = ?",
                         (*self._values(video, columns), video.id))

    def get(self, video_id: str) -> Video:
        row = None
        if is_id(video_id):
            row = self.db.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM videos WHERE id = ?",
                                       (video_id,)).fetchone()
        if row is None:
            raise NotFound(f"no video with id {video_id[:80]!r}")
        return _video(row)

    def list(self, limit: int, cursor: str | None = None, timelapse: str | None = None,
             source: str | None = None) -> Page[Video]:
        """A page of videos, newest first (``pagination.keyset_page``)."""
        def fetch(edge: str | None, backwards: bool, n: int) -> list[Video]:
            where, args = self._filter(timelapse, source)
            if edge:
                where.append("id > ?" if backwards else "id < ?")
                args.append(edge)
            rows = self.db.conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM videos "
                f"{'WHERE ' + ' AND '.join(where) if where else ''} "
                f"ORDER BY id {'ASC' if backwards else 'DESC'} LIMIT ?", (*args, n)).fetchall()
            return [_video(row) for row in rows]
        return keyset_page(self._cursor_key, ["videos", timelapse, source], limit, cursor, fetch)

    def count_matching(self, timelapse: str | None = None, source: str | None = None) -> int:
        """How many videos a list with these filters holds; a count over an index."""
        where, args = self._filter(timelapse, source)
        return self.db.conn.execute(
            f"SELECT count(*) FROM videos {'WHERE ' + ' AND '.join(where) if where else ''}",
            args).fetchone()[0]

    @staticmethod
    def _filter(timelapse: str | None, source: str | None) -> tuple[list[str], list]:
        where, args = [], []
        if timelapse is not None:
            where.append("timelapse_id = ?")
            args.append(timelapse)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        return where, args

    def in_states(self, *states: str) -> list[Video]:
        rows = self.db.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM videos WHERE state IN ({', '.join('?' * len(states))}) "
            f"ORDER BY id", states).fetchall()
        return [_video(row) for row in rows]

    def count(self, *states: str) -> int:
        return self.db.conn.execute(
            f"SELECT count(*) FROM videos WHERE state IN ({', '.join('?' * len(states))})",
            states).fetchone()[0]

    def stats(self) -> dict[str, int]:
        count, total = self.db.conn.execute(
            "SELECT count(*), coalesce(sum(bytes), 0) FROM videos WHERE state = 'ready'").fetchone()
        return {"count": count, "bytes": total}

    def oldest_ready(self, limit: int) -> list[Video]:
        rows = self.db.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM videos WHERE state = 'ready' ORDER BY id LIMIT ?",
            (limit,)).fetchall()
        return [_video(row) for row in rows]

    def delete(self, video: Video) -> None:
        """The row first, then the files: a crash between leaves only files ``recover`` removes."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM videos WHERE id = ?", (video.id,))
        self.remove_files(video)

    # -- files ---------------------------------------------------------------------

    def final_path(self, video: Video) -> Path:
        return self.videos_dir / f"{video.created_datetime:%Y/%m/%d}" / f"{video.id}.mp4"

    def temp_path(self, video: Video) -> Path:
        """Where a video is written until it is whole (``remove_temp_files``' pattern)."""
        final = self.final_path(video)
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")

    def publish(self, temp: Path, video: Video) -> Path:
        """fsync the finished temp file and rename it to its final name."""
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self.final_path(video)
        os.replace(temp, final)
        fsync_dir(final.parent)
        return final

    def file(self, video: Video) -> Path:
        if video.state != "ready" or not video.path:
            raise NotFound(f"video {video.id} has no file")
        path = inside(self.root, video.path)
        if not path.is_file():
            raise NotFound(f"the file of video {video.id} is missing")
        return path

    def thumbnail_path(self, video: Video) -> Path:
        return inside(self.thumbs_dir, f"{video.id}.jpg")

    def remove_files(self, video: Video) -> None:
        self.final_path(video).unlink(missing_ok=True)
        self.thumbnail_path(video).unlink(missing_ok=True)

    def recover(self) -> list[Video]:
        """After a stop: remove the files of ours that no ready row owns (temp files of
        unfinished videos, leftovers of deleted ones); return the videos left unfinished.

        Only names this store makes are touched (``<id>.mp4``, its temp names and
        ``thumbnails/<id>.jpg``); anything else in videos/ is left where it is.
        """
        if self.videos_dir.is_dir():
            ready = {row[0]: row[1] for row in self.db.conn.execute(
                "SELECT id, path FROM videos WHERE state = 'ready'")}
            removed = 0
            for path in self.videos_dir.rglob("*"):
                if path.is_file() and not path.is_symlink() and not self._owned(path, ready):
                    path.unlink()
                    removed += 1
            if removed:
                log.warning("removed %d unfinished or unindexed video file(s)", removed)
        return self.in_states(*ACTIVE)

    def _owned(self, path: Path, ready: dict[str, str]) -> bool:
        """Whether ``path`` is to be kept: not one of our names, or a ready video's."""
        if TEMP_NAME.fullmatch(path.name):
            return False  # no video is being written while the store starts
        if path.parent == self.thumbs_dir and path.suffix == ".jpg" and is_id(path.stem):
            return path.stem in ready
        if path.suffix == ".mp4" and is_id(path.stem):
            return ready.get(path.stem) == str(path.relative_to(self.root))
        return True

    @staticmethod
    def _values(video: Video, columns: list[str]) -> tuple:
        return tuple(json.dumps(video.options) if c == "options" else getattr(video, c)
                     for c in columns)


def _video(row) -> Video:
    values = dict(row)
    values["options"] = json.loads(values["options"])
    return Video(**values)
