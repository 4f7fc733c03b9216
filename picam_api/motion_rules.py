"""Rules that the config and the motion package share, below both: masks and hours.

A mask is ``{"x", "y", "w", "h"}`` (a rectangle) or ``{"points": [[x, y], ...]}``
(a polygon of 3-64 points); coordinates run from 0 to 1 across the frame, x to
the right and y down, so one mask fits every frame size. The config and
PATCH /api/v1/motion take the same list; ``check_masks`` is the one rule, and
``SCHEMA`` says it in JSON Schema for the OpenAPI document. The motion package
rasterises them (``motion.masks``).

``check_active_hours`` is ``motion.active_hours``'s rule: both bounds or
neither, each a wall or sun time (``day_times``), and sun times only where the
config places the camera.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from . import day_times

MAX_MASKS = 32
MAX_POINTS = 64


_UNIT = {"type": "number", "minimum": 0, "maximum": 1}
SCHEMA = {"oneOf": [
    {"type": "object", "title": "rectangle", "required": ["x", "y", "w", "h"],
     "additionalProperties": False,
     "properties": {"x": _UNIT, "y": _UNIT, "w": {**_UNIT, "exclusiveMinimum": 0},
                    "h": {**_UNIT, "exclusiveMinimum": 0}}},
    {"type": "object", "title": "polygon", "required": ["points"], "additionalProperties": False,
     "properties": {"points": {"type": "array", "minItems": 3, "maxItems": MAX_POINTS, "items": {
         "type": "array", "minItems": 2, "maxItems": 2, "items": _UNIT}}}},
]}


class MaskError(ValueError):
    """A bad mask: ``where`` names it (``2.w``), the message says why."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def check_masks(value: Any) -> list[dict]:
    """The masks normalised (floats, rectangles inside the frame), or ``MaskError``."""
    if not isinstance(value, list):
        raise MaskError("masks", "must be a list of rectangles {x, y, w, h} or polygons {points}")
    if len(value) > MAX_MASKS:
        raise MaskError("masks", f"at most {MAX_MASKS} masks")
    return [_check(str(index), mask) for index, mask in enumerate(value)]


def _check(where: str, mask: Any) -> dict:
    if not isinstance(mask, dict):
        raise MaskError(where, "must be an object {x, y, w, h} or {points}")
    if set(mask) == {"points"}:
        points = mask["points"]
        if not isinstance(points, list) or not 3 <= len(points) <= MAX_POINTS:
            raise MaskError(f"{where}.points", f"must be a list of 3-{MAX_POINTS} points [x, y]")
        for index, point in enumerate(points):
            if not isinstance(point, list) or len(point) != 2:
                raise MaskError(f"{where}.points.{index}", "must be a point [x, y]")
        return {"points": [[_unit(f"{where}.points.{i}", v) for v in p] for i, p in enumerate(points)]}
    if set(mask) == {"x", "y", "w", "h"}:
        box = {key: _unit(f"{where}.{key}", mask[key]) for key in ("x", "y", "w", "h")}
        for start, size in (("x", "w"), ("y", "h")):
            if box[size] <= 0:
                raise MaskError(f"{where}.{size}", "must be above 0")
        return box
    raise MaskError(where, "must have exactly x, y, w and h (a rectangle) or points (a polygon)")


def _unit(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise MaskError(where, "must be a number from 0 to 1 (a share of the frame)")
    return float(value)


def check_active_hours(window: Mapping[str, str], located: bool) -> None:
    """ValueError saying what is wrong with ``{"start", "end"}``; ``located``: the config
    has a latitude and a longitude, which sun times need."""
    start, end = window["start"], window["end"]
    if bool(start) != bool(end):
        raise ValueError("give both start and end, or neither")
    if not start:
        return
    try:
        bounds = [day_times.bound(start), day_times.bound(end)]
    except ValueError as exc:
        raise ValueError(f"{exc} (got {dict(window)!r})") from None
    if start == end:
        raise ValueError("start and end must differ (leave both empty for all day)")
    if not located and any(isinstance(b, tuple) for b in bounds):
        raise ValueError("follows the sun: set location.latitude and location.longitude first")
