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
        for position, (item, rule) in enumerate(zip(value, _item_rules(info)), 1):
            problem = _check_number(item, *rule)
            if problem:
                return f"item {position} {problem}"
        return None
    if not _is_number(value):
        return "must be a number"
    return _check_number(value, *_scalar_rule(info))


def control_schema(info: ControlInfo) -> dict:
    """The JSON Schema of the values ``check_control`` accepts for ``info``."""
    if isinstance(info.default, bool):
        return {"type": "boolean"}
    if isinstance(info.default, (list, tuple)):
        return {"type": "array", "prefixItems": [_number_schema(*r) for r in _item_rules(info)],
                "minItems": len(info.default), "maxItems": len(info.default)}
    return _number_schema(*_scalar_rule(info))


# A number's rule: (whole numbers only, lowest, highest); no bounds are None.
_Rule = tuple[bool, Any, Any]


def _scalar_rule(info: ControlInfo) -> _Rule:
    bounded = _is_number(info.minimum) and _is_number(info.maximum)
    return (isinstance(info.default, int), info.minimum if bounded else None,
            info.maximum if bounded else None)


def _item_rules(info: ControlInfo) -> list[_Rule]:
    """The rule of each item of an array control."""
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in info.default)
    lo, hi = info.minimum, info.maximum
    if _is_number(lo) and _is_number(hi):  # e.g. FrameDurationLimits: one range for all
        return [(whole, lo, hi)] * len(info.default)
    if len(info.default) == 4 and _is_rectangle(lo) and _is_rectangle(hi):
        # libcamera advertises a rectangle ([x, y, width, height], ScalerCrop) with
        # the smallest size as min and the whole area as max. The camera clamps a
        # crop that reaches past the area, so each number has a range of its own.
        x, y, width, height = hi
        return [(whole, x, x + width - lo[2]), (whole, y, y + height - lo[3]),
                (whole, lo[2], width), (whole, lo[3], height)]
    return [(whole, None, None)] * len(info.default)


def _check_number(value: Any, whole: bool, lo: Any, hi: Any) -> str | None:
    if whole and not float(value).is_integer():
        return "must be an integer"
    if lo is not None and not lo <= value <= hi:
        return f"must be between {lo} and {hi}"
    return None


def _number_schema(whole: bool, lo: Any, hi: Any) -> dict:
    schema: dict = {"type": "integer" if whole else "number"}
    if lo is not None:
        schema.update(minimum=lo, maximum=hi)
    return schema


def _is_rectangle(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(map(_is_number, value))


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
