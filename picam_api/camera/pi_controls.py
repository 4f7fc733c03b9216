"""libcamera's controls and frame metadata in picam-api's terms, for the picamera2 backend.

What the camera advertises becomes a ``ControlInfo`` typed by libcamera's own
``ControlId`` (type, isArray, size); JSON values are coerced to the types the
binding insists on; frame metadata is filtered to plain numbers; and
``unapplied`` tells whether a frame already shows the controls sent.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any

from .base import ControlInfo

# Sensors quantise exposure to line times and gain to register steps.
EXPOSURE_TOLERANCE = 0.02
# libcamera's ControlType names as picam-api's control types (base.ControlInfo.type).
CONTROL_TYPES = {"Bool": "bool", "Byte": "integer", "Unsigned16": "integer",
                 "Unsigned32": "integer", "Integer32": "integer", "Integer64": "integer",
                 "Float": "number", "Rectangle": "rectangle", "Size": "size", "String": "string",
                 "Point": "point"}
# Frame metadata worth returning; all are plain numbers in picamera2's dict.
METADATA_KEYS = ("ExposureTime", "AnalogueGain", "DigitalGain", "Lux", "ColourTemperature",
                 "SensorTimestamp", "FrameDuration", "LensPosition", "FocusFoM", "AfState")
# The value that returns a control to automatic operation when a request drops
# it. 0 means "auto" for these (picamera2 turns it into ExposureTimeMode/
# AnalogueGainMode auto; the Pi IPA treats zero colour gains as auto white balance).
AUTO_VALUES: dict[str, Any] = {"ExposureTime": 0, "AnalogueGain": 0.0, "ColourGains": [0.0, 0.0]}
# Array controls whose advertised minimum is not their lowest value: the Pi IPA
# advertises ColourCorrectionMatrix as ControlInfo(0.0f, 8.0f) (ipa_base.cpp), but
# a colour matrix has negative entries off the diagonal, and libcamera checks no
# range; the PiSP back end stores each as signed 4.10 fixed point (pisp.cpp
# clampField(..., 14, 10, true)), so -8 to 8 is what the hardware can hold.
SIGNED_CONTROLS = {"ColourCorrectionMatrix"}
# Boolean controls that libcamera advertises without a default; True is what
# the camera does untouched (auto exposure, auto white balance).
BOOL_DEFAULTS = {"AeEnable": True, "AwbEnable": True}


def control_info(name: str, info: Any, control_id: Any) -> ControlInfo:
    """Build a ControlInfo from picamera2's ``(min, max, default)`` and libcamera's ControlId.

    The type and shape come from the ControlId (``type``, ``isArray``, ``size``),
    never from the default, whose shape differs between libcamera releases
    (FrameDurationLimits: none, a scalar, a pair) and which some controls lack
    (ColourCorrectionMatrix, AfWindows' is one rectangle of a variable list).
    """
    minimum, maximum, default = (_jsonable(v) for v in info)
    kind = CONTROL_TYPES.get(getattr(getattr(control_id, "type", None), "name", ""), None)
    is_array = bool(getattr(control_id, "isArray", False))
    size = int(getattr(control_id, "size", 0) or 0) if is_array else None
    if kind is None:  # a libcamera too old to tell: fall back to the default's shape
        return ControlInfo(minimum, maximum, _fill_default(name, minimum, maximum, default))
    if name in SIGNED_CONTROLS and _is_number(maximum):
        minimum = -maximum
    if default is None and kind == "bool":
        default = BOOL_DEFAULTS.get(name, False)
    elif default is None and name in AUTO_VALUES:
        default = AUTO_VALUES[name]
    return ControlInfo(minimum, maximum, default, type=kind, size=size)


def _fill_default(name: str, minimum: Any, maximum: Any, default: Any) -> Any:
    if default is None:
        if isinstance(minimum, bool):
            return BOOL_DEFAULTS.get(name, False)
        if name == "ColourGains":
            return list(AUTO_VALUES["ColourGains"])
        if name == "FrameDurationLimits" and _is_number(minimum) and _is_number(maximum):
            return [minimum, maximum]
    return default


def coerce(info: ControlInfo, value: Any) -> Any:
    """Whole-number floats become ints where libcamera wants integers."""
    whole = info.type in ("integer", "rectangle", "size", "point") or (
        info.type is None and isinstance(info.default, int) and not isinstance(info.default, bool))
    if info.type is None and isinstance(info.default, list):
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in info.default)

    def one(v):
        if isinstance(v, (list, tuple)):
            return [one(i) for i in v]
        if whole and isinstance(v, float) and v.is_integer():
            return int(v)
        return v
    return one(value)


def unapplied(sent: dict, raw: dict) -> str | None:
    """The first of exposure, gain and manual lens position that ``sent`` set and frame
    metadata ``raw`` does not show yet."""
    for name in ("ExposureTime", "AnalogueGain"):
        want = sent.get(name)
        got = raw.get(name)
        if not want or not isinstance(got, (int, float)):
            continue
        if abs(got - want) > max(EXPOSURE_TOLERANCE * want, 1 if name == "AnalogueGain" else 50) \
                and not (name == "AnalogueGain" and abs(got - want) <= 0.05):
            return f"{name}={want} (the frame reports {got})"
    lens, got = sent.get("LensPosition"), raw.get("LensPosition")
    if sent.get("AfMode", 0) == 0 and isinstance(lens, (int, float)) \
            and isinstance(got, (int, float)) and abs(got - lens) > 0.05:
        return f"LensPosition={lens} (the frame reports {got})"
    return None


def frame_time_us(controls: dict) -> float:
    """The frame time ``controls`` force at least: ExposureTime (a frame lasts as
    long as its exposure), or FrameDurationLimits' lower bound."""
    frame = controls.get("ExposureTime") or 0
    limits = controls.get("FrameDurationLimits")
    if isinstance(limits, (list, tuple)) and len(limits) == 2:
        frame = max(frame, min(limits))
    return frame


def frame_metadata(raw: dict) -> dict:
    """Keep the scalar, JSON-safe fields worth reporting."""
    out = {}
    for key in METADATA_KEYS:
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
