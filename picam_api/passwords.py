"""Password hashes: scrypt sized for a 512 MB Pi, and a bound on how many run at once.

Why these parameters. scrypt's memory is ``128 * n * r`` bytes for every check
running. werkzeug's default (n=2**15, r=8, p=1) takes 32 MiB a check, so 16
wrong logins at once take half a gigabyte: the unit's ``MemoryMax=512M``, and a
Pi Zero 2 W's whole RAM. ``METHOD`` halves n and doubles p: 16 MiB a check
(p runs its passes one after another in the same buffer) for the same CPU work
as werkzeug's default, so a guess costs an attacker as much as before.

Why a pool of its own. Checks run on ``max_concurrent`` (default 2) threads made
for them, not on the request threads: the C allocator keeps a freed 16 MiB
buffer in the arena of the thread that used it, so hashing on any of the
server's threads would leave up to 16 MiB resident per thread (113 MiB over
idle, measured, with 8 threads). So passwords take at most 32 MiB, whatever
the number of clients; a check that cannot start within ``wait_s`` is dropped
and its client gets 503 with Retry-After.

Hashes made with other parameters (the first release used werkzeug's default)
still verify; ``needs_rehash`` tells the caller to store a new one.
"""
from __future__ import annotations

import concurrent.futures
import functools
from typing import Callable, TypeVar

from werkzeug.security import check_password_hash, generate_password_hash

from .errors import LoginsBusy

METHOD = "scrypt:16384:8:2"
T = TypeVar("T")


class Hasher:
    """Hashes and checks passwords on its own ``max_concurrent`` threads.

    The threads start with the first check; ``close()`` stops them.
    """

    def __init__(self, max_concurrent: int = 2, wait_s: float = 2.0):
        self.wait_s = wait_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_concurrent,
                                                           thread_name_prefix="picam-hash")

    def hash(self, password: str) -> str:
        return self._run(lambda: generate_password_hash(password, METHOD))

    def verify(self, stored: str, password: str) -> bool:
        return self._run(lambda: check_password_hash(stored, password))

    def verify_nobody(self, password: str) -> None:
        """Spend what a real check costs, for a user that does not exist."""
        self.verify(self._dummy_hash, password)

    @staticmethod
    def needs_rehash(stored: str) -> bool:
        return stored.partition("$")[0] != METHOD

    @functools.cached_property
    def _dummy_hash(self) -> str:
        return self.hash("not-a-password")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, check: Callable[[], T]) -> T:
        future = self._pool.submit(check)
        try:
            return future.result(timeout=self.wait_s)
        except concurrent.futures.TimeoutError:
            if future.cancel():  # still queued: drop it
                raise LoginsBusy("too many passwords are being checked at once; try again",
                                 retry_after=1) from None
            return future.result()  # it started meanwhile: one check's time at most
