"""The mock camera's video: its test pattern at a fixed rate, encoded with libx264 (PyAV).

Each frame carries a machine-readable stamp in its bottom rows (``stamp`` /
``read_stamp``): the frame counter and the wall-clock time in milliseconds, as
32 black or white blocks each. A test (or a latency probe) decodes a frame and
reads when and which it was, through H.264 compression.

The encoder behaves like picamera2's: its output is told about the stream at
start (``_add_stream("video", "h264", ...)``), then gets each frame as bytes
with its keyframe flag and a microsecond timestamp counted from the first
frame, on the fixed rate a sensor keeps; SPS/PPS repeat on every keyframe, so any keyframe can start a file.
No B-frames, so packets come in presentation order.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from .base import CaptureSettings, VideoSettings
from .outputs import BT601, VIDEO_RANGE

if TYPE_CHECKING:
    from .mock import MockCamera

log = logging.getLogger(__name__)

STAMP_BITS = 32
PRESET = "ultrafast"
# How far drawing may fall behind its frames' times before frames are dropped.
MAX_BEHIND_S = 2.0


def stamp_rows(height: int) -> int:
    """Height of one stamp row: blocks big enough to survive H.264 at any size."""
    return max(8, height // 24) // 2 * 2


def stamp(image: Image.Image, frame: int, when_ms: int) -> None:
    """Draw ``frame`` and ``when_ms`` (mod 2**32) as two rows of blocks at the bottom."""
    draw = ImageDraw.Draw(image)
    rows, width = stamp_rows(image.height), image.width
    for row, value in enumerate((frame, when_ms)):
        top = image.height - (2 - row) * rows
        for bit in range(STAMP_BITS):
            on = (value >> (STAMP_BITS - 1 - bit)) & 1
            left, right = bit * width // STAMP_BITS, (bit + 1) * width // STAMP_BITS
            draw.rectangle((left, top, right - 1, top + rows - 1),
                           fill=(255, 255, 255) if on else (0, 0, 0))


def read_stamp(luma: np.ndarray) -> tuple[int, int]:
    """``(frame, when_ms mod 2**32)`` from a decoded frame's luma plane (height x width)."""
    height, width = luma.shape[:2]
    rows = stamp_rows(height)
    values = []
    for row in range(2):
        middle = height - (2 - row) * rows + rows // 2
        value = 0
        for bit in range(STAMP_BITS):
            x = (2 * bit + 1) * width // (2 * STAMP_BITS)
            value = (value << 1) | int(luma[middle, x] > 128)
        values.append(value)
    return values[0], values[1]


class MockEncoder(threading.Thread):
    """Draws, stamps and encodes frames at ``settings.fps`` until stopped."""

    def __init__(self, camera: MockCamera, settings: VideoSettings, output: Any):
        super().__init__(name=f"picam-mock-h264-{settings.width}x{settings.height}", daemon=True)
        self.camera = camera
        self.settings = settings
        self.output = output
        self.stopping = threading.Event()
        self.frames_encoded = 0
        self.error: Exception | None = None
        self._context = None

    def begin(self) -> None:
        """Open the codec, announce the stream to the output, and start the thread."""
        import av
        s = self.settings
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height, context.pix_fmt = s.width, s.height, "yuv420p"
        context.time_base = Fraction(1, 1_000_000)
        context.framerate = Fraction(s.fps).limit_denominator(1001)
        context.bit_rate = s.bitrate
        context.gop_size = s.keyframe_interval
        context.max_b_frames = 0
        # What the conversion from the RGB picture makes: video range, BT.601.
        context.color_range, context.colorspace = VIDEO_RANGE, BT601
        context.options = {"preset": PRESET, "tune": "zerolatency", "profile": "baseline"}
        context.open()
        self._context = context
        self.output.start()
        self.output._add_stream("video", "h264", width=s.width, height=s.height,
                                rate=context.framerate)
        self.start()

    def run(self) -> None:
        import av
        s = self.settings
        period = 1 / s.fps
        capture = CaptureSettings(width=s.width, height=s.height, hflip=s.hflip, vflip=s.vflip)
        start, tick = time.monotonic(), 0
        try:
            while not self.stopping.is_set():
                # Like a sensor: frame k belongs to start + k / fps, whenever it is drawn.
                due = start + tick * period
                delay = due - time.monotonic()
                if delay > 0 and self.stopping.wait(delay):
                    break
                behind = time.monotonic() - due
                if self.camera.hang or behind > MAX_BEHIND_S:
                    # A stuck camera sends nothing; one starved of CPU for long drops
                    # frames, as a camera with no free buffer does, instead of bursting.
                    tick += 1 if self.camera.hang else int(behind / period)
                    continue
                wall = dt.datetime.now(dt.timezone.utc)
                self.frames_encoded += 1
                image = self.camera.render(capture, self.frames_encoded, wall)
                stamp(image, self.frames_encoded, int(wall.timestamp() * 1000) % 2**STAMP_BITS)
                frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
                frame.pts = round(tick * period * 1e6)
                frame.time_base = Fraction(1, 1_000_000)
                self._send(self._context.encode(frame))
                tick += 1
        except Exception as exc:
            self.error = exc
            log.exception("%s failed", self.name)

    def _send(self, packets) -> None:
        for packet in packets:
            self.output.outputframe(bytes(packet), packet.is_keyframe, packet.pts)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop drawing, flush the codec into the output, then stop the output."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)
        try:
            if self._context is not None and self.error is None:
                self._send(self._context.encode(None))
        except Exception:
            log.exception("%s: flushing the encoder failed", self.name)
        finally:
            self._context = None
            self.output.stop()
