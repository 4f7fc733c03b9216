"""The real camera: a Raspberry Pi camera driven through picamera2.

``open()`` acquires the camera, configures one still configuration at the full
sensor size (two buffers) and starts it, so every capture is just "take the next
frame from a running camera". ``capture()`` then:

* switches mode (stop, configure, start) only when hflip/vflip change: the Pi
  applies flips in the sensor/ISP set-up, which can only change while the
  camera is stopped. The switch costs a few hundred milliseconds plus the
  frames the IPA hides after a mode switch, so it never happens for any other
  reason;
* sends controls only when they differ from the set already applied, and then
  asks for a frame whose exposure began after they were sent (``flush=True``);
  a control that was applied before and is now left out goes back to its
  default, so one request's tweak does not leak into the next;
* encodes a frame of the configured size straight from the camera buffer with
  picamera2's own encoder (``request.save`` into a ``BytesIO``, the fast JPEG
  path), and any other size by resizing with Pillow. The client chooses the
  aspect ratio; a different one stretches the full field of view.

While a live stream runs (``stream_frame``), the camera runs a video
configuration instead: a main stream at the sensor's aspect ratio that just
covers 1920x1080, and a lores stream at the stream size that an MJPEG encoder reads
(picamera2's mjpeg_server_2 pattern). The encoder is the hardware
``MJPEGEncoder`` on a Pi 4 and older (VC4) and simplejpeg's ``JpegEncoder`` on a
Pi 5 (PiSP), which has no JPEG hardware and where picamera2's ``MJPEGEncoder``
name is a slower libav software encoder. Meanwhile:

* a still that fits in the main stream is the next frame of the running
  camera, as above, and the stream goes on;
* a larger still (full resolution) needs a mode switch: it stops the encoder
  and the camera, takes the frame in the still configuration, and starts the
  stream again by itself, so the stream pauses for about a second;
* a stream of a second size is encoded in software from the main stream.

``stop_stream`` goes back to the still configuration.

``picamera2`` and the apt-only ``libcamera`` are imported inside the methods,
so this module imports on machines without them. Every library exception is
mapped to the ``CameraError`` family here; the owner reopens the camera after a
``CaptureTimeout`` or ``CameraUnavailable``.
"""
from __future__ import annotations

import io
import logging
import math
import threading
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from ..errors import CameraBusy, CameraUnavailable, CaptureFailed, CaptureTimeout
from .base import CameraBackend, Capabilities, Capture, CaptureSettings, ControlInfo

log = logging.getLogger(__name__)

# picamera2 keeps one finished frame queued when there is more than one buffer,
# so a capture usually returns at once; two buffers of a full-size BGR888 frame
# are also as much as the smallest Pis can spare.
BUFFER_COUNT = 2
# PNG is lossless, so "quality" cannot apply; level 1 is picamera2's default and
# several times faster than zlib's default for almost the same size.
PNG_COMPRESS_LEVEL = 1
# Frame metadata worth returning; all are plain numbers in picamera2's dict.
METADATA_KEYS = ("ExposureTime", "AnalogueGain", "DigitalGain", "Lux", "ColourTemperature",
                 "SensorTimestamp", "FrameDuration", "LensPosition")
# The value that returns a control to automatic operation when a request drops
# it. 0 means "auto" for these (picamera2 turns it into ExposureTimeMode/
# AnalogueGainMode auto; the Pi IPA treats zero colour gains as auto white balance).
AUTO_VALUES: dict[str, Any] = {"ExposureTime": 0, "AnalogueGain": 0.0, "ColourGains": [0.0, 0.0]}
# Boolean controls that libcamera advertises without a default; True is what
# the camera does untouched (auto exposure, auto white balance).
BOOL_DEFAULTS = {"AeEnable": True, "AwbEnable": True}
BUSY_WORDS = ("busy", "acquire")
# Streaming: the video main stream, where stills come from while streaming, is the
# sensor's aspect ratio scaled down just enough to cover this (the default still).
VIDEO_MAIN_COVERS = (1920, 1080)
# A video pipeline needs spare buffers while the encoder holds one; each main
# buffer is several MB of the CMA memory small Pis are short of.
VIDEO_BUFFER_COUNT = 4
# The Pi 4's hardware JPEG encoder takes at most 1920 pixels a side.
HW_MJPEG_MAX_SIDE = 1920
# picamera2's Quality levels, and the JPEG quality its JpegEncoder gives each.
QUALITY_LEVELS = (("VERY_LOW", 25), ("LOW", 35), ("MEDIUM", 50), ("HIGH", 65), ("VERY_HIGH", 80))


