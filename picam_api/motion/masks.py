"""Motion masks rasterised: True where a mask hides a pixel from the detector.

The masks themselves (rectangles and polygons in frame-relative coordinates)
and their rule are ``picam_api.motion_rules``, which the config shares. A
rectangle that reaches past the frame's edge ends there.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def rasterise(masks: list[dict], width: int, height: int) -> np.ndarray:
    """bool (height, width): True where a mask covers the pixel's centre."""
    image = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(image)
    for mask in masks:
        if "points" in mask:
            draw.polygon([(x * width - 0.5, y * height - 0.5) for x, y in mask["points"]], fill=1)
        else:
            left, top = round(mask["x"] * width), round(mask["y"] * height)
            right, bottom = round((mask["x"] + mask["w"]) * width), round((mask["y"] + mask["h"]) * height)
            if right > left and bottom > top:
                draw.rectangle((left, top, right - 1, bottom - 1), fill=1)
    return np.asarray(image, dtype=bool)
