"""Crash-safe file writes and the data dir's path rules."""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from pathlib import Path

TEMP_SUFFIX = ".tmp"
# What atomic_write names its temp files, and nothing else: ".{name}.{8 hex}.tmp".
TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def atomic_write(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one.

    Temp file in the same directory, fsync, rename, fsync the directory: on ext4 a
    rename without the first fsync can leave a zero-length file after power loss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def inside(root: Path, relative: str | os.PathLike) -> Path:
    """Resolve ``relative`` under ``root`` and refuse anything that escapes it."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{relative!s} is outside {root}")
    return path


def remove_temp_files(directory: Path, recursive: bool = False) -> int:
    """Delete the temp files ``atomic_write`` left in ``directory`` (a crash); return how many.

    Only names of the temp-file pattern, and only in the folder given (and, with
    ``recursive``, below it): nothing else can be proved to be ours and abandoned.
    """
    removed = 0
    for temp in (directory.rglob if recursive else directory.glob)(f".*{TEMP_SUFFIX}"):
        if TEMP_NAME.fullmatch(temp.name) and temp.is_file() and not temp.is_symlink():
            temp.unlink(missing_ok=True)
            removed += 1
    return removed


class SpaceReserve:
    """A file of ``size`` bytes kept in the data dir and given up when the disk is full.

    In WAL mode even a DELETE first appends to the WAL, so on a full disk the very
    requests that would free space (deleting photos, revoking tokens) would fail.
    ``release_if_full()`` before such a transaction makes room for it; ``ensure()``
    makes the file again once there is space, and says whether it is in place, so
    that new photos are refused before they eat the room kept for deletes.
    """

    NAME = ".picam-reserve"

    def __init__(self, directory: Path, size: int = 2**20):
        self.path = directory / self.NAME
        self.size = size

    def release_if_full(self) -> bool:
        """Delete the reserve if less than its size is free; True if it was deleted."""
        if shutil.disk_usage(self.path.parent).free >= self.size or not self.path.exists():
            return False
        self.path.unlink(missing_ok=True)
        return True

    def ensure(self) -> bool:
        """Make the reserve if it is missing and there is room for it twice; True if it exists."""
        if self.path.exists():
            return True
        if shutil.disk_usage(self.path.parent).free < 2 * self.size:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return True
        try:
            # Blocks really allocated: a sparse file would free nothing when deleted.
            os.posix_fallocate(fd, 0, self.size)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            if exc.errno in FULL_ERRNOS:
                return False
            raise
        os.close(fd)
        return True
