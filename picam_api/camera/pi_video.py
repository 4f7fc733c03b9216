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

Every encode is constrained baseline (``PROFILE``), and the encoder's one output
is a ``tee``: a clip and the live view of the same size and rate share one
encoder, each output on it from a keyframe (``request_keyframe``) on.
"""
from __future__ import annotations

import contextlib
import inspect
import threading
import time
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


# What every WebRTC browser decodes, and what the mock's libx264 makes; clips use it
# too, so a clip and the live view of the same size can share one encoder (``Tee``).
PROFILE = "constrained baseline"


def h264_encoder(settings: VideoSettings, hardware: bool) -> Any:
    """picamera2's H.264 encoder for ``settings``: the V4L2 one when ``hardware``."""
    if hardware:
        from picamera2.encoders.h264_encoder import H264Encoder

        # repeat: SPS/PPS before every keyframe, so a pre-roll can start at any of them.
        return H264Encoder(bitrate=settings.bitrate, repeat=True, profile=PROFILE,
                           iperiod=settings.keyframe_interval, framerate=settings.fps)
    from picamera2.encoders.libav_h264_encoder import LibavH264Encoder

    class KeyedLibavH264Encoder(LibavH264Encoder):
        """picamera2's libav encoder with a ``force_key_frame`` that works with every
        PyAV: picamera2's own (0.3.38) sets ``pict_type = "I"``, which PyAV 14 and
        later refuse with a TypeError on the thread that encodes."""

        def _start(self) -> None:
            super()._start()  # tells the outputs about the real stream first
            self._stream = _KeyframeStream(self._stream)

        def force_key_frame(self) -> None:
            stream = getattr(self, "_stream", None)
            if isinstance(stream, _KeyframeStream):
                stream.wanted = True

    # PyAV takes a stream's rate as a Fraction, not a float.
    return KeyedLibavH264Encoder(bitrate=settings.bitrate, repeat=True, profile=PROFILE,
                                 iperiod=settings.keyframe_interval,
                                 framerate=Fraction(settings.fps).limit_denominator(1001))


class _KeyframeStream:
    """A PyAV stream whose next frame is encoded as an I picture when ``wanted``;
    libx264's GOPs are closed, so that is an IDR, with SPS/PPS before it."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.wanted = False

    def encode(self, frame: Any = None) -> Any:
        if frame is not None and self.wanted:
            import av

            self.wanted = False
            frame.pict_type = av.video.frame.PictureType.I
        return self._stream.encode(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def request_keyframe(encoder: Any) -> bool:
    """Make ``encoder``'s next frame a keyframe, if this picamera2 can.

    The encoder acts at its next frame: picamera2's V4L2 one sets
    V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME on the codec's fd (a picamera2 without
    ``H264Encoder.force_key_frame``, such as 0.3.27, cannot), the libav one sends
    that frame as an I picture (``_KeyframeStream``).
    """
    force = getattr(encoder, "force_key_frame", None)
    if force is None:
        return False
    force()
    return True


def tee() -> Any:
    """A picamera2 ``Output`` that hands every frame of one encoder to several outputs.

    picamera2's encoders check their outputs' class, and tell them about the
    stream only when they start; the tee is the one output the encoder knows,
    so outputs can come and go while it runs (a clip beside the live view,
    which needs nothing picamera2 has no API for). An output that comes later
    is told about the stream then, and gets frames from the next keyframe on,
    timed from it, as if the encoder had started for it.

    The encoder can also be replaced under the outputs (``held``): they stay
    started, are told about the new encoder's stream when it starts (with a
    keyframe: the start of an encode), and its timestamps, which begin at zero
    again, go on from the last ones plus the time the restart took.
    """
    from picamera2.outputs import Output

    class Tee(Output):
        def __init__(self):
            super().__init__()
            self._lock = threading.Lock()
            self._outputs: dict[int, list] = {}  # id -> [output, first timestamp or None]
            self._stream: tuple | None = None  # the encoder's _add_stream arguments
            self._held = False
            self._offset = 0  # added to the encoder's timestamps
            self._last: tuple[int, float] | None = None  # the last timestamp out, and when
            self._rebase = False  # the next frame is a new encoder's first

        @property
        def outputs(self) -> int:
            return len(self._outputs)

        def add(self, output: Any) -> None:
            with self._lock:
                if self.recording:
                    output.start()
                    if self._stream is not None:
                        output._add_stream(self._stream[0], self._stream[1], **self._stream[2])
                self._outputs[id(output)] = [output, None]

        def remove(self, output: Any) -> None:
            """Take ``output`` off (it stops); the encoder goes on for the others."""
            with self._lock:
                if self._outputs.pop(id(output), None) is not None and output.recording:
                    output.stop()

        @contextlib.contextmanager
        def held(self):
            """While in it, the encoder's stop() leaves the outputs started: the
            encoder is being replaced, and the next one that starts feeds them."""
            self._held = True
            try:
                yield
            finally:
                self._held = False

        def start(self) -> None:
            with self._lock:
                super().start()
                self._rebase = self._last is not None
                for output, _ in self._outputs.values():
                    if not output.recording:
                        output.start()

        def stop(self) -> None:
            with self._lock:
                super().stop()
                self._stream = None
                if not self._held:
                    for output, _ in self._outputs.values():
                        output.stop()

        def _add_stream(self, encoder_stream, codec_name, **kwargs) -> None:
            with self._lock:
                self._stream = (encoder_stream, codec_name, kwargs)
                for output, _ in self._outputs.values():
                    output._add_stream(encoder_stream, codec_name, **kwargs)

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            # Under the lock, so that an output taken off gets no frame after its stop().
            with self._lock:
                if timestamp is not None and not audio:
                    timestamp = self._retimed(timestamp)
                for entry in self._outputs.values():
                    output, first = entry
                    if first is None:
                        if not keyframe or audio:
                            continue
                        first = entry[1] = timestamp or 0
                    at = None if timestamp is None else timestamp - first
                    output.outputframe(frame, keyframe, at, packet, audio)

        def _retimed(self, timestamp: int) -> int:
            now = time.monotonic()
            if self._rebase:
                last, at = self._last
                self._offset = last + max(1, round((now - at) * 1e6)) - timestamp
                self._rebase = False
            timestamp += self._offset
            self._last = (timestamp, now)
            return timestamp

    return Tee()


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
