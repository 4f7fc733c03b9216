"""SQLite access: one connection per thread, WAL, and forward-only migrations.

The schema version lives in ``PRAGMA user_version``. Each migration runs in its
own transaction and is never edited once released: a change is a new entry in
``MIGRATIONS``, so a database made by any release opens with this code.

The database holds the keys that sign stream tickets and cursors, so it and its
``-wal`` and ``-shm`` files are private (0600) whatever the umask: SQLite gives
those two the database file's own mode. A full disk is a 507
(``InsufficientStorage``), never a 500; a transaction that frees space
(``frees_space=True``) first gives up the data dir's ``SpaceReserve`` when the
disk is full, so that deleting works on a full disk.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InsufficientStorage, PicamError
from .files import SpaceReserve

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: the first release.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator')),
        password_hash TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX tokens_user ON tokens (user);
    CREATE TABLE photos (
        id TEXT PRIMARY KEY,
        taken_at TEXT NOT NULL,
        path TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        etag TEXT NOT NULL,
        settings TEXT NOT NULL,
        metadata TEXT NOT NULL,
        source TEXT NOT NULL,
        timelapse_id TEXT,
        sequence INTEGER,
        trigger TEXT
    );
    CREATE INDEX photos_timelapse ON photos (timelapse_id, id);
    CREATE UNIQUE INDEX photos_sequence ON photos (timelapse_id, sequence)
        WHERE timelapse_id IS NOT NULL;
    """,
    # 2: time-lapse jobs.
    """
    CREATE TABLE timelapses (
        id TEXT PRIMARY KEY,
        name TEXT,
        state TEXT NOT NULL,
        interval_s REAL NOT NULL,
        frames INTEGER,
        duration_s REAL,
        end_at TEXT,
        start_at TEXT NOT NULL,
        active_start TEXT,
        active_end TEXT,
        settings TEXT NOT NULL,
        frames_captured INTEGER NOT NULL DEFAULT 0,
        frames_missed INTEGER NOT NULL DEFAULT 0,
        frames_failed INTEGER NOT NULL DEFAULT 0,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        next_slot INTEGER,
        next_sequence INTEGER NOT NULL DEFAULT 1,
        pause_reason TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        last_error TEXT
    );
    CREATE INDEX timelapses_state ON timelapses (state);
    CREATE INDEX timelapses_name ON timelapses (name);
    """,
    # 3: the event log, webhooks and their outbox.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        time TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        types TEXT NOT NULL,
        snapshot INTEGER NOT NULL DEFAULT 0,
        enabled INTEGER NOT NULL DEFAULT 1,
        description TEXT,
        salt TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
        event_id INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        event TEXT,
        body BLOB,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at TEXT NOT NULL,
        last_attempt_at TEXT,
        finished_at TEXT,
        response_code INTEGER,
        last_error TEXT
    );
    CREATE INDEX deliveries_webhook ON deliveries (webhook_id, state, seq);
    """,
    # 4: videos (time-lapse movies and recorded clips).
    """
    CREATE TABLE videos (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        source TEXT NOT NULL,
        timelapse_id TEXT,
        trigger TEXT,
        options TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        progress REAL NOT NULL DEFAULT 0,
        path TEXT,
        frames INTEGER,
        frames_skipped INTEGER NOT NULL DEFAULT 0,
        duration_s REAL,
        fps REAL,
        width INTEGER,
        height INTEGER,
        codec TEXT,
        bytes INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX videos_timelapse ON videos (timelapse_id, id);
    CREATE INDEX videos_source ON videos (source, id);
    CREATE INDEX videos_state ON videos (state);
    """,
]


PRIVATE = 0o600


class SchemaTooNew(PicamError):
    """The database was written by a newer release; refuse rather than damage it."""


class DatabaseUnusable(PicamError):
    """The database file cannot be read as one (damaged, or not a database)."""

    status = 503
    title = "Database unusable"


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite saying the disk is full."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class Database:
    """Hands each thread its own connection to one SQLite file."""

    def __init__(self, path: Path, reserve: SpaceReserve | None = None):
        self.path = path
        self.reserve = reserve
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._private = False

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self._private:
                self._make_private()
            # Autocommit mode; transactions are explicit in ``transaction()``.
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a photo acknowledged with 201 survives a power cut too.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, frees_space: bool = False) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error; a full disk is a 507.

        ``frees_space``: the transaction deletes, to make room (photos, tokens);
        on a full disk the reserve is given up for it first.
        """
        if frees_space and self.reserve is not None and self.reserve.release_if_full():
            log.warning("the disk is full; gave up the space reserve so that a delete can run")
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back by itself (a full disk does that).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if is_full(exc):
                raise InsufficientStorage("the disk is full; nothing was changed. Delete "
                                          "photos to make room.") from exc
            raise

    def check(self) -> None:
        """Raise ``DatabaseUnusable`` unless the database can be read now."""
        try:
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DatabaseUnusable(self._unusable(exc)) from None

    def migrate(self) -> int:
        """Bring the schema up to the newest version; return that version.

        A file that is not a database, or a damaged one, is ``DatabaseUnusable``:
        one line naming the file and what to do.
        """
        try:
            return self._migrate()
        except sqlite3.DatabaseError as exc:
            if is_full(exc):
                raise
            raise DatabaseUnusable(self._unusable(exc)) from None

    def _unusable(self, exc: sqlite3.Error) -> str:
        return (f"{self.path}: {exc}. Restore it from a backup, or move it (with its -wal "
                f"and -shm files) aside to start with an empty one; the photos are then "
                f"indexed again")

    def _make_private(self) -> None:
        """Create the file 0600 before SQLite does; tighten files left looser."""
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
            os.fchmod(fd, PRIVATE)  # whatever the umask took away
            os.close(fd)
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & ~PRIVATE:
                    os.chmod(path, PRIVATE)
                    log.warning("%s was readable by others (mode %o); made it 0600", path, mode)
            except FileNotFoundError:
                pass
        self._private = True

    def _migrate(self) -> int:
        conn = self.conn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise SchemaTooNew(f"{self.path}: schema version {current} is newer than this "
                               f"release understands ({len(MIGRATIONS)}); upgrade picam-api")
        for version in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction():
                for statement in _statements(MIGRATIONS[version - 1]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
            log.info("database migrated to schema version %d", version)
        return len(MIGRATIONS)

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; run statement by statement.
    return [s.strip() for s in script.split(";") if s.strip()]
