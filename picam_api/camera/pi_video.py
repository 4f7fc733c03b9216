"""Clips on the picamera2 backend: picamera2's own H.264 encoder and outputs.

The encoder is picked per platform as picamera2 picks it: the V4L2
``H264Encoder`` (the VideoCore codec at /dev/video11) on a Pi 4 and older, and
``LibavH264Encoder`` (libx264 in software) on a Pi 5, which has no video
encoder. It is chosen here rather than by importing ``picamera2.encoders.H264Encoder``,
because that name is bound once, when picamera2.encoders is first imported.

The outputs are picamera2's ``PyavOutput`` (the MP4) and ``CircularOutput2``
(the pre-roll ring), with the bookkeeping the recorder reads (see
``CameraBackend.file_output`` and ``circular_output``): frames, the seconds
their timestamps span, the first error; and for the ring a byte bound and its
stats. A picamera2 whose ``PyavOutput`` takes no muxer ``options`` (0.3.27 has
none: its MP4s would keep the index at the end, where a browser cannot seek
before the whole file is loaded) and whose ``CircularOutput2`` does not re-time
its frames to start at zero cannot record; ``require_outputs`` says so.
"""
from __future__ import annotations

import inspect
from fractions import Fraction
from typing import Any

from ..errors import CameraUnavailable
from .base import VideoSettings
from .pi_faults import UPGRADE_FIX, failure

MP4_OPTIONS = {"movflags": "+faststart"}


def outputs_supported() -> bool:
    """Whether this picamera2's PyavOutput takes muxer options."""
    from picamera2.outputs import PyavOutput

    return "options" in inspect.signature(PyavOutput.__init__).parameters


def require_outputs(version: str) -> None:
    """Refuse recording on a picamera2 whose outputs cannot make a seekable MP4."""
    if not outputs_supported():
        raise failure(CameraUnavailable, f"recording video needs a picamera2 whose PyavOutput "
                      f"takes muxer options (for an MP4 with its index first); picamera2 "
                      f"{version} has none", UPGRADE_FIX)


def h264_encoder(settings: VideoSettings, hardware: bool) -> Any:
    """picamera2's H.264 encoder for ``settings``: the V4L2 one when ``hardware``."""
    if hardware:
        from picamera2.encoders.h264_encoder import H264Encoder

        # repeat: SPS/PPS before every keyframe, so a pre-roll can start at any of them.
        return H264Encoder(bitrate=settings.bitrate, repeat=True,
                           iperiod=settings.keyframe_interval, framerate=settings.fps)
    from picamera2.encoders.libav_h264_encoder import LibavH264Encoder

    # PyAV takes a stream's rate as a Fraction, not a float.
    return LibavH264Encoder(bitrate=settings.bitrate, repeat=True,
                            iperiod=settings.keyframe_interval,
                            framerate=Fraction(settings.fps).limit_denominator(1001))


def picamera2_output(output: Any) -> Any:
    """``output`` as picamera2's encoders take it (they check its class).

    picamera2's own outputs (the MP4, the pre-roll ring) pass as they are; ours,
    such as live H.264's fan-out (h264_live.py, on camera/outputs.Output), get a
    picamera2 ``Output`` in front that hands every frame, start and stop on.
    """
    from picamera2.outputs import Output

    if isinstance(output, Output):
        return output

    class HandOn(Output):
        def start(self) -> None:
            super().start()
            output.start()

        def stop(self) -> None:
            super().stop()
            output.stop()

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            output.outputframe(frame, keyframe, timestamp, packet, audio)

    return HandOn()


def mp4_file(path: str) -> Any:
    """A ``PyavOutput`` writing an MP4 at ``path``, index first, that counts what it wrote."""
    from picamera2.outputs import PyavOutput

    class Mp4File(PyavOutput):
        def __init__(self):
            super().__init__(path, format="mp4", options=dict(MP4_OPTIONS))
            self.frames = 0
            self.error: Exception | None = None
            self._first: int | None = None
            self._last: int | None = None
            self._keyed = False
            self.error_callback = self._failed

        def _failed(self, exc: Exception) -> None:
            self.error = self.error or exc

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            super().outputframe(frame, keyframe, timestamp, packet, audio)
            # PyavOutput writes from the first keyframe on, until a write fails.
            self._keyed |= bool(keyframe)
            if audio or not self.recording or not self._keyed or self._container is None:
                return
            self.frames += 1
            self._first = timestamp if self._first is None else self._first
            self._last = timestamp

        @property
        def duration_s(self) -> float:
            """From the first frame to the last, plus one frame's length."""
            if self._first is None or self._last is None:
                return 0.0
            span = (self._last - self._first) / 1e6
            return span + (span / (self.frames - 1) if self.frames > 1 else 0.0)

        def stop(self) -> None:
            container = self._container
            super().stop()  # PyavOutput swallows a failing close: the file is not finished
            if container is not None and self.error is None and self.frames and not _closed(path):
                self.error = OSError(f"the MP4 at {path} was not finished")

    return Mp4File()


def pre_roll(seconds: float, max_bytes: int) -> Any:
    """A ``CircularOutput2`` of ``seconds``, that also drops its oldest frames beyond
    ``max_bytes`` while no clip is open, and reports what it holds."""
    from picamera2.outputs import CircularOutput2

    class PreRoll(CircularOutput2):
        def __init__(self):
            super().__init__(buffer_duration_ms=round(seconds * 1000))
            self.seconds = seconds
            self.max_bytes = max_bytes
            self.frames_in = 0
            self.dropped = 0
            self.last_frame_at: int | None = None

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            super().outputframe(frame, keyframe, timestamp, packet, audio)
            with self._lock:
                if not self.recording or audio:
                    return
                self.frames_in += 1
                self.last_frame_at = timestamp
                # An open clip takes every frame as it leaves; only an idle ring is cut.
                size = sum(len(entry[0]) for entry in self._circular)
                while size > self.max_bytes and len(self._circular) > 1 and self._output is None:
                    size -= len(self._circular.popleft()[0])
                    self.dropped += 1

        def stats(self) -> dict:
            with self._lock:
                ring = self._circular
                span = (ring[-1][2] - ring[0][2]) / 1e6 if len(ring) > 1 else 0.0
                return {"seconds": self.seconds, "frames": len(ring),
                        "bytes": sum(len(entry[0]) for entry in ring),
                        "max_bytes": self.max_bytes, "span_s": round(span, 3),
                        "dropped_frames": self.dropped}

    return PreRoll()


def _closed(path: str) -> bool:
    """Whether the MP4 at ``path`` has its index (a finished file has a moov box)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b"moov" in head
