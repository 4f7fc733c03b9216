"""When a time-lapse's frames are due: pure arithmetic, no threads, no I/O.

Frame slot ``k`` is due at ``start + k * interval`` (epoch seconds). The schedule
never shifts: a late or missed frame does not move the ones after it. A daily
window (``active_hours``, local wall time, may cross midnight) makes slots
outside it "not due"; an end time or a frame count ends the schedule.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Iterator

# How far next_active() looks for a slot inside the window before giving up.
MAX_DAYS_AHEAD = 800


@dataclass(frozen=True)
class Window:
    """A daily span of local wall time, ``start`` inclusive, ``end`` exclusive."""

    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, start: str, end: str) -> "Window":
        return cls(dt.time.fromisoformat(start), dt.time.fromisoformat(end))

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def contains(self, local: dt.datetime) -> bool:
        tod = local.time().replace(tzinfo=None)
        if self.crosses_midnight:
            return tod >= self.start or tod < self.end
        return self.start <= tod < self.end

    def spans(self, begin: float, tz: dt.tzinfo | None) -> Iterator[tuple[float, float]]:
        """Active spans ``(from, to)`` in epoch seconds, from the one holding or after ``begin``.

        Computed day by day in local time, so a DST change moves the span with
        the wall clock as a person would expect.
        """
        day = dt.datetime.fromtimestamp(begin, tz).date() - dt.timedelta(days=1)
        while True:
            opens = _local(day, self.start, tz)
            closes = _local(day + dt.timedelta(days=1) if self.crosses_midnight else day,
                            self.end, tz)
            if closes > begin:
                yield max(opens, begin), closes
            day += dt.timedelta(days=1)


@dataclass(frozen=True)
class Schedule:
    """The slot arithmetic of one job."""

    start: float
    interval: float
    end: float | None = None  # slots due at or after this are not part of the job
    window: Window | None = None
    tz: dt.tzinfo | None = None  # None: the system's local time

    def time_of(self, slot: int) -> float:
        return self.start + slot * self.interval

    def slot_at_or_after(self, when: float) -> int:
        return max(0, math.ceil((when - self.start) / self.interval - 1e-9))

    def next_active(self, slot: int) -> int | None:
        """The first slot at or after ``slot`` that is due (in the window, before the end)."""
        if self.window is not None:
            for day, (opens, closes) in enumerate(self.window.spans(self.time_of(slot), self.tz)):
                if (self.end is not None and opens >= self.end) or day > MAX_DAYS_AHEAD:
                    return None  # e.g. a whole-day interval whose slots miss the window
                candidate = max(slot, self.slot_at_or_after(opens))
                if self.time_of(candidate) < closes:
                    slot = candidate
                    break
        if self.end is not None and self.time_of(slot) >= self.end:
            return None
        return slot

    def count_active(self, first: int, stop: int) -> int:
        """How many slots in ``[first, stop)`` are due (the rest fall outside the window)."""
        if stop <= first:
            return 0
        if self.window is None:
            return stop - first
        count = 0
        for opens, closes in self.window.spans(self.time_of(first), self.tz):
            if opens >= self.time_of(stop):
                break
            lo = max(first, self.slot_at_or_after(opens))
            hi = min(stop, self.slot_at_or_after(closes))
            count += max(0, hi - lo)
        return count


def _local(day: dt.date, at: dt.time, tz: dt.tzinfo | None) -> float:
    naive = dt.datetime.combine(day, at)
    # A naive datetime's .timestamp() reads it as system local time.
    return (naive.replace(tzinfo=tz) if tz else naive).timestamp()
