"""Standard EXIF for a JPEG, from the frame's metadata (piexif, which picamera2 uses too)."""
from __future__ import annotations

import datetime as dt
import io
import logging
from typing import Any

import piexif

log = logging.getLogger(__name__)

MAKE = "Raspberry Pi"
# Pixels are already flipped as asked, so the picture is always upright as stored.
ORIENTATION_NORMAL = 1


def with_exif(jpeg: bytes, metadata: dict[str, Any], model: str, taken_at: dt.datetime) -> bytes:
    """``jpeg`` with an EXIF block (replacing any) describing how it was taken.

    DateTimeOriginal is in UTC (OffsetTimeOriginal says so) with milliseconds in
    SubSecTimeOriginal; ExposureTime is the frame's, in microseconds; the ISO
    equivalent is 100 x the total gain, as picamera2 and rpicam-apps write it.
    """
    stamp = taken_at.astimezone(dt.timezone.utc).strftime("%Y:%m:%d %H:%M:%S")
    subsec = f"{taken_at.microsecond // 1000:03d}"
    zeroth = {piexif.ImageIFD.Make: MAKE, piexif.ImageIFD.Model: model or "unknown",
              piexif.ImageIFD.Orientation: ORIENTATION_NORMAL,
              piexif.ImageIFD.Software: "picam-api", piexif.ImageIFD.DateTime: stamp}
    exif_ifd: dict[int, Any] = {piexif.ExifIFD.DateTimeOriginal: stamp,
                                piexif.ExifIFD.SubSecTimeOriginal: subsec,
                                piexif.ExifIFD.OffsetTimeOriginal: "+00:00"}
    exposure = metadata.get("ExposureTime")
    if isinstance(exposure, (int, float)) and exposure > 0:
        exif_ifd[piexif.ExifIFD.ExposureTime] = (int(exposure), 1_000_000)
    gain = metadata.get("AnalogueGain")
    if isinstance(gain, (int, float)) and gain > 0:
        total = gain * float(metadata.get("DigitalGain") or 1.0)
        exif_ifd[piexif.ExifIFD.ISOSpeedRatings] = max(1, min(65535, round(total * 100)))
    try:
        block = piexif.dump({"0th": zeroth, "Exif": exif_ifd})
        out = io.BytesIO()
        piexif.insert(block, jpeg, out)
        return out.getvalue()
    except Exception:  # a JPEG piexif cannot parse keeps no EXIF rather than failing the photo
        log.warning("could not write EXIF into a JPEG", exc_info=True)
        return jpeg
