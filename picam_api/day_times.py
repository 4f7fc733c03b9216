"""The bounds of a daily window as the config and the API write them, checked and parsed.

A bound is a wall time ("07:00", "22:30:15") or a sun time: an event (dawn,
sunrise, noon, sunset, dusk) with an optional offset of up to 12 hours
("sunrise-30m", "sunset+1h15m"). Only the text is ruled on here, below the
config (``motion.active_hours``) and the time-lapse and motion packages; when a
sun time happens, at a location, is ``timelapse/sun.py``'s arithmetic.
"""
from __future__ import annotations

import datetime as dt
import re

SUN_TIME = re.compile(r"(dawn|sunrise|noon|sunset|dusk)"
                      r"(?:([+-])(?:(\d{1,2})h(?:(\d{1,3})m)?|(\d{1,3})m))?")
MAX_OFFSET_S = 12 * 3600


def sun_time(text: str) -> tuple[str, int]:
    """A sun time's event and offset in seconds, or ValueError saying what one looks like."""
    match = SUN_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a sun time such as sunrise, sunset+15m or dawn-1h30m")
    event, sign, hours, minutes, only_minutes = match.groups()
    offset = int(hours or 0) * 3600 + int(minutes or only_minutes or 0) * 60
    if offset > MAX_OFFSET_S:
        raise ValueError(f"{text!r}: the offset is more than 12 hours")
    return event, -offset if sign == "-" else offset


def bound(text: str) -> dt.time | tuple[str, int]:
    """A wall time as a ``datetime.time``, a sun time as ``sun_time`` gives it; or ValueError."""
    return dt.time.fromisoformat(text) if text[:1].isdigit() else sun_time(text)
