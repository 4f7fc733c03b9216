"""When a time-lapse's frames are due: pure arithmetic, no threads, no I/O.

Frame slot ``k`` is due at ``start + k * interval`` (epoch seconds). The schedule
never shifts: a late or missed frame does not move the ones after it. A daily
window (``active_hours``, local wall time or times that follow the sun, may
cross midnight) makes slots outside it "not due"; an end time or a frame count
ends the schedule.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Iterator, Union

from .. import day_times
from .sun import ABOVE, Location, SunTime

# How far next_active() looks for a slot inside the window before giving up.
MAX_DAYS_AHEAD = 800


Bound = Union[dt.time, SunTime]


@dataclass(frozen=True)
class Window:
    """A daily span of local wall time, ``start`` inclusive, ``end`` exclusive.

    A bound is a wall time ("07:00") or a sun time ("sunrise-30m", see sun.py),
    which needs the camera's ``location``. Each day's span is computed on its own
    day, so it follows DST and the seasons.
    """

    start: Bound
    end: Bound
    location: Location | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, start: str, end: str, location: Location | None = None) -> "Window":
        return cls(_bound(start), _bound(end), location)

    @property
    def sun_relative(self) -> bool:
        return isinstance(self.start, SunTime) or isinstance(self.end, SunTime)

    @property
    def crosses_midnight(self) -> bool:
        """For wall-time windows: the end is before the start, as in 22:00-02:00."""
        return not self.sun_relative and self.start > self.end

    def contains(self, local: dt.datetime) -> bool:
        when = local.timestamp()
        for opens, _closes in self.spans(when, local.tzinfo):
            return opens <= when
        return False

    def day_span(self, day: dt.date, tz: dt.tzinfo | None) -> tuple[float, float] | None:
        """The span that opens on local ``day``, or None if the window is shut all that day.

        A window crosses midnight when its end comes before its start on the clock,
        which for sun times is decided each day on the events without their offsets
        (sunset to sunrise crosses; sunrise+6h to sunset-6h on a short day is empty).
        """
        if not self.sun_relative:
            closes_on = day + dt.timedelta(days=1) if self.crosses_midnight else day
            return _local(day, self.start, tz), _local(closes_on, self.end, tz)
        opens, closes = self._at(self.start, day, tz), self._at(self.end, day, tz)
        if isinstance(opens, str) or isinstance(closes, str):
            opens = self._polar(self.start, opens, day, tz)
            closes = self._polar(self.end, closes, day, tz)
        elif self._base(self.end, day, tz) < self._base(self.start, day, tz):
            closes = self._polar(self.end, self._at(self.end, day + dt.timedelta(days=1), tz),
                                 day + dt.timedelta(days=1), tz)
        return (opens, closes) if closes > opens else None

    def spans(self, begin: float, tz: dt.tzinfo | None) -> Iterator[tuple[float, float]]:
        """Active spans ``(from, to)`` in epoch seconds, from the one holding or after ``begin``.

        Computed day by day in local time, so a DST change moves the span with
        the wall clock as a person would expect. Spans never overlap; the search
        ends after ``MAX_DAYS_AHEAD`` days without one.
        """
        day = dt.datetime.fromtimestamp(begin, tz).date() - dt.timedelta(days=1)
        previous_close, empty_days = float("-inf"), 0
        while empty_days <= MAX_DAYS_AHEAD:
            span = self.day_span(day, tz)
            day += dt.timedelta(days=1)
            if span is None or span[1] <= previous_close:
                empty_days += 1
                continue
            opens, closes = max(span[0], previous_close), span[1]
            previous_close, empty_days = closes, 0
            if closes > begin:
                yield max(opens, begin), closes

    def today(self, now: float, tz: dt.tzinfo | None) -> tuple[float, float] | None:
        """The span that opens on ``now``'s local day (the job resource shows it)."""
        if self.sun_relative and self.location is None:
            return None
        return self.day_span(dt.datetime.fromtimestamp(now, tz).date(), tz)

    def _at(self, bound: Bound, day: dt.date, tz: dt.tzinfo | None) -> float | str:
        if isinstance(bound, SunTime):
            if self.location is None:
                raise ValueError("a sun-relative window needs location.latitude and "
                                 "location.longitude")
            return bound.on(day, tz, self.location)
        return _local(day, bound, tz)

    def _base(self, bound: Bound, day: dt.date, tz: dt.tzinfo | None) -> float:
        """The bound's time on ``day`` without its offset (both happen: checked by the caller)."""
        if isinstance(bound, SunTime):
            return self._at(SunTime(bound.event), day, tz)
        return _local(day, bound, tz)

    @staticmethod
    def _polar(bound: Bound, value: float | str, day: dt.date, tz: dt.tzinfo | None) -> float:
        """An event that does not happen on ``day``, placed as sun.py's docstring says."""
        if not isinstance(value, str):
            return value
        start_of_day = _local(day, dt.time(0), tz)
        end_of_day = _local(day + dt.timedelta(days=1), dt.time(0), tz)
        sun_up = value == ABOVE
        return start_of_day if sun_up == bound.rising else end_of_day


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
            else:
                return None  # no span for MAX_DAYS_AHEAD days
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


def _bound(text: str) -> Bound:
    parsed = day_times.bound(text)
    return parsed if isinstance(parsed, dt.time) else SunTime(*parsed)


def _local(day: dt.date, at: dt.time, tz: dt.tzinfo | None) -> float:
    naive = dt.datetime.combine(day, at)
    # A naive datetime's .timestamp() reads it as system local time.
    return (naive.replace(tzinfo=tz) if tz else naive).timestamp()
