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


# A default photo wider than this is scaled to 1920 wide (1920x1080 on a 16:9 sensor)...
DEFAULT_MAX_WIDTH = 2028
# ...and one narrower than this is the whole sensor (a small or mock sensor).
DEFAULT_MIN_WIDTH = 640


def initial_defaults(caps: Capabilities) -> dict:
    """Factory capture defaults: a JPEG of the sensor's aspect ratio (pi-audit F15).

    Half the sensor in each axis, the size of every Pi sensor's 2x2-binned mode
    (2028x1520 on the HQ camera, 1640x1232 on v2, 1296x972 on v1), scaled to 1920
    wide if it is wider than 2028 (Camera Module 3: 1920x1080); the whole sensor
    when half of it would be under 640 wide.
    """
    sensor_w, sensor_h = caps.sensor_size
    width, height = sensor_w // 2, sensor_h // 2
    if width < DEFAULT_MIN_WIDTH:
        width, height = sensor_w, sensor_h
    elif width > DEFAULT_MAX_WIDTH:
        width, height = 1920, round(sensor_h * 1920 / sensor_w)
    width, height = max(MIN_SIZE, width), max(MIN_SIZE, height)
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


# The most rectangles a list-of-rectangles control (AfWindows) takes.
MAX_RECTANGLES = 16
# The most numbers a variable-length number array takes.
MAX_ITEMS = 64


def check_control(info: ControlInfo | None, value: Any) -> str | None:
    """Return why ``value`` does not fit the control, or None when it does."""
    if info is None:
        return "is not a control this camera advertises (see GET /api/v1/camera)"
    if info.type is not None:
        return _check_typed(info, value)
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


def _check_typed(info: ControlInfo, value: Any) -> str | None:
    """The check by libcamera's type and size, not the default's shape (pi-audit F1, F2)."""
    if info.type == "bool":
        if info.size is None:
            return None if isinstance(value, bool) else "must be true or false"
        return "is not settable here"
    if info.type == "rectangle":
        if info.size is None:
            return _check_rectangle(info, value)
        if (not isinstance(value, list) or not 1 <= len(value) <= MAX_RECTANGLES
                or (info.size and len(value) != info.size)):
            count = info.size or f"1 to {MAX_RECTANGLES}"
            return f"must be a list of {count} rectangles [x, y, width, height]"
        for position, item in enumerate(value, 1):
            problem = _check_rectangle(info, item, area=False)
            if problem:
                return f"rectangle {position} {problem}"
        return None
    if info.type not in ("integer", "number"):
        return "is not settable here"
    rule = (info.type == "integer", *_bounds(info))
    if info.size is None:
        if not _is_number(value):
            return "must be an integer" if rule[0] else "must be a number"
        return _check_number(value, *rule)
    if (not isinstance(value, list) or not all(_is_number(v) for v in value)
            or (info.size and len(value) != info.size)
            or (not info.size and not 1 <= len(value) <= MAX_ITEMS)):
        return f"must be a list of {info.size or f'1 to {MAX_ITEMS}'} numbers"
    for position, item in enumerate(value, 1):
        problem = _check_number(item, *rule)
        if problem:
            return f"item {position} {problem}"
    return None


def _bounds(info: ControlInfo) -> tuple[Any, Any]:
    if _is_number(info.minimum) and _is_number(info.maximum):
        return info.minimum, info.maximum
    return None, None


def _check_rectangle(info: ControlInfo, value: Any, area: bool = True) -> str | None:
    """A rectangle against the advertised limits: for one rectangle (ScalerCrop) min is
    the smallest size and max the whole area; for a list (AfWindows), field by field."""
    if not _is_rectangle(value) or not all(float(v).is_integer() for v in value) \
            or min(value[2:]) < 0:
        return "must be [x, y, width, height] in whole pixels"
    lo, hi = info.minimum, info.maximum
    if not area and _is_rectangle(lo) and _is_rectangle(hi):
        for name, item, low, high in zip(("x", "y", "width", "height"), value, lo, hi):
            problem = _check_number(item, True, low, high)
            if problem:
                return f"{name} {problem}"
        return None
    if _is_rectangle(lo) and _is_rectangle(hi):
        # libcamera advertises a rectangle (ScalerCrop) with the smallest size as
        # min and the whole area as max. The camera clamps a crop that reaches
        # past the area, so each number has a range of its own.
        x, y, width, height = hi
        rules = [(x, max(x, x + width - lo[2])), (y, max(y, y + height - lo[3])),
                 (min(lo[2], width), width), (min(lo[3], height), height)]
        for name, item, (low, high) in zip(("x", "y", "width", "height"), value, rules):
            problem = _check_number(item, True, low, high)
            if problem:
                return f"{name} {problem}"
    return None


def control_schema(info: ControlInfo) -> dict:
    """The JSON Schema of the values ``check_control`` accepts for ``info``."""
    if info.type is not None:
        return _typed_schema(info)
    if isinstance(info.default, bool):
        return {"type": "boolean"}
    if isinstance(info.default, (list, tuple)):
        return {"type": "array", "prefixItems": [_number_schema(*r) for r in _item_rules(info)],
                "minItems": len(info.default), "maxItems": len(info.default)}
    return _number_schema(*_scalar_rule(info))


def _typed_schema(info: ControlInfo) -> dict:
    if info.type == "bool":
        one = {"type": "boolean"}
    elif info.type == "rectangle":
        one = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 4,
               "maxItems": 4}
    elif info.type in ("integer", "number"):
        one = _number_schema(info.type == "integer", *_bounds(info))
    else:
        return {"not": {}}
    if info.size is None or info.type == "bool":
        return one if info.size is None else {"not": {}}
    if info.size:
        count = {"minItems": info.size, "maxItems": info.size}
    else:
        count = {"minItems": 1, "maxItems": MAX_RECTANGLES if info.type == "rectangle" else MAX_ITEMS}
    return {"type": "array", "items": one, **count}


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
