"""The binding's value types: Size, Point, Rectangle, Transform, Orientation, ColorSpace, PixelFormat.

As src/py/libcamera/py_geometry.cpp, py_transform.cpp, py_color_space.cpp and
py_main.cpp define them: the same constructors (and the same TypeError for
arguments none of them take, as pybind11 words it), attributes and string forms.
Classes with ``==`` have no hash, as pybind11 makes them; Transform and
ColorSpace keep identity hashing, which picamera2 relies on (it puts them in a
set and uses them as dict keys).
"""
from __future__ import annotations

import enum


def _incompatible(cls: str, signatures: list[str], args, kwargs):
    given = ", ".join([type(a).__name__ for a in args] + [f"{k}={type(v).__name__}" for k, v in kwargs.items()])
    lines = "\n".join(f"    {i}. libcamera._libcamera.{cls}({s})" for i, s in enumerate(signatures, 1))
    return TypeError(f"__init__(): incompatible constructor arguments. The following argument "
                     f"types are supported:\n{lines}\n\nInvoked with: {given}")


def _is_int(value) -> bool:
    return isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, float))


class Size:
    def __init__(self, *args, **kwargs):
        if kwargs or len(args) not in (0, 2) or not all(_is_int(a) for a in args):
            raise _incompatible("Size", ["", "width: int, height: int"], args, kwargs)
        self.width, self.height = (int(args[0]), int(args[1])) if args else (0, 0)

    @property
    def is_null(self) -> bool:
        return not self.width and not self.height

    def __eq__(self, other):
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    __hash__ = None

    def __str__(self):
        return f"{self.width}x{self.height}"

    def __repr__(self):
        return f"libcamera.Size({self.width}, {self.height})"


class Point:
    def __init__(self, *args, **kwargs):
        if kwargs or len(args) not in (0, 2) or not all(_is_int(a) for a in args):
            raise _incompatible("Point", ["", "x: int, y: int"], args, kwargs)
        self.x, self.y = (int(args[0]), int(args[1])) if args else (0, 0)

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None


class Rectangle:
    """Rectangle(), Rectangle(x, y, Size), Rectangle(x, y, w, h), Rectangle(Size)."""

    def __init__(self, *args, **kwargs):
        if not kwargs and not args:
            self.x = self.y = self.width = self.height = 0
        elif not kwargs and len(args) == 1 and isinstance(args[0], Size):
            self.x = self.y = 0
            self.width, self.height = args[0].width, args[0].height
        elif not kwargs and len(args) == 3 and _is_int(args[0]) and _is_int(args[1]) \
                and isinstance(args[2], Size):
            self.x, self.y = int(args[0]), int(args[1])
            self.width, self.height = args[2].width, args[2].height
        elif not kwargs and len(args) == 4 and all(_is_int(a) for a in args) and args[2] >= 0 \
                and args[3] >= 0:
            self.x, self.y, self.width, self.height = (int(a) for a in args)
        else:
            raise _incompatible("Rectangle", ["", "x: int, y: int, size: libcamera._libcamera.Size",
                                              "x: int, y: int, width: int, height: int",
                                              "size: libcamera._libcamera.Size"], args, kwargs)

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    @property
    def is_null(self) -> bool:
        return not self.width and not self.height

    def __eq__(self, other):
        return isinstance(other, Rectangle) and self._t() == other._t()

    __hash__ = None

    def _t(self):
        return (self.x, self.y, self.width, self.height)

    def __str__(self):
        return f"({self.x}, {self.y})/{self.width}x{self.height}"

    def __repr__(self):
        return f"libcamera.Rectangle({self.x}, {self.y}, {self.width}, {self.height})"


class Orientation(enum.Enum):
    """libcamera's Orientation: the EXIF orientation values."""

    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate90 = 7
    Rotate270Mirror = 8


_TRANSFORM_NAMES = {(0, 0, 0): "identity", (1, 0, 0): "hflip", (0, 1, 0): "vflip",
                    (1, 1, 0): "hvflip", (0, 0, 1): "transpose", (1, 0, 1): "rot270",
                    (0, 1, 1): "rot90", (1, 1, 1): "rot180transpose"}
_ROTATIONS = {0: (0, 0, 0), 90: (0, 1, 1), 180: (1, 1, 0), 270: (1, 0, 1)}


def _flag(value, name) -> bool:
    # pybind11's bool caster converts anything with __bool__ (ints included).
    if isinstance(value, (str, bytes)) or not hasattr(type(value), "__bool__") and not isinstance(value, int):
        raise TypeError(f"__init__(): incompatible function arguments ({name}={value!r})")
    return bool(value)


