"""The small interface every camera backend implements, and the values it trades."""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CameraUnavailable, Conflict

FORMATS = ("jpeg", "png")


@dataclass(frozen=True)
class ControlInfo:
    """One advertised control: its range and default, as libcamera reports them.

    ``minimum``/``maximum``/``default`` are numbers or booleans for scalar controls,
    and lists of numbers for array controls such as ScalerCrop.

    ``type`` and ``size`` are libcamera's: ``type`` is one of ``bool``, ``integer``,
    ``number``, ``rectangle`` (``[x, y, width, height]``), ``size``; ``size`` is None
    for a single value, the length of a fixed array (ColourGains: 2,
    ColourCorrectionMatrix: 9) or 0 for a list of any length (AfWindows). A
    backend that cannot tell leaves ``type`` None and the checks go by the default.
    """

    minimum: Any
    maximum: Any
    default: Any
    type: str | None = None
    size: int | None = None

    def to_dict(self) -> dict:
        out = {"min": self.minimum, "max": self.maximum, "default": self.default}
        if self.type is not None:
            out.update(type=self.type, array=self.size is not None,
                       length=self.size or None if self.size is not None else None)
        return out


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
    # When the frame was taken (UTC); the owner fills it in.
    taken_at: Any = None


@dataclass(frozen=True)
class LumaFrame:
    """A small greyscale frame for motion detection.

    ``pixels`` is the Y (luma) plane as a numpy ``uint8`` array of shape
    (height, width), C-contiguous and owned by the caller (the backend keeps no
    reference to it); ``time`` is when it was exposed, epoch seconds; ``sequence``
    counts the backend's luma frames.
    """

    pixels: Any
    time: float
    sequence: int


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

    Motion detection reads ``luma_frame``: the Y plane of a small frame (on a
    Pi, a ``lores`` YUV420 stream configured beside main, which stays configured
    until ``stop_luma``). A backend without it answers with a ``Conflict`` that
    says what motion needs.
    Live H.264 (WebRTC, RTSP; ``picam_api.h264_live``) starts one encoder per
    live size with ``start_encoder``, so it needs: Annex B frames with SPS/PPS
    before every keyframe, no B-frames (packets in presentation order),
    constrained-baseline profile (what every WebRTC browser decodes), a
    keyframe every ``keyframe_interval`` frames, and several encoders running
    at once (a clip's, and one per live size), or, where the camera makes one
    encode at a time, ``follow``: the live view takes the running one.
    ``request_keyframe`` asks for the next frame to be one, so a new viewer
    need not wait a whole interval.

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

    def capture_timeout(self, settings: CaptureSettings, timeout: float) -> float:
        """How long a capture of ``settings`` may take, given the base ``timeout``.

        A long exposure needs longer (the picamera2 backend adds six frame times).
        """
        return timeout

    def stream_frame(self, settings: CaptureSettings, fps: float, timeout: float) -> Capture:
        """The next JPEG of a live stream at ``settings``' size, newer than the last one.

        ``fps`` is the rate frames will be asked for. The default takes a still
        with ``capture()``; a backend with a video pipeline (picamera2) hands out
        what its encoder made instead.
        """
        return self.capture(settings, timeout)

    def stop_stream(self, size: tuple[int, int]) -> None:
        """No more stream frames of ``size`` will be asked for; the default has nothing to stop."""

    def start_encoder(self, settings: VideoSettings, output: Any, follow: bool = False) -> Any:
        """Start encoding H.264 at ``settings`` into ``output``; return a handle for
        ``stop_encoder``. Stills (``capture``) keep working while it runs.

        ``follow`` (live view) takes what a camera that runs one encode at a time
        (a Pi) makes: the running encoder's frames, of whatever size and rate,
        and the next recording's when a clip of other settings restarts it under
        ``output`` (which stays started: the new encode begins with a keyframe and
        announces its stream with ``_add_stream``). Without it (clips, the
        pre-roll) the encode is exactly ``settings``, or ``CameraBusy``. A backend
        that runs any number of encoders (the mock) ignores it."""
        raise CameraUnavailable(f"the {self.name or 'configured'} camera backend cannot record video")

    def stop_encoder(self, encoder: Any) -> None:
        """Stop ``encoder``: its output gets the last frames, then ``stop()``."""

    def request_keyframe(self, encoder: Any) -> bool:
        """Make the next frame of ``encoder`` a keyframe (IDR) if the encoder can, and say
        whether it will. Called from any thread, without the owner's lock: it must only
        set a flag. The default cannot (viewers then wait for the next regular keyframe)."""
        return False

    def live_h264_size(self, sizes: list[tuple[int, int]]) -> tuple[int, int]:
        """The live H.264 size when ``stream.h264.size`` is unset: the first of ``sizes``
        (``stream.sizes``) unless the camera has a better one. Called before ``open``."""
        return sizes[0]

    def circular_output(self, seconds: float, max_bytes: int) -> Any:
        """A ring of the last ``seconds`` of encoded frames (at most ``max_bytes``)."""
        from .outputs import CircularOutput
        return CircularOutput(seconds, max_bytes)

    def file_output(self, path: str) -> Any:
        """An output that writes an MP4 file at ``path`` (moov first); the recorder reads
        its ``frames``, ``duration_s`` (what the timestamps span) and ``error``."""
        from .outputs import Mp4Output
        return Mp4Output(path)

    def luma_frame(self, size: tuple[int, int], timeout: float) -> LumaFrame:
        """The next luma frame of ``size`` (width, height), newer than the last one
        returned; ``CaptureTimeout`` after ``timeout`` s. Stills, streams and clips
        keep working while luma frames are being read."""
        raise Conflict(f"motion needs small luma frames (the Y plane of a low-resolution "
                       f"YUV420 stream beside the main one), and the {self.name or 'configured'} "
                       f"camera backend does not provide them yet")

    def stop_luma(self) -> None:
        """No more luma frames will be asked for; a backend may drop the stream that fed them."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
