"""The mock camera's scripted scene, for motion detection: an object that moves on a path,
sensor noise, flicker, a slow brightness ramp and passing clouds.

``[camera.mock.scene]`` in the config sets it; every value can be changed on the
instance while it runs (tests do). Times are scene seconds: the mock counts them
from when it opened. The scene is a pure function of the time (and of the
noise generator's seed), so a test can script frames at chosen times:

- the object is a disc of ``size`` (a fraction of the frame height) with
  black and white stripes, so it stands out on every colour bar; it moves along
  ``path`` (frame-relative points, x right and y down, 0-1 inside the frame) at
  ``speed`` frame widths per second, entering ``start_s`` after the scene starts
  and again every ``repeat_s`` (0: once). Outside a pass it is nowhere.
- ``noise``: Gaussian sensor noise, sigma in grey levels.
- ``flicker``: each frame's brightness is off by up to this fraction, at random.
- ``ramp``: brightness drifts down and back up (between 1.0 and 0.5) at this
  fraction per second.
- ``cloud_s``: every this many seconds a shadow darkens the left ``cloud_area``
  of the frame to 60 % for half the period, suddenly on and off.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields

import numpy as np

# Limited-range luma, as a camera's YUV420 stream carries it.
BLACK, WHITE = 16, 235
CLOUD_SHADE = 0.6


@dataclass
class Scene:
    path: list = field(default_factory=list)
    speed: float = 0.5
    size: float = 0.2
    start_s: float = 0.0
    repeat_s: float = 0.0
    noise: float = 0.0
    flicker: float = 0.0
    ramp: float = 0.0
    cloud_s: float = 0.0
    cloud_area: float = 0.8
    seed: int = -1

    def __post_init__(self):
        self._random = np.random.default_rng(None if self.seed < 0 else self.seed)

    @classmethod
    def from_config(cls, section: dict) -> "Scene":
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in section.items() if key in names})

    # -- geometry ------------------------------------------------------------------

    def object_at(self, t: float) -> tuple[float, float, float] | None:
        """The object's centre (frame-relative x, y) and radius (fraction of the frame
        height) at scene time ``t``, or None when it is not on its path."""
        if len(self.path) < 2 or self.speed <= 0 or t < self.start_s:
            return None
        since = t - self.start_s
        if self.repeat_s > 0:
            since %= self.repeat_s
        distance = since * self.speed
        for (x0, y0), (x1, y1) in zip(self.path, self.path[1:]):
            leg = math.hypot(x1 - x0, y1 - y0)
            if distance <= leg:
                share = distance / leg if leg else 0.0
                return x0 + (x1 - x0) * share, y0 + (y1 - y0) * share, self.size / 2
            distance -= leg
        return None

    def object_box(self, t: float, width: int, height: int) -> tuple[float, float, float, float] | None:
        """The visible part of the object as a frame-relative box (x, y, w, h), or None."""
        where = self.object_at(t)
        if where is None:
            return None
        cx, cy, r = where[0] * width, where[1] * height, where[2] * height
        left, top = max(0.0, cx - r), max(0.0, cy - r)
        right, bottom = min(float(width), cx + r), min(float(height), cy + r)
        if right <= left or bottom <= top:
            return None
        return left / width, top / height, (right - left) / width, (bottom - top) / height

    def brightness(self, t: float) -> float:
        """The scene's light at ``t`` (1.0: as drawn), before flicker."""
        if not self.ramp:
            return 1.0
        phase = (self.ramp * t) % 1.0
        return 1.0 - min(phase, 1.0 - phase)

    def clouded(self, t: float) -> bool:
        return self.cloud_s > 0 and (t % self.cloud_s) >= self.cloud_s / 2

    # -- frames --------------------------------------------------------------------

    def luma(self, width: int, height: int, t: float) -> np.ndarray:
        """The Y plane of the scene at ``t``: uint8, shape (height, width)."""
        frame = _background(width, height).copy()
        where = self.object_at(t)
        if where is not None:
            disc, stripes = self._object_pixels(width, height, where)
            frame[disc] = np.where(stripes[disc], WHITE, BLACK)
        gain = self.brightness(t)
        if self.flicker:
            gain *= 1.0 + self._random.uniform(-self.flicker, self.flicker)
        if gain != 1.0:
            frame *= gain
        if self.clouded(t):
            frame[:, :int(width * self.cloud_area)] *= CLOUD_SHADE
        if self.noise:
            frame += self._random.normal(0.0, self.noise, frame.shape).astype(np.float32)
        return np.clip(frame, 0, 255).astype(np.uint8)

    def draw(self, image, t: float) -> None:
        """Draw the object onto a still (a Pillow RGB image) at scene time ``t``."""
        sprite = self.sprite(t, image.width, image.height)
        if sprite is not None:
            left, top, disc, mask = sprite
            image.paste(disc, (left, top), mask)

    def sprite(self, t: float, width: int, height: int):
        """The object at scene time ``t`` in a ``width`` x ``height`` picture, as
        ``(left, top, disc, mask)`` (Pillow RGB and L images to paste there), or None."""
        from PIL import Image, ImageDraw
        where = self.object_at(t)
        if where is None:
            return None
        r = max(1, round(where[2] * height))
        stripe = max(1, r // 3)
        disc = Image.new("L", (2 * r, 2 * r), WHITE)
        draw = ImageDraw.Draw(disc)
        for top in range(0, 2 * r, 2 * stripe):
            draw.rectangle((0, top, 2 * r, top + stripe - 1), fill=BLACK)
        mask = Image.new("L", (2 * r, 2 * r), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, 2 * r - 1, 2 * r - 1), fill=255)
        return round(where[0] * width) - r, round(where[1] * height) - r, disc.convert("RGB"), mask

    @staticmethod
    def _object_pixels(width: int, height: int, where) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = _grid(width, height)
        cx, cy, r = where[0] * width, where[1] * height, where[2] * height
        disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
        stripe = max(1.0, r / 3)
        stripes = ((ys - (cy - r)) // stripe) % 2 == 1
        return disc, stripes


@functools.lru_cache(maxsize=4)
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return ys, xs


@functools.lru_cache(maxsize=4)
def _background(width: int, height: int) -> np.ndarray:
    """The mock's colour bars and grey ramp as limited-range luma, float32."""
    from .mock import _pattern
    grey = np.asarray(_pattern(width, height).convert("L"), dtype=np.float32)
    return BLACK + grey * ((WHITE - BLACK) / 255.0)
