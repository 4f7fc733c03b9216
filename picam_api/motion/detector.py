"""The motion detector: one small luma frame in, how much of it moved out. numpy only.

Per frame, all vectorised over the pixels (no Python loop over them):

1. Gain compensation: the background is scaled by the ratio of the frame's mean
   brightness to the background's (over unmasked, unclipped pixels), so flicker
   and a lamp dimming the whole scene are not differences.
2. A pixel has changed when it differs from the scaled background by more than
   ``k`` times its own noise (a running per-pixel standard deviation), and by at
   least ``DIFF_FLOOR`` grey levels; ``k`` comes from the sensitivity. Pixels
   clipped in the frame (near black or white) do not follow the light, so they are
   left out of the gain; they still count as changed, since a clipped pixel differs
   at least as much as it shows (a white shirt on a bright frame). Where the scaled
   background is clipped nothing can be told, and the pixel is skipped.
3. Changed pixels vote in blocks of ``BLOCK`` x ``BLOCK``: a block counts when
   ``VOTES`` of its pixels changed, which removes lone noise pixels. The changed
   area is the counted blocks' share of the unmasked frame, in percent; the
   bounding box is theirs.
4. Global-change guard: an area of ``global_change_pct`` or more, with or without
   the gain compensation, is a change of light (a cloud, a lamp), not motion:
   the background is learnt afresh.
5. The background starts as the per-pixel median of the first ``WARMUP_FRAMES``
   (an object passing then leaves no ghost), then follows the frame (a running average with a time constant of
   ``background_s``), slowly where pixels changed, so a moving object does not
   smear into it but a parked car becomes scenery; the noise follows only where
   nothing changed.

``score`` is the area over the minimum area: 1.0 and above is motion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 4
VOTES = 6  # of BLOCK * BLOCK pixels
# 8-bit luma from a real sensor moves by a few levels with no change in the scene.
DIFF_FLOOR = 10.0
CLIP_LOW, CLIP_HIGH = 4.0, 251.0
# Changed pixels learn this much more slowly than still ones.
SLOW = 0.1
# Frames the model learns from before it decides anything.
WARMUP_FRAMES = 5
INITIAL_SIGMA = 4.0


def k_for(sensitivity: float) -> float:
    """Sensitivity 1-100 as the noise multiple a pixel must exceed: 10 at 1, 2 at 100."""
    return 10.0 - 8.0 * (sensitivity - 1.0) / 99.0


@dataclass(frozen=True)
class Observation:
    """What one frame showed. ``bbox`` is (x, y, w, h), frame-relative, or None."""

    area_pct: float
    score: float
    bbox: tuple[float, float, float, float] | None
    moving: bool
    light_change: bool
    learning: bool


class Detector:
    """Background model and change decision for frames of one size; not thread-safe."""

    def __init__(self, width: int, height: int, *, sensitivity: float = 50, min_area_pct: float = 0.5,
                 global_change_pct: float = 50.0, background_s: float = 5.0, fps: float = 5.0,
                 mask: np.ndarray | None = None):
        self.width, self.height = width, height
        self.sensitivity = sensitivity
        self.min_area_pct = min_area_pct
        self.global_change_pct = global_change_pct
        self.alpha = min(1.0, 1.0 / max(background_s * fps, 1.0))
        self.set_mask(mask)
        self.reset()

    def reset(self) -> None:
        """Forget the background: learn it again from the next frames."""
        self.background: np.ndarray | None = None
        self.variance: np.ndarray | None = None
        self._warmup: list[np.ndarray] = []
        self.frames = 0
        self.changed: np.ndarray | None = None  # the last frame's changed pixels (preview)
        self.blocks: np.ndarray | None = None

    def set_mask(self, mask: np.ndarray | None) -> None:
        """``mask``: bool (height, width), True where motion is ignored; None for none."""
        self.mask = mask if mask is not None else np.zeros((self.height, self.width), bool)
        self._valid = ~self.mask
        self._valid_f = self._valid.astype(np.float32)
        self.unmasked = int(self._valid.sum())

    def feed(self, pixels: np.ndarray) -> Observation:
        """Take the next frame (uint8, (height, width)) and say what moved in it."""
        frame = pixels.astype(np.float32)
        self.frames += 1
        if self.background is None:
            return self._learn(frame)
        if not self.unmasked:
            return self._nothing(learning=False)
        weights = (self._valid & (frame > CLIP_LOW) & (frame < CLIP_HIGH)).astype(np.float32)
        total = float(weights.sum()) or 1.0
        background_mean = float(np.vdot(self.background, weights)) / total
        gain = float(np.vdot(frame, weights)) / total / max(background_mean, 1.0)
        expected = self.background * gain
        diff = frame - expected
        usable = self._valid & (expected > CLIP_LOW) & (expected < CLIP_HIGH)
        threshold = np.maximum(np.sqrt(self.variance) * k_for(self.sensitivity), DIFF_FLOOR)
        changed = (np.abs(diff) > threshold) & usable
        blocks = self._vote(changed)
        area = 100.0 * int(blocks.sum()) * BLOCK * BLOCK / self.unmasked
        self.changed, self.blocks = changed, blocks
        learning = False
        light = area >= self.global_change_pct
        if not light and area >= self.min_area_pct:
            # A shadow over most of the frame moves the mean, so compensating the gain
            # makes the unshadowed rest look changed: ask the frame as it is, too.
            raw = (np.abs(frame - self.background) > threshold) & usable
            light = 100.0 * int(self._vote(raw).sum()) * BLOCK * BLOCK / self.unmasked \
                >= self.global_change_pct
        if light:
            self.background = frame  # a new light: this is the scene now
            return Observation(round(area, 2), self._score(area), None, False, True, learning)
        rate = np.where(changed, self.alpha * SLOW, self.alpha).astype(np.float32)
        self.background += rate * (frame - self.background)
        update = self.alpha * (diff * diff - self.variance)
        update[changed] = 0.0
        self.variance += update
        moving = not learning and area >= self.min_area_pct
        return Observation(round(area, 2), self._score(area), self._bbox(blocks) if area else None,
                           moving, False, learning)

    def _learn(self, frame: np.ndarray) -> Observation:
        """The first frames: their per-pixel median is the background, so something that
        moved through them leaves no ghost; their spread about it is the first noise."""
        self._warmup.append(frame)
        if len(self._warmup) == WARMUP_FRAMES:
            stack = np.stack(self._warmup)
            self.background = np.median(stack, axis=0).astype(np.float32)
            sigma = 1.4826 * float(np.median(np.abs(stack - self.background)))
            self.variance = np.full(frame.shape, max(sigma, INITIAL_SIGMA) ** 2, np.float32)
            self._warmup = []
        return self._nothing(learning=True)

    def _vote(self, changed: np.ndarray) -> np.ndarray:
        rows, cols = self.height // BLOCK, self.width // BLOCK
        cut = changed[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
        return cut.sum(axis=(1, 3), dtype=np.int32) >= VOTES

    def _bbox(self, blocks: np.ndarray) -> tuple[float, float, float, float]:
        rows = np.flatnonzero(blocks.any(axis=1))
        cols = np.flatnonzero(blocks.any(axis=0))
        x, y = cols[0] * BLOCK, rows[0] * BLOCK
        w, h = (cols[-1] + 1) * BLOCK - x, (rows[-1] + 1) * BLOCK - y
        return (round(float(x) / self.width, 4), round(float(y) / self.height, 4),
                round(float(w) / self.width, 4), round(float(h) / self.height, 4))

    def _score(self, area: float) -> float:
        return round(area / self.min_area_pct, 2)

    def _nothing(self, learning: bool) -> Observation:
        self.changed = self.blocks = None
        return Observation(0.0, 0.0, None, False, False, learning)
