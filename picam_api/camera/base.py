"""The small interface every camera backend implements, and the values it trades."""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any

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

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
