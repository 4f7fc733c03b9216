"""Motion events from observations: minimum length, end, cooldown, confirmation.

Pure logic on frame times (no clock, no threads), so the rules can be tested
frame by frame:

- an event starts on the ``min_frames``-th frame in a row with change, the last
  of them moving (shorter motion is a glitch: an insect, a raindrop), and only
  when ``confirmed()`` says so (the PIR AND motion rule; checked again on each
  further moving frame). The frames before the last count with a trace of change
  (a score of ``TRACE_SCORE``, a quarter of the minimum area): an object coming
  into view shows first as a sliver at the edge, and waiting for two whole
  frames of it would start the event a frame late;
- it ends once no frame has moved for ``end_after_s``;
- after it ends, no event starts for ``cooldown_s`` (motion then is counted as
  suppressed).

Frames with a change of light (the detector's global guard) and learning
frames decide nothing.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from ..clock import iso
from ..ids import new_id
from .detector import Observation

# A frame with this share of the minimum area counts towards a start (not as motion).
TRACE_SCORE = 0.25


@dataclass
class MotionEvent:
    """An event in progress: its peak and the union of its boxes."""

    id: str
    started_at: float
    last_motion_at: float
    frames: int = 1
    peak_score: float = 0.0
    peak_area_pct: float = 0.0
    bbox: tuple[float, float, float, float] | None = None

    def add(self, obs: Observation, when: float) -> None:
        self.frames += 1
        self.last_motion_at = when
        self.peak_score = max(self.peak_score, obs.score)
        self.peak_area_pct = max(self.peak_area_pct, obs.area_pct)
        if obs.bbox is not None:
            self.bbox = obs.bbox if self.bbox is None else _union(self.bbox, obs.bbox)


@dataclass
class Counters:
    frames: int = 0
    moving_frames: int = 0
    light_changes: int = 0
    events: int = 0
    suppressed: int = 0  # in the cooldown
    unconfirmed: int = 0  # required input not active

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Tracker:
    min_frames: int = 2
    end_after_s: float = 2.0
    cooldown_s: float = 10.0
    counters: Counters = field(default_factory=Counters)
    event: MotionEvent | None = None
    cooldown_until: float = float("-inf")
    _streak: int = 0
    _refused: bool = False  # this streak has been counted as suppressed or unconfirmed

    def update(self, obs: Observation, when: float,
               confirmed: Callable[[], bool] = lambda: True) -> list[tuple[str, dict]]:
        """The events (``("motion.start"|"motion.end", data)``) that the frame at ``when`` makes."""
        self.counters.frames += 1
        if obs.learning:
            return []
        if obs.light_change:
            self.counters.light_changes += 1
            return self._maybe_end(when)
        if not obs.moving:
            if obs.score >= TRACE_SCORE and self.event is None:
                self._streak += 1  # an object coming into view: it counts towards a start
            else:
                self._streak, self._refused = 0, False
            return self._maybe_end(when)
        self.counters.moving_frames += 1
        if self.event is not None:
            self.event.add(obs, when)
            return []
        self._streak += 1
        if self._streak < self.min_frames:
            return []
        if when < self.cooldown_until:
            return self._refuse("suppressed")
        if not confirmed():
            return self._refuse("unconfirmed")
        self.event = MotionEvent(new_id(dt.datetime.fromtimestamp(when, dt.timezone.utc)), when,
                                 when, peak_score=obs.score, peak_area_pct=obs.area_pct,
                                 bbox=obs.bbox)
        self.counters.events += 1
        return [("motion.start", {"event": self.event.id, "score": obs.score,
                                  "area_pct": obs.area_pct, "bbox": box(obs.bbox),
                                  "frame_time": iso(when)})]

    def finish(self, when: float) -> list[tuple[str, dict]]:
        """End an event in progress now (detection stopped or left its hours)."""
        self._streak, self._refused = 0, False
        return self._end(when) if self.event is not None else []

    def _refuse(self, why: str) -> list:
        if not self._refused:
            self._refused = True
            setattr(self.counters, why, getattr(self.counters, why) + 1)
        return []

    def _maybe_end(self, when: float) -> list[tuple[str, dict]]:
        if self.event is not None and when - self.event.last_motion_at >= self.end_after_s:
            return self._end(when)
        return []

    def _end(self, when: float) -> list[tuple[str, dict]]:
        event, self.event = self.event, None
        self.cooldown_until = when + self.cooldown_s
        return [("motion.end", {"event": event.id, "score": event.peak_score,
                                "area_pct": event.peak_area_pct, "bbox": box(event.bbox),
                                "frame_time": iso(when), "started_at": iso(event.started_at),
                                "last_motion_at": iso(event.last_motion_at),
                                "duration_s": round(event.last_motion_at - event.started_at, 3),
                                "frames": event.frames})]


def box(bbox: tuple[float, float, float, float] | None) -> dict | None:
    """A bounding box as the API shows it: frame-relative ``{x, y, w, h}``."""
    return None if bbox is None else dict(zip("xywh", bbox))


def _union(a, b):
    x, y = min(a[0], b[0]), min(a[1], b[1])
    return (x, y, round(max(a[0] + a[2], b[0] + b[2]) - x, 4), round(max(a[1] + a[3], b[1] + b[3]) - y, 4))
