"""Time: the clock the schedulers read (injectable in tests) and the API's time format."""
from __future__ import annotations

import datetime as dt
import time


class Clock:
    """Wall time for what is stored and shown, monotonic time for waiting."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def iso(when: float | dt.datetime) -> str:
    """ISO 8601 UTC with microseconds and a Z, as every time in the API."""
    if not isinstance(when, dt.datetime):
        when = dt.datetime.fromtimestamp(when, dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
