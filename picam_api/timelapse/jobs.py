"""Time-lapse jobs and their SQLite table."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import InitVar, dataclass, field, fields

from ..clock import iso
from ..db import Database
from ..errors import Conflict, NotFound
from ..ids import is_id
from .schedule import Schedule, Window
from .sun import Location

ACTIVE = ("scheduled", "running", "paused")
FINISHED = ("completed", "cancelled", "failed")
# Written only with the photo that a frame stores (see JobStore.record_frame).
FRAME_COUNTERS = ("frames_captured", "next_sequence")


@dataclass
class Job:
    """One time-lapse, as stored; the scheduler mutates it under its lock."""

    id: str
    name: str | None
    state: str
    interval_s: float
    start_at: str
    settings: dict
    created_at: str
    frames: int | None = None
    duration_s: float | None = None
    end_at: str | None = None
    active_start: str | None = None
    active_end: str | None = None
    frames_captured: int = 0
    frames_missed: int = 0
    frames_failed: int = 0
    consecutive_failures: int = 0
    next_slot: int | None = 0
    next_sequence: int = 1
    pause_reason: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    last_error: str | None = None
    schedule: Schedule = field(init=False, repr=False, compare=False)
    # Where the camera is, for a window that follows the sun; not stored.
    location: InitVar[Location | None] = None

    def __post_init__(self, location: Location | None) -> None:
        start = dt.datetime.fromisoformat(self.start_at).timestamp()
        end = None
        if self.end_at:
            end = dt.datetime.fromisoformat(self.end_at).timestamp()
        elif self.duration_s:
            end = start + self.duration_s
        window = (Window.parse(self.active_start, self.active_end, location)
                  if self.active_start else None)
        self.schedule = Schedule(start, self.interval_s, end, window)

    @property
    def ends_at(self) -> str | None:
        """When the job ends: ``end_at``, or the time ``duration_s`` gives; None if open-ended."""
        return self.end_at or (iso(self.schedule.end) if self.schedule.end is not None else None)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def next_frame_at(self) -> str | None:
        if self.state not in ("scheduled", "running") or self.next_slot is None:
            return None
        return iso(self.schedule.time_of(self.next_slot))

    @property
    def done(self) -> bool:
        """No slot left: all ``frames`` had their turn (captured, missed or failed), or the end came."""
        taken = self.frames_captured + self.frames_missed + self.frames_failed
        return self.next_slot is None or (self.frames is not None and taken >= self.frames)


COLUMNS = [f.name for f in fields(Job) if f.init]


class JobStore:
    """Reads and writes the ``timelapses`` table."""

    def __init__(self, db: Database, location: Location | None = None):
        self.db = db
        self.location = location

    def insert(self, job: Job, max_active: int) -> None:
        """Store a new job, unless its name is taken or ``max_active`` jobs are active.

        Checked in the transaction that inserts, so concurrent creations cannot
        both pass the checks: BEGIN IMMEDIATE makes them take turns.
        """
        values = self._values(job, COLUMNS)
        with self.db.transaction():
            if job.name and self.find_active(job.name):
                raise Conflict(f"an active time-lapse is already named {job.name!r}")
            if self.count_active() >= max_active:
                raise Conflict(f"{max_active} time-lapses are active, the most allowed "
                               f"(timelapse.max_active_jobs); cancel one first")
            self.db.conn.execute(f"INSERT INTO timelapses ({', '.join(COLUMNS)}) "
                                 f"VALUES ({', '.join('?' * len(COLUMNS))})", values)

    def save(self, job: Job) -> None:
        """Persist everything but the frame counters, which ``record_frame`` owns."""
        columns = [c for c in COLUMNS if c not in FRAME_COUNTERS and c != "id"]
        with self.db.transaction() as conn:
            conn.execute(f"UPDATE timelapses SET {', '.join(c + ' = ?' for c in columns)} "
                         f"WHERE id = ?", (*self._values(job, columns), job.id))

    @staticmethod
    def record_frame(conn: sqlite3.Connection, job_id: str, sequence: int) -> None:
        """Count a stored frame, inside the transaction that indexes its photo."""
        conn.execute("UPDATE timelapses SET frames_captured = frames_captured + 1, "
                     "next_sequence = ?, consecutive_failures = 0 WHERE id = ?",
                     (sequence + 1, job_id))

    def get(self, job_id: str) -> Job:
        row = None
        if is_id(job_id):
            row = self.db.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM timelapses "
                                       f"WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no time-lapse with id {job_id[:80]!r}")
        return _job(row, self.location)

    def find_active(self, ref: str) -> Job | None:
        """The active job with id or name ``ref``."""
        row = self.db.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM timelapses WHERE (id = ? OR name = ?) AND state IN "
            f"({', '.join('?' * len(ACTIVE))}) ORDER BY id DESC LIMIT 1", (ref, ref, *ACTIVE)
        ).fetchone()
        return _job(row, self.location) if row else None

    def page(self, edge: str | None, backwards: bool, limit: int) -> list[Job]:
        """At most ``limit`` jobs older than ``edge``, newest first, or (``backwards``)
        newer than it, oldest first: ``pagination.keyset_page``'s fetch."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM timelapses"
        args: tuple = ()
        if edge:
            sql += " WHERE id > ?" if backwards else " WHERE id < ?"
            args = (edge,)
        rows = self.db.conn.execute(sql + f" ORDER BY id {'ASC' if backwards else 'DESC'} "
                                          f"LIMIT ?", (*args, limit)).fetchall()
        return [_job(row, self.location) for row in rows]

    def count(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM timelapses").fetchone()[0]

    def active(self) -> list[Job]:
        rows = self.db.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM timelapses WHERE state IN "
                                    f"({', '.join('?' * len(ACTIVE))})", ACTIVE).fetchall()
        jobs = [_job(row, self.location) for row in rows]
        for job in jobs:
            # Sequence numbers are never reused, whatever a crash left unsaved.
            (last,) = self.db.conn.execute("SELECT max(sequence) FROM photos WHERE timelapse_id = ?",
                                           (job.id,)).fetchone()
            job.next_sequence = max(job.next_sequence, (last or 0) + 1)
        return jobs

    def count_active(self) -> int:
        return self.db.conn.execute(f"SELECT count(*) FROM timelapses WHERE state IN "
                                    f"({', '.join('?' * len(ACTIVE))})", ACTIVE).fetchone()[0]

    def delete(self, job_id: str) -> None:
        with self.db.transaction(frees_space=True) as conn:
            conn.execute("DELETE FROM timelapses WHERE id = ?", (job_id,))

    @staticmethod
    def _values(job: Job, columns: list[str]) -> tuple:
        return tuple(json.dumps(job.settings) if c == "settings" else getattr(job, c)
                     for c in columns)


def _job(row, location: Location | None) -> Job:
    values = dict(row)
    values["settings"] = json.loads(values["settings"])
    return Job(**values, location=location)

