"""The small interface every camera backend implements, and the values it trades."""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CameraUnavailable

FORMATS = ("jpeg", "png")


@dataclass(frozen=True)
class ControlInfo:
    """One advertised control: its range and default, as libcamera reports them.

    ``minimum``/``maximum``/``default`` are numbers or booleans for scalar controls,
    and lists of numbers for array controls such as ScalerCrop.
    """

    minimum: Any
    maximum: Any
    default: Any

    def to_dict(self) -> dict:
        return {"min": self.minimum, "max": self.maximum, "default": self.default}


@dataclass(frozen=True)
class Capabilities:
    """What a camera can do: reported by an open backend."""

    model: str
    sensor_size: tuple[int, int]
    controls: dict[str, ControlInfo]
    formats: tuple[str, ...] = FORMATS
    # libcamera wants even frame sizes; the mock does not care.
    even_sizes: bool = False

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "sensor_size": {"width": self.sensor_size[0], "height": self.sensor_size[1]},
            "formats": list(self.formats),
            "even_sizes": self.even_sizes,
            "controls": {name: info.to_dict() for name, info in sorted(self.controls.items())},
        }


@dataclass(frozen=True)
class CaptureSettings:
    """Everything a still capture needs to know; already validated."""

    width: int
    height: int
    format: str = "jpeg"
    quality: int = 90
    hflip: bool = False
    vflip: bool = False
    controls: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VideoSettings:
    """One H.264 encode of the camera's video stream; already validated.

    ``bitrate`` is bits per second; a keyframe comes every ``keyframe_s`` seconds,
    which is also how finely a pre-roll can start (it starts at a keyframe).
    """

    width: int
    height: int
    fps: float
    bitrate: int
    keyframe_s: float = 1.0
    hflip: bool = False
    vflip: bool = False

    @property
    def keyframe_interval(self) -> int:
        """Frames from one keyframe to the next (picamera2's ``iperiod``)."""
        return max(1, round(self.fps * self.keyframe_s))


@dataclass(frozen=True)
class Capture:
    """An encoded image and what the camera said about it."""

    data: bytes
    width: int
    height: int
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)


class CameraBackend(abc.ABC):
    """A camera. The owner serialises all calls; backends need not be thread-safe.

    ``open``, ``close`` and ``capture`` are required. Live view adds two optional
    methods, ``stream_frame`` and ``stop_stream``, whose defaults stream stills.

    Video is the encoder pipeline: ``start_encoder`` starts ONE H.264 encoder on
    the camera's video stream that hands every encoded frame to an *output*, and
    ``stop_encoder`` ends it. Outputs speak picamera2's ``Output`` protocol
    (``start()``, ``stop()``, ``_add_stream(stream, codec, **kwargs)`` and
    ``outputframe(frame, keyframe, timestamp_us, packet, audio)``), so the
    picamera2 backend passes them straight to its ``H264Encoder``. The backend
    also makes the two outputs recording needs: ``circular_output`` (the
    pre-roll ring, picamera2's ``CircularOutput2`` on a Pi) and ``file_output``
    (an MP4 file, picamera2's ``PyavOutput``); the defaults are the same
    classes in ``picam_api.camera.outputs``. A fan-out output (live H.264 to
    several clients) is one more output on the same encoder.

    Backends raise only the ``CameraError`` family from ``picam_api.errors``,
    mapping their library's exceptions at this boundary.
    """

    name: str = ""

    @abc.abstractmethod
    def open(self) -> Capabilities:
        """Acquire the camera and return what it can do."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the camera. Idempotent."""

    @abc.abstractmethod
    def capture(self, settings: CaptureSettings, timeout: float) -> Capture:
        """Take one still; give up with ``CaptureTimeout`` after ``timeout`` seconds."""

    def stream_frame(self, settings: CaptureSettings, fps: float, timeout: float) -> Capture:
        """The next JPEG of a live stream at ``settings``' size, newer than the last one.

        ``fps`` is the rate frames will be asked for. The default takes a still
        with ``capture()``; a backend with a video pipeline (picamera2) hands out
        what its encoder made instead.
        """
        return self.capture(settings, timeout)

    def stop_stream(self, size: tuple[int, int]) -> None:
        """No more stream frames of ``size`` will be asked for; the default has nothing to stop."""

    def start_encoder(self, settings: VideoSettings, output: Any) -> Any:
        """Start encoding H.264 at ``settings`` into ``output``; return a handle for
        ``stop_encoder``. Stills (``capture``) keep working while it runs."""
        raise CameraUnavailable(f"the {self.name or 'configured'} camera backend cannot record video")

    def stop_encoder(self, encoder: Any) -> None:
        """Stop ``encoder``: its output gets the last frames, then ``stop()``."""

    def circular_output(self, seconds: float, max_bytes: int) -> Any:
        """A ring of the last ``seconds`` of encoded frames (at most ``max_bytes``)."""
        from .outputs import CircularOutput
        return CircularOutput(seconds, max_bytes)

    def file_output(self, path: str) -> Any:
        """An output that writes an MP4 file at ``path`` (moov first); the recorder reads
        its ``frames``, ``duration_s`` (what the timestamps span) and ``error``."""
        from .outputs import Mp4Output
        return Mp4Output(path)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
