"""Checking requested capture settings against what the camera advertises.

The request schema checks types and fixed ranges; this checks what depends on
the camera at hand (sensor size, even sizes, advertised controls and ranges),
and fills what the request left out from the stored defaults.
"""
from __future__ import annotations

from numbers import Real
from typing import Any, Mapping

from ..errors import InvalidInput
from .base import Capabilities, CaptureSettings, ControlInfo

MIN_SIZE = 16
FIELDS = ("width", "height", "format", "quality", "hflip", "vflip", "controls")


def initial_defaults(caps: Capabilities) -> dict:
    """Factory capture defaults: 1920x1080 JPEG, or the sensor size if smaller."""
    width, height = min(1920, caps.sensor_size[0]), min(1080, caps.sensor_size[1])
    if caps.even_sizes:
        width, height = width - width % 2, height - height % 2
    return {"width": width, "height": height, "format": "jpeg", "quality": 90,
            "hflip": False, "vflip": False, "controls": {}}


def resolve(requested: Mapping[str, Any], defaults: Mapping[str, Any],
            caps: Capabilities) -> CaptureSettings:
    """Merge ``requested`` over ``defaults`` and check the result against ``caps``.

    Controls merge key by key, so a request can add one control to the defaults.
    Raises ``InvalidInput`` naming every bad field.
    """
    merged = {key: requested.get(key, defaults[key]) for key in FIELDS}
    merged["controls"] = {**defaults["controls"], **requested.get("controls", {})}
    errors: dict[str, list[str]] = {}
    for axis, limit in zip(("width", "height"), caps.sensor_size):
        value = merged[axis]
        if not MIN_SIZE <= value <= limit:
            errors[axis] = [f"must be between {MIN_SIZE} and {limit} (the sensor's {axis})"]
        elif caps.even_sizes and value % 2:
            errors[axis] = ["must be even for this camera"]
    if merged["format"] not in caps.formats:
        errors["format"] = [f"must be one of {', '.join(caps.formats)}"]
    for name, value in merged["controls"].items():
        problem = check_control(caps.controls.get(name), value)
        if problem:
            errors[f"controls.{name}"] = [problem]
    if errors:
        raise InvalidInput(errors)
    return CaptureSettings(**merged)


def check_control(info: ControlInfo | None, value: Any) -> str | None:
    """Return why ``value`` does not fit the control, or None when it does."""
    if info is None:
        return "is not a control this camera advertises (see GET /api/v1/camera)"
    if isinstance(info.default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(info.default, (list, tuple)):
        if (not isinstance(value, list) or len(value) != len(info.default)
                or not all(_is_number(v) for v in value)):
            return f"must be a list of {len(info.default)} numbers"
        return None
    if not _is_number(value):
        return "must be a number"
    if isinstance(info.default, int) and not float(value).is_integer():
        return "must be an integer"
    lo, hi = info.minimum, info.maximum
    if _is_number(lo) and _is_number(hi) and not lo <= value <= hi:
        return f"must be between {lo} and {hi}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