class _FrameSink(io.BufferedIOBase):
    """Where the encoder's thread writes each JPEG; it keeps the newest only.

    Its Condition is its own, never the owner's lock: that lock is held around
    ``stop_encoder()``, which waits for the encoder's thread, and a lock that
    ``write()`` also takes would deadlock (picamera2#858).
    """

    def __init__(self):
        super().__init__()
        self._changed = threading.Condition()
        self._frame = b""
        self._seq = 0
        self._taken = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        with self._changed:
            self._frame = bytes(data)
            self._seq += 1
            self._changed.notify_all()
        return len(data)

    def next_frame(self, timeout: float) -> bytes | None:
        """A frame newer than the one returned last, or None after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._seq > self._taken, timeout):
                return None
            self._taken = self._seq
            return self._frame


@dataclass
class _Stream:
    """The live stream the video configuration runs for."""

    size: tuple[int, int]
    fps: float
    quality: int
    sink: _FrameSink = field(default_factory=_FrameSink)


class Picamera2Camera(CameraBackend):
    """A libcamera camera through picamera2, started once and kept running."""

    name = "picamera2"

    def __init__(self, camera_config: dict):
        self.camera_num = int(camera_config.get("camera_num", 0))
        self._picam2 = None
        self._lib = None  # the picamera2 module, once imported
        self._caps: Capabilities | None = None
        self._full_size: tuple[int, int] = (0, 0)  # the still configuration's main stream
        self._main_size: tuple[int, int] = (0, 0)  # the running configuration's main stream
        self._flips: tuple[bool, bool] = (False, False)
        self._controls: dict[str, Any] = {}  # the set last sent to the camera
        self._stream: _Stream | None = None  # set while the video configuration runs
        self._encoder = None  # the running MJPEG encoder
        self._hw_mjpeg: bool | None = None  # decided at the first stream

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> Capabilities:
        if self._picam2 is not None:  # a reopen starts from a clean camera
            self.close()
        lib = self._import()
        Picamera2 = lib.Picamera2
        try:
            cameras = Picamera2.global_camera_info()
        except Exception as exc:
            raise CameraUnavailable(f"libcamera could not list cameras: {exc}") from exc
        if not cameras:
            raise CameraUnavailable("no camera attached: libcamera lists none (check the ribbon "
                                    "cable and `rpicam-hello --list-cameras`)")
        try:
            picam2 = Picamera2(self.camera_num)
        except IndexError as exc:
            raise CameraUnavailable(f"no camera number {self.camera_num}: libcamera lists "
                                    f"{len(cameras)} camera(s) (camera.camera_num)") from exc
        except RuntimeError as exc:
            raise _open_error(exc, self.camera_num) from exc
        self._picam2 = picam2
        self._flips, self._controls, self._stream = (False, False), {}, None
        try:
            props = picam2.camera_properties
            sensor = (int(props["PixelArraySize"][0]), int(props["PixelArraySize"][1]))
            # libcamera wants even sizes; every Pi sensor is, but be sure.
            self._full_size = (sensor[0] - sensor[0] % 2, sensor[1] - sensor[1] % 2)
            self._configure_and_start(False, False, {})
            # Read after configure: ranges such as ExposureTime depend on the mode.
            controls = {name: _control_info(name, info)
                        for name, info in picam2.camera_controls.items()}
            self._caps = Capabilities(model=str(props.get("Model", "unknown")), sensor_size=sensor,
                                      controls=controls, even_sizes=True)
        except Exception as exc:
            try:
                self.close()
            except CameraUnavailable:  # report why it did not start, not the cleanup
                log.warning("closing the camera after a failed start failed", exc_info=True)
            raise CameraUnavailable(f"camera {self.camera_num} opened but did not start: {exc}") from exc
        log.info("picamera2 camera %d started: %s, main stream %dx%d", self.camera_num,
                 self._caps.model, *self._main_size)
        return self._caps

    def close(self) -> None:
        if self._picam2 is None:
            return
        try:
            self._stop()
        except Exception:  # a wedged camera may fail to stop; closing still releases it
            log.warning("picamera2 stop() failed while closing", exc_info=True)
        picam2, self._picam2, self._stream = self._picam2, None, None
        try:
            picam2.close()
        except Exception as exc:
            raise CameraUnavailable(f"the camera did not close cleanly: {exc}") from exc

    # -- capture -------------------------------------------------------------

    def capture(self, settings: CaptureSettings, timeout: float) -> Capture:
        self._require_open()
        stream = self._stream
        if stream is not None and not (settings.width <= self._main_size[0]
                                       and settings.height <= self._main_size[1]):
            # Larger than the running main stream: pause the stream for a frame
            # of the still configuration, then start it again.
            self._switch(None)
            try:
                return self._take(settings, timeout)
            finally:
                self._switch(stream)
        return self._take(settings, timeout)

    def stream_frame(self, settings: CaptureSettings, fps: float, timeout: float) -> Capture:
        self._require_open()
        size = (settings.width, settings.height)
        if self._stream is not None and self._stream.size != size:
            # The encoder makes one size; a second one is a still from the main stream.
            return self.capture(settings, timeout)
        if self._stream is None:
            self._switch(_Stream(size, fps, settings.quality))
        elif self._stream.fps != fps:
            try:
                self._picam2.set_controls({"FrameRate": fps})
            except Exception as exc:
                raise CaptureFailed(f"the camera refused {fps:g} frames per second: {exc}") from exc
            self._stream.fps = fps
        self._apply(settings)  # new flips restart the stream with them
        data = self._stream.sink.next_frame(timeout)
        if data is None:
            raise CaptureTimeout(f"no frame from the MJPEG encoder within {timeout:g} s")
        return Capture(data, size[0], size[1], "jpeg")

    def stop_stream(self, size: tuple[int, int]) -> None:
        if self._picam2 is not None and self._stream is not None and self._stream.size == size:
            self._switch(None)

    def _take(self, settings: CaptureSettings, timeout: float) -> Capture:
        """The next frame of the running configuration, encoded for ``settings``."""
        picam2 = self._picam2
        fresh = self._apply(settings)
        if settings.format == "png":
            picam2.options["compress_level"] = PNG_COMPRESS_LEVEL
        else:
            picam2.options["quality"] = settings.quality
        try:
            request = picam2.capture_request(wait=timeout, flush=True if fresh else None)
        except self._timeout_errors() as exc:
            self._cancel_jobs()
            raise CaptureTimeout(f"no frame from the camera within {timeout:g} s") from exc
        except Exception as exc:
            raise CaptureFailed(f"the camera did not deliver a frame: {exc}") from exc
        try:
            metadata = _metadata(request.get_metadata())
            data = self._encode(request, settings)
        except Exception as exc:
            log.warning("encoding a frame failed", exc_info=True)
            raise CaptureFailed(f"the frame could not be encoded: {exc}") from exc
        finally:
            request.release()  # the buffer goes back to the camera whatever happened
        return Capture(data, settings.width, settings.height, settings.format, metadata)

    def _apply(self, settings: CaptureSettings) -> bool:
        """Bring flips and controls in line with ``settings``; True if a fresh frame is needed."""
        controls = self._coerced(settings.controls)
        flips = (bool(settings.hflip), bool(settings.vflip))
        if flips != self._flips:
            # Mode switch: flips live in the configuration, which only changes
            # while stopped. The new configuration carries the controls, so they
            # are applied from the first frame after the restart.
            try:
                self._stop()
                self._configure_and_start(*flips, self._with_resets(controls))
            except Exception as exc:
                # Half-reconfigured is not a state to capture from: let the owner reopen.
                raise CameraUnavailable(f"switching the camera to the new flips failed: {exc}") from exc
            self._controls = controls
            return False  # every frame after a restart is new
        if controls != self._controls:
            try:
                self._picam2.set_controls(self._with_resets(controls))
            except Exception as exc:
                raise CaptureFailed(f"the camera refused the controls: {exc}") from exc
            self._controls = controls
            return True
        return False

    def _configure_and_start(self, hflip: bool, vflip: bool, controls: dict) -> None:
        """Configure for stills, or for ``self._stream`` when set, and start."""
        from libcamera import Transform

        picam2 = self._picam2
        transform = Transform(hflip=hflip, vflip=vflip)
        stream = self._stream
        if stream is None:
            config = picam2.create_still_configuration(
                main={"size": self._full_size}, buffer_count=BUFFER_COUNT,
                transform=transform, controls=dict(controls))
        else:
            # BGR888 like the still configuration, so stills encode the same way;
            # YUV420 is what the hardware encoder takes from lores.
            config = picam2.create_video_configuration(
                main={"size": self._video_main_size(stream.size), "format": "BGR888"},
                lores={"size": stream.size, "format": "YUV420"},
                buffer_count=VIDEO_BUFFER_COUNT, transform=transform,
                controls={"FrameRate": stream.fps, **controls})
        picam2.configure(config)
        if stream is not None:
            self._start_encoder(stream)  # before start(), as picamera2's start_recording() does
        # show_preview=False runs picamera2's NullPreview event loop, which is
        # what completes capture jobs; None would start no loop and every
        # capture would wait until its timeout.
        picam2.start(show_preview=False)
        self._flips = (hflip, vflip)
        # libcamera may adjust the size it was asked for; encode against what it chose.
        size = picam2.camera_configuration()["main"]["size"]
        self._main_size = (int(size[0]), int(size[1]))

    def _stop(self) -> None:
        """Stop the camera, then the encoder, as picamera2's stop_recording() does."""
        encoder, self._encoder = self._encoder, None
        try:
            self._picam2.stop()
        finally:
            if encoder is not None:
                self._picam2.stop_encoder(encoder)

    def _switch(self, stream: _Stream | None) -> None:
        """Restart in the still configuration (None) or streaming ``stream``."""
        try:
            self._stop()
            self._stream = stream
            self._configure_and_start(*self._flips, self._controls)
        except Exception as exc:
            # Half-reconfigured is not a state to capture from: let the owner reopen.
            mode = "streaming" if stream else "stills"
            raise CameraUnavailable(f"switching the camera to {mode} failed: {exc}") from exc

    def _video_main_size(self, stream_size: tuple[int, int]) -> tuple[int, int]:
        full_w, full_h = self._full_size
        scale = min(1.0, max(VIDEO_MAIN_COVERS[0] / full_w, VIDEO_MAIN_COVERS[1] / full_h))
        # lores may not be larger than main.
        return (max(round(full_w * scale) // 2 * 2, stream_size[0]),
                max(round(full_h * scale) // 2 * 2, stream_size[1]))

    def _start_encoder(self, stream: _Stream) -> None:
        """Hardware MJPEG where there is one, else simplejpeg's JpegEncoder.

        picamera2's platform probe tells a Pi 4 or older (VC4) from a Pi 5; it
        answers VC4 when it cannot tell, so a hardware encoder that fails to
        start falls back to software, for good.
        """
        from picamera2.encoders import JpegEncoder, Quality
        from picamera2.outputs import FileOutput

        if self._hw_mjpeg is None:
            from picamera2.platform import Platform, get_platform
            self._hw_mjpeg = get_platform() == Platform.VC4
        if self._hw_mjpeg and max(stream.size) <= HW_MJPEG_MAX_SIDE:
            try:
                from picamera2.encoders.mjpeg_encoder import MJPEGEncoder
                encoder = MJPEGEncoder()
                self._picam2.start_encoder(encoder, FileOutput(stream.sink), name="lores",
                                           quality=_quality_level(Quality, stream.quality))
                self._encoder = encoder
                return
            except Exception:
                log.warning("the hardware MJPEG encoder did not start; streaming with the "
                            "software JpegEncoder instead", exc_info=True)
                self._hw_mjpeg = False
        encoder = JpegEncoder(q=stream.quality)
        self._picam2.start_encoder(encoder, FileOutput(stream.sink), name="lores")
        self._encoder = encoder

    def _with_resets(self, controls: dict) -> dict:
        """``controls`` plus default values for the controls applied before and now dropped."""
        resets = {}
        for name in self._controls.keys() - controls.keys():
            value = self._default_of(name)
            if value is None:
                log.warning("control %s cannot be reset: the camera advertises no default", name)
            else:
                resets[name] = value
        return {**resets, **controls}

    def _default_of(self, name: str) -> Any:
        if name in AUTO_VALUES:
            return AUTO_VALUES[name]
        info = self._caps.controls.get(name) if self._caps else None
        return None if info is None else info.default

    def _coerced(self, controls: dict) -> dict:
        """Turn JSON numbers into the types libcamera's binding insists on.

        JSON has one number type; pybind11 refuses a float for an integer control
        (ExposureTime, ScalerCrop), so whole-number floats become ints there.
        """
        caps = self._caps.controls if self._caps else {}
        out = {}
        for name, value in controls.items():
            info = caps.get(name)
            template = None if info is None else next(
                (v for v in (info.default, info.minimum, info.maximum) if v is not None), None)
            out[name] = _coerce(template, value)
        return out

    def _encode(self, request, settings: CaptureSettings) -> bytes:
        buffer = io.BytesIO()
        if (settings.width, settings.height) == self._main_size:
            # picamera2 encodes straight from the camera buffer. It needs a real
            # BytesIO (it type-checks for one) and an explicit format.
            request.save("main", buffer, format=settings.format)
            return buffer.getvalue()
        from PIL import Image

        image = request.make_image("main")
        # reducing_gap shrinks by whole factors first: a big downscale of a
        # 12 MP frame then takes a fraction of a plain LANCZOS pass.
        image = image.resize((settings.width, settings.height), Image.Resampling.LANCZOS,
                             reducing_gap=3.0)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        if settings.format == "png":
            image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
        else:
            image.save(buffer, "JPEG", quality=settings.quality)
        return buffer.getvalue()

    # -- library plumbing ----------------------------------------------------

    def _require_open(self) -> None:
        if self._picam2 is None:
            raise CameraUnavailable("the camera is not open")

    def _import(self):
        if self._lib is None:
            try:
                import picamera2
            except Exception as exc:  # ImportError, or libcamera failing inside it
                raise CameraUnavailable(
                    f"picamera2 cannot be imported ({exc}); install python3-picamera2 with apt "
                    "and create the venv with --system-site-packages") from exc
            self._lib = picamera2
        return self._lib

    def _timeout_errors(self) -> tuple[type[BaseException], ...]:
        # picamera2.TimeoutError is concurrent.futures.TimeoutError, which is
        # the builtin TimeoutError since Python 3.11; keep both to be sure.
        return (TimeoutError, getattr(self._lib, "TimeoutError", TimeoutError))

    def _cancel_jobs(self) -> None:
        """Drop the timed-out job so it cannot complete later and leak a request."""
        cancel = getattr(self._picam2, "cancel_all_and_flush", None)
        if cancel is None:
            return
        try:
            cancel()
        except Exception:
            log.warning("cancel_all_and_flush() failed after a capture timeout", exc_info=True)


def _open_error(exc: RuntimeError, camera_num: int) -> Exception:
    """Classify a failed ``Picamera2()``: busy camera, or any other failure."""
    # picamera2 wraps the real cause ("Failed to acquire camera: Device or
    # resource busy") in "Camera __init__ sequence did not complete.", so read
    # the whole chain.
    messages, seen, cur = [], set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        messages.append(str(cur))
        cur = cur.__cause__ or cur.__context__
    text = ": ".join(m for m in messages if m)
    if any(word in text.lower() for word in BUSY_WORDS):
        return CameraBusy(f"camera {camera_num} is held by another process (an rpicam-* command, "
                          f"another picamera2 program or a second server/worker); stop it and "
                          f"retry ({text})")
    return CameraUnavailable(f"camera {camera_num} did not open: {text}")


def _control_info(name: str, info: Any) -> ControlInfo:
    """Build a ControlInfo from picamera2's ``(min, max, default)``, filling gaps.

    libcamera leaves some Pi controls without a default; the settings check uses
    the default's type, so give booleans and the two-element arrays advertised
    with scalar limits a default of the right shape.
    """
    minimum, maximum, default = (_jsonable(v) for v in info)
    if default is None:
        if isinstance(minimum, bool):
            default = BOOL_DEFAULTS.get(name, False)
        elif name == "ColourGains":
            default = list(AUTO_VALUES["ColourGains"])
        elif name == "FrameDurationLimits" and _is_number(minimum) and _is_number(maximum):
            default = [minimum, maximum]
    return ControlInfo(minimum, maximum, default)


def _quality_level(levels, quality: int):
    """The picamera2 ``Quality`` level nearest to JPEG ``quality``."""
    return levels[min(QUALITY_LEVELS, key=lambda level: abs(level[1] - quality))[0]]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _coerce(template: Any, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        items = template if isinstance(template, list) and template else [template]
        return [_coerce(items[min(i, len(items) - 1)], v) for i, v in enumerate(value)]
    if (isinstance(template, int) and not isinstance(template, bool)
            and isinstance(value, float) and value.is_integer()):
        return int(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _metadata(raw: dict) -> dict:
    """Keep the scalar, JSON-safe fields worth reporting."""
    out = {}
    for key in METADATA_KEYS:
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value
    return out