class Transform:
    """Transform(rotation=0, hflip=False, vflip=False, transpose=False), or a copy of one."""

    def __init__(self, *args, rotation=0, hflip=False, vflip=False, transpose=False):
        if len(args) == 1 and isinstance(args[0], Transform):
            other = args[0]
            self.hflip, self.vflip, self.transpose = other.hflip, other.vflip, other.transpose
            return
        if args:
            names = ("rotation", "hflip", "vflip", "transpose")
            values = dict(zip(names, args))
            rotation = values.get("rotation", rotation)
            hflip, vflip, transpose = (values.get(n, d) for n, d in
                                       zip(names[1:], (hflip, vflip, transpose)))
        if not isinstance(rotation, int) or rotation % 360 not in _ROTATIONS:
            raise ValueError("Invalid rotation")
        rh, rv, rt = _ROTATIONS[rotation % 360]
        h, v, t = _flag(hflip, "hflip"), _flag(vflip, "vflip"), _flag(transpose, "transpose")
        # py_transform.cpp: transformFromRotation(), then each flag XORed in.
        self.hflip, self.vflip, self.transpose = bool(rh ^ h), bool(rv ^ v), bool(rt ^ t)

    def __str__(self):
        return _TRANSFORM_NAMES[(int(self.hflip), int(self.vflip), int(self.transpose))]

    def __repr__(self):
        return f"<libcamera.Transform '{self}'>"


class ColorSpace:
    class Primaries(enum.Enum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.Enum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(enum.Enum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.Enum):
        Full = 0
        Limited = 1

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], ColorSpace):
            o = args[0]
            args = (o.primaries, o.transferFunction, o.ycbcrEncoding, o.range)
        if len(args) != 4:
            raise _incompatible("ColorSpace", ["primaries, transferFunction, ycbcrEncoding, range",
                                               "other: ColorSpace"], args, {})
        self.primaries, self.transferFunction, self.ycbcrEncoding, self.range = args

    @staticmethod
    def Raw():
        C = ColorSpace
        return C(C.Primaries.Raw, C.TransferFunction.Linear, C.YcbcrEncoding.Null, C.Range.Full)

    @staticmethod
    def Srgb():
        C = ColorSpace
        return C(C.Primaries.Rec709, C.TransferFunction.Srgb, C.YcbcrEncoding.Null, C.Range.Full)

    @staticmethod
    def Sycc():
        C = ColorSpace
        return C(C.Primaries.Rec709, C.TransferFunction.Srgb, C.YcbcrEncoding.Rec601, C.Range.Full)

    @staticmethod
    def Smpte170m():
        C = ColorSpace
        return C(C.Primaries.Smpte170m, C.TransferFunction.Rec709, C.YcbcrEncoding.Rec601,
                 C.Range.Limited)

    @staticmethod
    def Rec709():
        C = ColorSpace
        return C(C.Primaries.Rec709, C.TransferFunction.Rec709, C.YcbcrEncoding.Rec709,
                 C.Range.Limited)

    @staticmethod
    def Rec2020():
        C = ColorSpace
        return C(C.Primaries.Rec2020, C.TransferFunction.Rec709, C.YcbcrEncoding.Rec2020,
                 C.Range.Limited)

    def _key(self):
        return (self.primaries, self.transferFunction, self.ycbcrEncoding, self.range)

    def __str__(self):
        for name in ("Raw", "Srgb", "Sycc", "Smpte170m", "Rec709", "Rec2020"):
            if getattr(ColorSpace, name)()._key() == self._key():
                return {"Raw": "RAW", "Srgb": "sRGB", "Sycc": "sYCC",
                        "Smpte170m": "SMPTE170M"}.get(name, name)
        return "/".join(e.name for e in self._key())


# Formats the Pi's ISP and Unicam/CFE produce: bytes per pixel of the first plane.
PIXEL_FORMATS = {
    "BGR888": 3, "RGB888": 3, "XBGR8888": 4, "XRGB8888": 4, "YUV420": 1, "YVU420": 1,
    "NV12": 1, "NV21": 1, "YUYV": 2, "UYVY": 2, "RGB161616": 6, "BGR161616": 6, "MJPEG": 1,
}
RAW_ORDERS = ("RGGB", "GRBG", "GBRG", "BGGR")
RAW_FORMATS = [f"S{o}{d}{p}" for o in RAW_ORDERS for d in (8, 10, 12, 16)
               for p in ("", "_CSI2P") if not (d in (8, 16) and p)] + \
    [f"S{o}16_PISP_COMP1" for o in RAW_ORDERS]


class PixelFormat:
    """PixelFormat(name) as PixelFormat::fromString: an unknown name gives an invalid format."""

    def __init__(self, name=""):
        if not isinstance(name, str):
            raise _incompatible("PixelFormat", ["fourcc: int, modifiers: int = 0", "str: str"],
                                (name,), {})
        self._name = name if name in PIXEL_FORMATS or name in RAW_FORMATS else ""

    @property
    def is_valid(self) -> bool:
        return bool(self._name)

    def __eq__(self, other):
        return isinstance(other, PixelFormat) and self._name == other._name

    __hash__ = None

    def __str__(self):
        return self._name or "<INVALID>"

    def __repr__(self):
        return f"libcamera.PixelFormat('{self}')"
