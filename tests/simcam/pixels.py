"""Frame buffers' pixel layouts, and writing a picture into one in its format and stride."""
from __future__ import annotations

import numpy as np
from PIL import Image

RGB_ORDER = {"BGR888": (0, 1, 2), "RGB888": (2, 1, 0)}  # byte order in memory, as picamera2 reads it
RGBX_ORDER = {"XBGR8888": (0, 1, 2), "XRGB8888": (2, 1, 0)}
YUV_PLANAR = ("YUV420", "YVU420")
YUV_SEMI = ("NV12", "NV21")


def is_raw(fmt: str) -> bool:
    return fmt.startswith("S") and fmt[1:5].isalpha() and fmt[1:5] == fmt[1:5].upper() \
        and any(c.isdigit() for c in fmt)


def bytes_per_line(fmt: str, width: int) -> int:
    """The unpadded bytes of one line of the first plane."""
    if is_raw(fmt):
        depth = int(fmt.split("_")[0][5:])
        if fmt.endswith("_CSI2P"):
            return width * depth // 8
        return width * (1 if depth == 8 else 2)
    return width * {"BGR888": 3, "RGB888": 3, "XBGR8888": 4, "XRGB8888": 4, "YUYV": 2, "UYVY": 2,
                    "RGB161616": 6, "BGR161616": 6}.get(fmt, 1)


def frame_size(fmt: str, stride: int, height: int) -> int:
    if fmt in YUV_PLANAR or fmt in YUV_SEMI:
        return stride * height * 3 // 2
    return stride * height


def planes(fmt: str, stride: int, height: int) -> list[tuple[int, int, int]]:
    """(offset, stride, rows) of each plane."""
    if fmt in YUV_PLANAR:
        luma = stride * height
        return [(0, stride, height), (luma, stride // 2, height // 2),
                (luma + stride // 2 * (height // 2), stride // 2, height // 2)]
    if fmt in YUV_SEMI:
        return [(0, stride, height), (stride * height, stride, height // 2)]
    return [(0, stride, height)]


def convert(image: Image.Image, fmt: str) -> list[np.ndarray] | None:
    """``image`` (RGB) as the byte rows of each plane of ``fmt``; None for raw Bayer."""
    if fmt in RGB_ORDER:
        rgb = np.asarray(image.convert("RGB"))
        data = rgb[:, :, list(RGB_ORDER[fmt])]
        return [np.ascontiguousarray(data).reshape(rgb.shape[0], -1)]
    if fmt in RGBX_ORDER:
        rgb = np.asarray(image.convert("RGB"))
        out = np.full((rgb.shape[0], rgb.shape[1], 4), 255, np.uint8)
        out[:, :, :3] = rgb[:, :, list(RGBX_ORDER[fmt])]
        return [out.reshape(rgb.shape[0], -1)]
    if fmt in YUV_PLANAR or fmt in YUV_SEMI or fmt in ("YUYV", "UYVY"):
        # Full-range BT.601 (sYCC), what JPEG and simplejpeg's YUV path assume.
        y, cb, cr = image.convert("YCbCr").split()
        w, h = image.size
        if fmt in ("YUYV", "UYVY"):
            cb2 = np.asarray(cb.resize((w // 2, h), Image.Resampling.BOX))
            cr2 = np.asarray(cr.resize((w // 2, h), Image.Resampling.BOX))
            yy = np.asarray(y)
            out = np.empty((h, w * 2), np.uint8)
            if fmt == "YUYV":
                out[:, 0::2], out[:, 1::4], out[:, 3::4] = yy, cb2, cr2
            else:
                out[:, 1::2], out[:, 0::4], out[:, 2::4] = yy, cb2, cr2
            return [out]
        cb2 = np.asarray(cb.resize((w // 2, h // 2), Image.Resampling.BOX))
        cr2 = np.asarray(cr.resize((w // 2, h // 2), Image.Resampling.BOX))
        if fmt in ("YVU420", "NV21"):
            cb2, cr2 = cr2, cb2
        if fmt in YUV_PLANAR:
            return [np.asarray(y), cb2, cr2]
        uv = np.empty((h // 2, w), np.uint8)
        uv[:, 0::2], uv[:, 1::2] = cb2, cr2
        return [np.asarray(y), uv]
    return None


# Frames larger than this are drawn at half size (``scale_for``).
HALF_SIZE_ABOVE = 4_000_000
# Formats whose samples double cleanly (YUYV's pixel pairs do not).
SCALABLE = tuple(RGB_ORDER) + tuple(RGBX_ORDER) + YUV_PLANAR + YUV_SEMI


def scale_for(fmt: str, width: int, height: int) -> int:
    """2 when a ``width`` x ``height`` frame of ``fmt`` is drawn at half size, else 1."""
    big = width * height > HALF_SIZE_ABOVE and not width % 4 and not height % 4
    return 2 if big and fmt in SCALABLE else 1


def blit(buffer, fmt: str, stride: int, height: int, rows: list[np.ndarray], x: int = 0,
         y: int = 0, scale: int = 1) -> None:
    """Write plane ``rows`` (from ``convert``) into ``buffer`` with its top-left at (x, y),
    each sample repeated ``scale`` times across and down."""
    view = np.frombuffer(buffer, np.uint8)
    layout = planes(fmt, stride, height)
    for index, ((offset, plane_stride, plane_rows), data) in enumerate(zip(layout, rows)):
        sub = 2 if index and fmt in YUV_PLANAR + YUV_SEMI else 1
        px_bytes = data.shape[1] // max(1, _pixels_wide(fmt, index, data))
        top, left = y // sub, x // sub * px_bytes
        target = view[offset:offset + plane_stride * plane_rows].reshape(plane_rows, plane_stride)
        h = min(data.shape[0] * scale, plane_rows - top) // scale
        w = min(data.shape[1] * scale, plane_stride - left) // scale // px_bytes * px_bytes
        if scale == 1:
            target[top:top + h, left:left + w] = data[:h, :w]
            continue
        region = target[top:top + h * scale, left:left + w * scale]
        pixels = data[:h, :w].reshape(h, w // px_bytes, px_bytes)
        region.reshape(h, scale, w // px_bytes, scale, px_bytes)[:] = pixels[:, None, :, None, :]


def _pixels_wide(fmt: str, index: int, data: np.ndarray) -> int:
    if fmt in RGB_ORDER:
        return data.shape[1] // 3
    if fmt in RGBX_ORDER:
        return data.shape[1] // 4
    if fmt in ("YUYV", "UYVY"):
        return data.shape[1] // 2
    if fmt in YUV_SEMI and index:
        return data.shape[1] // 2
    return data.shape[1]
