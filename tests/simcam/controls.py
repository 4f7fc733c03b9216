"""Controls as the binding exposes them: ControlType, ControlId, ControlInfo, the
``controls``/``properties`` submodules, and value conversion both ways.

``to_control_value`` is py_helpers.cpp's ``pyToControlValue``: it casts by the
control's *type* only (pybind11's casters: no float for an integer, no tuple
for a Rectangle, anything truthy for a bool) and accepts a list or tuple as an
array for any type but Bool, String and Size, whatever the control's
``isArray`` says. A value that casts fails with RuntimeError, as pybind11's
``cast_error`` does. Shape is not the binding's business: the Raspberry Pi IPA
reads each control as the type it expects (``get<Span<const float>>()``) and
libcamera's ``assert(isArray_)`` fires on a mismatch; ``check_shape`` models that
and the camera raises it from ``queue_request`` (see camera.py).
"""
from __future__ import annotations

import enum
import itertools
import types

from . import sensors
from .geometry import Point, Rectangle, Size


class ControlType(enum.Enum):
    # The binding names the first member "None" (reachable as getattr only).
    Bool = 1
    Byte = 2
    Unsigned16 = 3
    Unsigned32 = 4
    Integer32 = 5
    Integer64 = 6
    Float = 7
    String = 8
    Rectangle = 9
    Size = 10
    Point = 11


class ControlId:
    """One control's identity: hashable by identity, as the binding's is."""

    _ids = itertools.count(1)

    def __init__(self, name: str, ctype: str, is_array: bool, size: int, vendor: str,
                 enumerators: list[str] | None = None):
        self.id = next(ControlId._ids)
        self.name = name
        self.vendor = vendor
        self.type = ControlType[ctype]
        self.isArray = is_array
        self.size = size
        self.enumerators = {i: n for i, n in enumerate(enumerators or [])}

    def __repr__(self):
        return f"libcamera.ControlId({self.id}, {self.vendor}::{self.name}" \
               f"{'[' + str(self.size or 'n') + ']' if self.isArray else ''}, {self.type})"


class ControlInfo:
    def __init__(self, minimum, maximum, default=None, values=()):
        self.min, self.max, self.default, self.values = minimum, maximum, default, list(values)

    def __repr__(self):
        return f"libcamera.ControlInfo({self.min}, {self.max}, {self.default})"


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _build():
    ctrl, draft, rpi = {}, {}, {}
    ids = {}
    for name, (ctype, is_array, size) in sensors.CONTROL_TYPES.items():
        vendor = "draft" if name in sensors.DRAFT else "rpi" if name in sensors.RPI else "libcamera"
        cid = ControlId(name, ctype, is_array, size, vendor, sensors.ENUMS.get(name))
        ids[name] = cid
        target = draft if vendor == "draft" else rpi if vendor == "rpi" else ctrl
        target[name] = cid
        if name in sensors.ENUMS:
            target[f"{name}Enum"] = enum.IntEnum(f"{name}Enum", {m: i for i, m in
                                                                 enumerate(sensors.ENUMS[name])})
    controls = _module("libcamera._libcamera.controls", **ctrl,
                       draft=_module("libcamera._libcamera.controls.draft", **draft),
                       rpi=_module("libcamera._libcamera.controls.rpi", **rpi))
    props = {}
    for name in ("Model", "Location", "Rotation", "PixelArraySize", "PixelArrayActiveAreas",
                 "ScalerCropMaximum", "UnitCellSize", "ColorFilterArrangement", "SystemDevices",
                 "SensorSensitivity"):
        ctype, is_array = {"Model": ("String", False), "PixelArraySize": ("Size", False),
                           "PixelArrayActiveAreas": ("Rectangle", True),
                           "ScalerCropMaximum": ("Rectangle", False),
                           "UnitCellSize": ("Size", False), "SystemDevices": ("Integer64", True),
                           "SensorSensitivity": ("Float", False)}.get(name, ("Integer32", False))
        props[name] = ControlId(name, ctype, is_array, 0, "libcamera")
    cfa = enum.IntEnum("ColorFilterArrangementEnum", {"RGGB": 0, "GRBG": 1, "GBRG": 2, "BGGR": 3,
                                                      "RGB": 4, "MONO": 5})
    properties = _module("libcamera._libcamera.properties", **props,
                         draft=_module("libcamera._libcamera.properties.draft",
                                       ColorFilterArrangement=props["ColorFilterArrangement"],
                                       ColorFilterArrangementEnum=cfa))
    return ids, props, controls, properties


