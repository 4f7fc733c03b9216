"""The data dir: claimed by a marker file, and held by one server at a time.

Start-up recovery deletes the service's own leftovers and moves what it does not
know aside, so the service must never take over a folder that holds somebody
else's files (``storage.data_dir = "~/Pictures"``). A data dir is ours when it
carries the marker, or holds nothing but names this service makes (a first-
release data dir, recognised by its ``picam.db``, gets the marker on its next
start); a new or empty one is made ours. Anything else is refused in one line.

``lock()`` takes an exclusive ``flock`` on a file in the data dir for as long as
the server runs: two servers on one data dir would run the same time-lapses
twice and corrupt their counters. The ``user`` commands share the database, not
the lock, so they work while the server runs.
"""
from __future__ import annotations

import fcntl
import os
import pwd
from pathlib import Path

from .errors import ConfigError, PicamError
from .files import atomic_write

MARKER = ".picam-api"
LOCK = ".picam-api.lock"
# What this service makes in a data dir; "lost+found" is a fresh file system's own.
OWN_NAMES = {MARKER, LOCK, ".picam-reserve", "picam.db", "picam.db-wal", "picam.db-shm",
             "picam.db-journal", "initial-admin-password", "photos", "thumbnails",
             "quarantine", "lost+found"}


DATABASE_FILES = ("picam.db", "picam.db-wal", "picam.db-shm")


class DataDirInUse(PicamError):
    """Another server holds the data dir's lock."""


def check_path(path: Path) -> None:
    """``ConfigError`` if ``path``, or the nearest of its parents that exists, is no folder."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "" if existing == path else f" (in {path})"
        raise ConfigError(f"storage.data_dir: {existing}{where} is a file, not a folder; "
                          f"name a folder (nothing was changed)")


def prepare(path: Path) -> Path:
    """Make ``path`` if missing and check that it is ours; mark it so. ``ConfigError`` if not."""
    check_path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise ConfigError(f"storage.data_dir: cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"storage.data_dir: {path} is not writable by this user")
    for name in DATABASE_FILES:
        _check_writable(path / name)
    if (path / MARKER).exists():
        return path
    foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in OWN_NAMES)
    if foreign:
        raise ConfigError(
            f"storage.data_dir: {path} holds files that picam-api did not make ("
            f"{len(foreign)}, such as {foreign[0]!r}) and no {MARKER} marker; choose a new or "
            f"empty folder (nothing was changed)")
    atomic_write(path / MARKER, b"picam-api data directory: photos, their index and "
                                b"time-lapses. Keep this file.\n", mode=0o640)
    return path


def _check_writable(path: Path) -> None:
    """A database file another user made (a ``sudo`` start, say) is one line, not a
    traceback from deep inside SQLite."""
    try:
        owner = path.stat().st_uid
    except FileNotFoundError:
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(f"storage.data_dir: {path} belongs to {_user_name(owner)} and this "
                          f"user ({_user_name(os.geteuid())}) cannot write it; run picam-api "
                          f"as {_user_name(owner)}, or give the data dir to this user "
                          f"(nothing was changed)")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def lock(path: Path) -> int:
    """Hold ``path`` for this process (and its forks) until it exits; return the lock's fd.

    ``DataDirInUse``, naming the holder's PID, if another server has it.
    """
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(f"storage.data_dir: {path} is in use by another picam-api server "
                           f"(PID {holder}); stop it first, or give this one another "
                           f"data dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
