"""Times of day that follow the sun: "sunrise-30m", "sunset+15m", "dawn", "dusk", "noon".

Pure arithmetic over astral: an event's time on a local day, at a location.
Dawn and dusk are civil twilight (the sun 6 degrees below the horizon);
sunrise and sunset are when its upper edge crosses the horizon (refraction
included), as almanacs give them.

Near the poles an event may not happen on a day at all. Then the sun is
either above its line all day or below it all day (on the odd day near the
start or end of a polar day or night, mostly above or mostly below), and a
bound is put where the sun's state says: a rising event (dawn, sunrise) that never comes because
the sun stays up counts as the day's start (it is "already up"), and as the
day's end when the sun stays down (it "never rises"); a setting event (sunset,
dusk) the other way round. So in polar day a window from sunrise to sunset is
the whole day, in polar night it is empty, and a night window (sunset to
sunrise) is the reverse. Offsets apply only to events that happen.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, Mapping

from .. import day_times

EVENTS = ("dawn", "sunrise", "noon", "sunset", "dusk")
RISING = ("dawn", "sunrise")
# The sun's geometric elevation at each event, degrees.
LINES = {"dawn": -6.0, "dusk": -6.0, "sunrise": -0.833, "sunset": -0.833}

# What an event that does not happen on a day resolves to (see the module docstring).
ABOVE, BELOW = "above", "below"


@dataclass(frozen=True)
class Location:
    """Where the camera is: degrees north and east, metres above sea level."""

    latitude: float
    longitude: float
    elevation: float = 0.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "Location | None":
        if section.get("latitude") is None or section.get("longitude") is None:
            return None
        return cls(section["latitude"], section["longitude"], section.get("elevation") or 0.0)


@dataclass(frozen=True)
class SunTime:
    """A sun event plus an offset in seconds, e.g. ``SunTime("sunrise", -1800)``."""

    event: str
    offset_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "SunTime":
        return cls(*day_times.sun_time(text))

    def __str__(self) -> str:
        if not self.offset_s:
            return self.event
        minutes = int(abs(self.offset_s)) // 60
        return f"{self.event}{'-' if self.offset_s < 0 else '+'}{minutes}m"

    @property
    def rising(self) -> bool:
        return self.event in RISING

    def on(self, day: dt.date, tz: dt.tzinfo | None, location: Location) -> float | str:
        """Epoch seconds on local ``day``, or ``ABOVE``/``BELOW`` when the event does not happen."""
        when = event_time(self.event, day, tz, location)
        return when + self.offset_s if isinstance(when, float) else when


@functools.lru_cache(maxsize=8192)
def event_time(event: str, day: dt.date, tz: dt.tzinfo | None, location: Location) -> float | str:
    """When ``event`` happens on local ``day`` (epoch seconds), or where the sun stays.

    astral works in UTC dates; the event on a local day is the one of the UTC
    day before, of, or after it that falls on that local day.
    """
    from astral import Observer, sun
    observer = Observer(location.latitude, location.longitude, location.elevation)
    compute = getattr(sun, event)
    for utc_day in (day - dt.timedelta(days=1), day, day + dt.timedelta(days=1)):
        try:
            when = compute(observer, utc_day).timestamp()
        except ValueError:  # astral: the sun does not reach the line that day
            continue
        if dt.datetime.fromtimestamp(when, tz).date() == day:
            return when
    # No such event that day: where does the sun spend it? Near the start or end of a
    # polar day or night it may cross the line briefly without astral finding an event
    # on this local day, so the sun's mean height between its highest and lowest decides.
    highest = sun.elevation(observer, sun.noon(observer, day), with_refraction=False)
    lowest = sun.elevation(observer, sun.midnight(observer, day), with_refraction=False)
    return ABOVE if (highest + lowest) / 2 > LINES[event] else BELOW