CONTROL_IDS, PROPERTY_IDS, controls, properties = _build()


# -- Python -> ControlValue ------------------------------------------------------------

def _cast_error(value, ctype: ControlType) -> RuntimeError:
    cpp = {ControlType.Bool: "bool", ControlType.Byte: "unsigned char",
           ControlType.Integer32: "int", ControlType.Integer64: "long",
           ControlType.Float: "float", ControlType.String: "std::string",
           ControlType.Rectangle: "libcamera::Rectangle", ControlType.Size: "libcamera::Size",
           ControlType.Point: "libcamera::Point"}.get(ctype, "?")
    return RuntimeError(f"Unable to cast Python instance of type {type(value)} to C++ type "
                        f"'{cpp}' (#define PYBIND11_DETAILED_ERROR_MESSAGES or compile in debug "
                        f"mode for details)")


def _cast(value, ctype: ControlType):
    if ctype == ControlType.Bool:
        if value is None:
            return False
        if isinstance(value, (str, bytes)) or not hasattr(type(value), "__bool__"):
            raise _cast_error(value, ctype)
        return bool(value)
    if ctype in (ControlType.Byte, ControlType.Integer32, ControlType.Integer64,
                 ControlType.Unsigned16, ControlType.Unsigned32):
        if isinstance(value, float) or not hasattr(value, "__index__"):
            raise _cast_error(value, ctype)
        number = value.__index__()
        bits = {ControlType.Byte: (0, 2**8), ControlType.Integer32: (-2**31, 2**31),
                ControlType.Integer64: (-2**63, 2**63), ControlType.Unsigned16: (0, 2**16),
                ControlType.Unsigned32: (0, 2**32)}[ctype]
        if not bits[0] <= number < bits[1]:
            raise _cast_error(value, ctype)
        return int(number)
    if ctype == ControlType.Float:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
            raise _cast_error(value, ctype)
        return float(value)
    if ctype == ControlType.String:
        if not isinstance(value, str):
            raise _cast_error(value, ctype)
        return value
    kind = {ControlType.Rectangle: Rectangle, ControlType.Size: Size, ControlType.Point: Point}[ctype]
    if not isinstance(value, kind):
        raise _cast_error(value, ctype)
    return value


def to_control_value(value, cid: ControlId):
    """pyToControlValue(): a Python value cast to the control's type, or RuntimeError."""
    ctype = cid.type
    if ctype not in (ControlType.Bool, ControlType.String, ControlType.Size) \
            and isinstance(value, (list, tuple)):
        return tuple(_cast(v, ctype) for v in value)  # a Span
    return _cast(value, ctype)


def check_shape(cid: ControlId, value) -> str | None:
    """Why the IPA could not read ``value`` as ``cid``'s shape, or None."""
    is_span = isinstance(value, tuple)
    if is_span != cid.isArray:
        return (f"{cid.name}: ControlValue::get<{'Span' if cid.isArray else 'T'}>() on "
                f"{'an array' if is_span else 'a scalar'}: Assertion `isArray_' failed")
    if is_span and cid.size and len(value) != cid.size:
        return f"{cid.name}: expected {cid.size} values, got {len(value)}"
    return None


# -- ControlValue -> Python --------------------------------------------------------

def from_python_terms(cid: ControlId, value):
    """A value in the sensors table's terms (tuples for rectangles) as the binding returns it."""
    if value is None:
        return None
    if cid.type == ControlType.Rectangle:
        if isinstance(value, list):
            return tuple(Rectangle(*r) for r in value)
        return Rectangle(*value)
    if cid.type == ControlType.Size:
        return Size(*value)
    if isinstance(value, list):
        return tuple(value)
    return value
