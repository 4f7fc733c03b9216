"""Counting events per key over a sliding window, in bounded memory."""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass

from .errors import RateLimited


class SlidingWindow:
    """Times of recent events per key, forgotten ``window_s`` seconds after they happened.

    At most ``max_keys`` keys are kept: when full of recent events (many clients),
    the key that was added first is forgotten rather than memory growing. Not
    thread-safe: callers hold their own lock.
    """

    def __init__(self, window_s: float, max_keys: int = 10_000):
        self.window_s = window_s
        self.max_keys = max_keys
        self._events: dict[object, collections.deque] = {}

    def __len__(self) -> int:
        return len(self._events)

    def count(self, key: object, now: float) -> int:
        return len(self._recent(key, now))

    def add(self, key: object, now: float) -> None:
        if key not in self._events and len(self._events) >= self.max_keys:
            for other in list(self._events):
                self._recent(other, now)
            if len(self._events) >= self.max_keys:
                del self._events[next(iter(self._events))]
        self._events.setdefault(key, collections.deque()).append(now)

    def retry_after(self, key: object, now: float) -> int:
        """Whole seconds until the oldest event of ``key`` is forgotten (at least 1)."""
        recent = self._recent(key, now)
        if not recent:
            return 1
        # Never more than the window, which float rounding of the sum can pass
        # (an event at 4.5678979 is 60.000000000000004 s from forgotten, not 60).
        return max(1, min(math.ceil(recent[0] + self.window_s - now), math.ceil(self.window_s)))

    def _recent(self, key: object, now: float) -> collections.deque:
        recent = self._events.get(key, collections.deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            self._events.pop(key, None)
        return recent


@dataclass(frozen=True)
class Quota:
    """Where a client stands against a limit: the IETF RateLimit header fields
    (draft-ietf-httpapi-ratelimit-headers), which clients may read to slow down."""

    limit: int
    remaining: int
    reset_s: int  # seconds until the oldest counted event is forgotten

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_s)}


class RateLimit:
    """At most ``limit`` events per key per ``window_s``; ``take`` raises 429 past it."""

    def __init__(self, limit: int, window_s: float, what: str):
        self.limit = limit
        self.what = what
        self._window = SlidingWindow(window_s)
        self._lock = threading.Lock()

    def take(self, key: object) -> Quota:
        """Count one event of ``key``; its quota after it. ``RateLimited`` (with the
        RateLimit headers and Retry-After) past the limit."""
        now = time.monotonic()
        with self._lock:
            if self._window.count(key, now) >= self.limit:
                retry = self._window.retry_after(key, now)
                raise RateLimited(f"at most {self.limit} {self.what} per "
                                  f"{self._window.window_s:g} s; try again in {retry} s",
                                  retry_after=retry,
                                  headers=Quota(self.limit, 0, retry).headers())
            self._window.add(key, now)
            return Quota(self.limit, self.limit - self._window.count(key, now),
                         self._window.retry_after(key, now))
