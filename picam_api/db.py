"""SQLite access: one connection per thread, WAL, and forward-only migrations.

The schema version lives in ``PRAGMA user_version``. Each migration runs in its
own transaction and is never edited once released: a change is a new entry in
``MIGRATIONS``, so a database made by any release opens with this code.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import PicamError

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
]


class SchemaTooNew(PicamError):
    """The database was written by a newer release; refuse rather than damage it."""


class Database:
    """Hands each thread its own connection to one SQLite file."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
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
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def migrate(self) -> int:
        """Bring the schema up to the newest version; return that version."""
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
