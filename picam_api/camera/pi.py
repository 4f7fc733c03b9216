"""The real camera: a Raspberry Pi camera driven through picamera2.

``open()`` acquires the camera, configures one still configuration at the full
sensor size (one buffer: a 12 MP frame is 34 MiB of CMA) and starts it, so every
capture is just "take the next frame from a running camera". Buffers come from
picamera2's ``PersistentAllocator`` with one ``use_case`` per geometry, so
switching between stills and streaming reuses them instead of freeing and
reallocating contiguous memory on every switch (which fragments CMA until
``ENOMEM`` on a Pi Zero 2 W, picamera2#1130). ``capture()`` then:

* switches mode (stop, configure, start) only when hflip/vflip change: the Pi
  applies flips in the sensor/ISP set-up, which can only change while the
  camera is stopped. The switch costs a few hundred milliseconds plus the
  frames the IPA hides after a mode switch, so it never happens for any other
  reason;
* sends controls only when they differ from the set already applied, and then
  asks for a frame whose exposure began after they were sent (``flush=True``);
  libcamera applies exposure and gain a couple of frames late, so frames are
  dropped (and the controls resent) until the frame's own metadata shows them;
  a control that was applied before and is now left out goes back to its
  default, so one request's tweak does not leak into the next;
* waits for focus on a Camera Module 3: continuous autofocus runs by default
  wherever AfMode is advertised, and a still waits (at most ``AF_WAIT_S``) for
  the frame that says Focused; ``AfMode: 0`` with ``LensPosition`` focuses by
  hand, ``AfMode: 1`` with ``AfTrigger: 0`` runs one scan for the still;
* encodes a frame of the configured size straight from the camera buffer with
  picamera2's own encoder (``request.save`` into a ``BytesIO``, the fast JPEG
  path), and any other size with Pillow: a size of another aspect ratio is cut
  from the centre of the frame first (a crop after capture), never squashed.
* waits as long as the exposures involved need: the capture timeout grows by
  six frame times of the longer of the exposure asked for and the one applied
  (``capture_timeout``).

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
  stream again by itself, so the stream pauses for about a second; when the
  still's buffers do not fit beside the stream's, it is refused
  (``InsufficientCameraMemory``, 503) and the stream goes on;
* a stream of a second size is encoded in software from the main stream.

``stop_stream`` goes back to the still configuration.

Video (``start_encoder``, and the pre-roll ring that keeps it running) is
picamera2's H.264 encoder on the main stream of a video configuration at the
recording's size and rate (``pi_video``: the V4L2 codec on VC4, libx264 on a
Pi 5; picamera2's ``PyavOutput`` and ``CircularOutput2``). A Pi has one main
stream, so while it records:

* a still up to the recording's size (with its flips, and an exposure its frame
  rate allows) is the next frame of main, as above;
* a live stream that ran before keeps its hardware MJPEG on lores when it is no
  larger than the recording; any other stream is encoded from main in software;
* anything that needs another configuration (a larger still, other flips) is
  refused with 503 (``CameraBusy``) saying why: it would cut the recording;
* the one H.264 encoder's output is a tee that every ``start_encoder`` claim
  hangs from. Live view (``follow``) takes whatever it makes; a clip of the
  same size, rate and flips shares it; a clip of others while only live view
  runs restarts it at the clip's settings under the live outputs (``_record``),
  and once no clip is left it goes back to the first live claim's settings; a
  clip of others beside a clip or the pre-roll is refused (``CameraBusy``).

``stop_encoder`` of the last claim goes back to the configuration from before.

Motion detection (``luma_frame``) reads the Y plane of a YUV420 ``lores`` stream
at the motion size, which every configuration carries beside main from the
first luma frame until ``stop_luma`` (the still configuration restarts to add
it and to drop it); while streaming, the stream's own lores serves, scaled. A
recording that runs without one is not restarted for it: motion then reads
every n-th pixel of main until the recording ends.

``picamera2`` and the apt-only ``libcamera`` are imported inside the methods,
so this module imports on machines without them. Every library exception is
mapped to the ``CameraError`` family here, with what to do (``pi_faults``); the
owner reopens the camera after a ``CaptureTimeout`` or ``CameraUnavailable``.
Controls and frame metadata in picam-api's terms are ``pi_controls``.
"""
from __future__ import annotations

import io
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (CameraBusy, CameraError, CameraUnavailable, CaptureFailed, CaptureTimeout,
                      InsufficientCameraMemory)
from . import pi_video
from .base import CameraBackend, Capabilities, Capture, CaptureSettings, LumaFrame, VideoSettings
from .pi_controls import AUTO_VALUES, coerce, control_info, frame_metadata, frame_time_us, unapplied
from .pi_faults import (CMA_FIX, FRAMES_FIX, INSTALL_FIX, NO_CAMERA_FIX, UPGRADE_FIX,
                        drop_failed_allocation, failure, is_enomem, open_error)

log = logging.getLogger(__name__)

# One buffer, picamera2's own default for stills: a full-size BGR888 frame plus
# its raw frame is ~48 MiB of contiguous CMA on a Camera Module 3.
BUFFER_COUNT = 1
# The oldest picamera2 picam-api runs on. Numeric capture timeouts came in 0.3.20
# (pi-audit F7); a JpegEncoder that encodes YUV420, which every Pi 5 stream and a
# Pi 4's software fallback need, and ExposureTimeMode for libcamera 0.5 came in
# 0.3.26; 0.3.27 is the oldest of those on PyPI, which the tests run.
OLDEST_PICAMERA2 = (0, 3, 27)
# Frame times a capture may take after new controls (``capture_timeout``).
FRAMES_PER_CAPTURE = 6
# How long a still waits for continuous or triggered autofocus to report Focused.
AF_WAIT_S = 3.0
# Controls picamera2 manages itself: it derives the modes from ExposureTime and
# AnalogueGain and sets ScalerCrops at every configure, so a client's value would fight it.
MANAGED_CONTROLS = {"ExposureTimeMode", "AnalogueGainMode", "ScalerCrops"}
# One-shot controls: sent with the capture that names them, never kept or reset.
ONE_SHOT_CONTROLS = {"AfTrigger"}
# PNG is lossless, so "quality" cannot apply; level 1 is picamera2's default and
# several times faster than zlib's default for almost the same size.
PNG_COMPRESS_LEVEL = 1
# Streaming: the video main stream, where stills come from while streaming, is the
# sensor's aspect ratio scaled down just enough to cover this (the default still).
VIDEO_MAIN_COVERS = (1920, 1080)
# A video pipeline needs spare buffers while the encoder holds one; each main
# buffer is several MB of the CMA memory small Pis are short of.
VIDEO_BUFFER_COUNT = 4
# Live H.264's default size on a Pi 5, which encodes it in software (live_h264_size).
PISP_LIVE_SIZE = (1280, 720)
# The Pi 4's hardware JPEG encoder takes at most 1920 pixels a side.
HW_MJPEG_MAX_SIDE = 1920
# A luma frame's SensorTimestamp older than this is not trusted as its exposure time.
LUMA_MAX_AGE_S = 2.0
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
class _Recording:
    """The H.264 encoder the camera runs for: its settings, picamera2 encoder, the
    ``pi_video.tee`` that every claim's output hangs from, and the claims, oldest first."""

    settings: VideoSettings
    tee: Any
    encoder: Any = None
    claims: list[_Claim] = field(default_factory=list)

    def wanted(self) -> VideoSettings:
        """What it should run at: its strict claims' settings (they make the same
        encode), else its first follow claim's."""
        strict = [claim for claim in self.claims if not claim.follow]
        return (strict or self.claims)[0].settings


@dataclass(eq=False)
class _Claim:
    """What ``start_encoder`` returns: one output on the running recording, and what
    it asked for (``follow``: whatever the recording makes)."""

    recording: _Recording
    output: Any
    settings: VideoSettings
    follow: bool = False

    @property
    def encoder(self) -> Any:
        return self.recording.encoder


def _encode(settings: VideoSettings) -> tuple:
    """What one encode makes: its bitrate and keyframe spacing are the first claim's."""
    return settings.width, settings.height, settings.fps, settings.hflip, settings.vflip


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
        self._base: dict[str, Any] = {}  # what every capture starts from (continuous AF)
        self._stream: _Stream | None = None  # set while the video configuration runs
        self._encoder = None  # the running MJPEG encoder
        self._hw_mjpeg: bool | None = None  # decided at the first stream
        self._buffer_bytes: dict[str, int] = {}  # the frame buffers of each geometry (use_case)
        self._recording: _Recording | None = None  # set while the H.264 encoder runs
        self._luma: tuple[int, int] | None = None  # the lores size motion reads, while it does
        self._luma_stamp = 0  # the SensorTimestamp of the last luma frame returned
        self._luma_frames = 0

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
            raise failure(CameraUnavailable, "no camera attached: libcamera lists none",
                          NO_CAMERA_FIX)
        if self.camera_num >= len(cameras):
            raise failure(CameraUnavailable, f"no camera number {self.camera_num}: libcamera "
                          f"lists {len(cameras)} camera(s)", "set camera.camera_num to one of them")
        try:
            from picamera2.allocators import PersistentAllocator

            # Constructed here, not by Picamera2(), so that a /dev/dma_heap this
            # user cannot open is an open error like any other (pi-audit F8).
            # A PersistentAllocator whose heap fails to open would raise again
            # from its __del__ (no buffer_dict yet): give it one first.
            allocator = PersistentAllocator.__new__(PersistentAllocator)
            allocator.buffer_dict = {}
            allocator.__init__()
            picam2 = Picamera2(self.camera_num, allocator=allocator)
        except Exception as exc:
            raise open_error(exc, self.camera_num) from exc
        self._picam2 = picam2
        self._flips, self._controls, self._stream = (False, False), {}, None
        self._recording = None
        try:
            props = picam2.camera_properties
            sensor = (int(props["PixelArraySize"][0]), int(props["PixelArraySize"][1]))
            # libcamera wants even sizes; every Pi sensor is, but be sure.
            self._full_size = (sensor[0] - sensor[0] % 2, sensor[1] - sensor[1] % 2)
            # Continuous autofocus where there is autofocus (a Camera Module 3):
            # libcamera starts it in manual with the lens at about 1 m (pi-audit F10).
            self._base = {"AfMode": 2} if "AfMode" in picam2.camera_controls else {}
            self._configure_and_start(False, False, dict(self._base))
            self._controls = dict(self._base)
            # Read after configure: ranges such as ExposureTime depend on the mode.
            controls = {name: control_info(name, info, picam2.camera_ctrl_info[name][0])
                        for name, info in picam2.camera_controls.items()
                        if name not in MANAGED_CONTROLS}
            self._caps = Capabilities(model=str(props.get("Model", "unknown")), sensor_size=sensor,
                                      controls=controls, even_sizes=True)
        except Exception as exc:
            try:
                self.close()
            except CameraUnavailable:  # report why it did not start, not the cleanup
                log.warning("closing the camera after a failed start failed", exc_info=True)
            if is_enomem(exc):
                raise failure(CameraUnavailable, f"camera {self.camera_num} opened but there is "
                              f"not enough contiguous (CMA) memory for a "
                              f"{self._full_size[0]}x{self._full_size[1]} still: {exc}",
                              CMA_FIX) from exc
            raise CameraUnavailable(f"camera {self.camera_num} opened but did not start: {exc}") from exc
        log.info("picamera2 camera %d started: %s, main stream %dx%d", self.camera_num,
                 self._caps.model, *self._main_size)
        return self._caps

    def close(self) -> None:
        if self._picam2 is None:
            return
        picam2, self._picam2, self._stream = self._picam2, None, None
        encoder, self._encoder = self._encoder, None
        recording, self._recording = self._recording, None
        try:
            # Picamera2.close() stops its event-loop thread first and then the
            # camera directly, so it returns even when that thread has died
            # (stop() would wait forever for the dead loop, pi-audit F1).
            picam2.close()
        except Exception as exc:
            raise CameraUnavailable(f"the camera did not close cleanly: {exc}") from exc
        finally:
            if encoder is not None:
                _stop_encoder(picam2, encoder)
            if recording is not None and recording.encoder is not None:
                _stop_encoder(picam2, recording.encoder)

    # -- what picam-api selftest reports ----------------------------------------

    def versions(self) -> dict[str, str]:
        """picamera2's and libcamera's versions; CameraUnavailable (with the fix) when
        picamera2 cannot be imported or is too old."""
        lib = self._import()
        import libcamera

        version = _picamera2_version(lib)
        return {"picamera2": ".".join(map(str, version)) if version else "unknown",
                "libcamera": str(libcamera.CameraManager.singleton().version)}

    def cameras(self) -> list[dict]:
        """The cameras libcamera lists: Model, Location, Rotation, Id, Num."""
        try:
            return list(self._import().Picamera2.global_camera_info())
        except CameraError:
            raise
        except Exception as exc:
            raise CameraUnavailable(f"libcamera could not list cameras: {exc}") from exc

    def diagnostics(self) -> dict:
        """The bytes of frame buffers each configuration took so far (``buffers``, by
        use case) and, while open, the board's ISP (``platform``: ``vc4`` or
        ``pisp``) and the sensor's modes (``[width, height, bit depth]``)."""
        if self._picam2 is None:
            return {"buffers": dict(self._buffer_bytes)}
        from libcamera import StreamRole
        from picamera2.platform import Platform, get_platform

        formats = self._picam2.camera.generate_configuration([StreamRole.Raw]).at(0).formats
        modes = {(size.width, size.height, int(str(fmt).split("_")[0][5:]))
                 for fmt in formats.pixel_formats for size in formats.sizes(fmt)}
        return {"platform": "pisp" if get_platform() == Platform.PISP else "vc4",
                "modes": [list(mode) for mode in sorted(modes)],
                "buffers": dict(self._buffer_bytes)}

    # -- capture -------------------------------------------------------------

    def capture_timeout(self, settings: CaptureSettings, timeout: float) -> float:
        """``timeout`` plus what the exposures involved need (pi-audit F4).

        New controls show in a returned frame at most six frame times after they
        are sent, with the still configuration's one buffer: the frame running
        now (the buffer waits for the next), the next one (the buffer comes back
        with the controls from before), one missed while it is requeued with the
        new ones, the one it then rides, the control delay's second frame
        (libcamera applies exposure and gain two frames after the request), and
        the new exposure's own. Five of those run at the exposure applied now
        and the last at the new one: six of the longer.
        """
        extra = FRAMES_PER_CAPTURE * max(frame_time_us(settings.controls),
                                         frame_time_us(self._controls)) / 1e6
        if self._focus_wait(settings):
            extra += AF_WAIT_S
        return timeout + extra

    def capture(self, settings: CaptureSettings, timeout: float) -> Capture:
        self._require_open()
        stream = self._stream
        if self._recording is not None:
            self._refuse_while_recording(settings)
            return self._take(settings, timeout)
        if stream is not None and not self._fits_stream(settings, stream):
            # Larger than the running main stream, or a longer exposure than its
            # frame rate allows: pause the stream for a frame of the still
            # configuration, then start it again.
            # The stream's buffers stay allocated: freeing them for one still
            # could leave too little contiguous memory to stream again.
            self._switch(None, make_room=False)
            try:
                return self._take(settings, timeout)
            finally:
                self._switch(stream)
        return self._take(settings, timeout)

    def _fits_stream(self, settings: CaptureSettings, stream: _Stream) -> bool:
        exposure = settings.controls.get("ExposureTime") or 0
        return (settings.width <= self._main_size[0] and settings.height <= self._main_size[1]
                and exposure <= 1e6 / stream.fps)

    def _refuse_while_recording(self, settings: CaptureSettings) -> None:
        """CameraBusy for a still that needs another configuration than the recording's."""
        video = self._recording.settings
        w, h = self._main_size
        exposure = settings.controls.get("ExposureTime") or 0
        if settings.width > w or settings.height > h:
            why = f"a {settings.width}x{settings.height} still is larger than its frames"
        elif (bool(settings.hflip), bool(settings.vflip)) != self._flips:
            why = "other flips need another camera configuration"
        elif exposure > 1e6 / video.fps:
            why = f"an exposure of {exposure} us is longer than its {video.fps:g} fps allow"
        else:
            return
        raise failure(CameraBusy, f"the camera is recording video at {w}x{h}: {why}",
                      f"take a still of at most {w}x{h} with the recording's flips, or wait "
                      f"for the recording to end")

    def stream_frame(self, settings: CaptureSettings, fps: float, timeout: float) -> Capture:
        self._require_open()
        size = (settings.width, settings.height)
        recording = self._recording is not None
        if self._stream is not None and self._stream.size != size or recording and (
                self._stream is None or (settings.hflip, settings.vflip) != self._flips):
            # The encoder makes one size; a second one is a still from the main
            # stream, as is any stream that starts while the camera records (or
            # is refused, with other flips).
            return self.capture(settings, timeout)
        if self._stream is None:
            self._switch(_Stream(size, fps, settings.quality))
        elif self._stream.fps != fps and not recording:  # the recording keeps its rate
            try:
                self._picam2.set_controls({"FrameRate": fps})
            except Exception as exc:
                raise CaptureFailed(f"the camera refused {fps:g} frames per second: {exc}") from exc
            self._stream.fps = fps
        self._apply(settings)  # new flips restart the stream with them
        data = self._stream.sink.next_frame(timeout)
        if data is None:
            raise failure(CaptureTimeout, f"no frame from the MJPEG encoder within {timeout:g} s",
                          FRAMES_FIX)
        return Capture(data, size[0], size[1], "jpeg")

    def stop_stream(self, size: tuple[int, int]) -> None:
        if self._picam2 is not None and self._stream is not None and self._stream.size == size:
            if self._recording is not None:
                # No switch while recording: the MJPEG encoder idles until it ends.
                self._stream = None
                return
            try:
                self._switch(None)
            except InsufficientCameraMemory as exc:
                # Fragmented CMA: the video configuration runs on, and stills that
                # fit its main stream still work.
                log.warning("staying in the video configuration: %s", exc.detail)

    def luma_frame(self, size: tuple[int, int], timeout: float) -> LumaFrame:
        """The Y plane of the next lores frame, at ``size``.

        The camera carries a YUV420 lores stream of ``size`` from now on, beside
        main in every configuration, until ``stop_luma``; the first call restarts
        the camera with it. A live stream's lores (the MJPEG encoder's) serves
        motion too, scaled to ``size``. A recording is not restarted to add one
        (that would cut it): beside a recording without lores, frames come from
        its main stream, converted to luma at a fraction of its size.
        """
        self._require_open()
        self._luma = size
        lores = self._picam2.camera_configuration().get("lores")
        if lores is None and self._recording is None:  # the still configuration
            self._switch_still_geometry(self._stream)
            lores = self._picam2.camera_configuration()["lores"]
        deadline = time.monotonic() + timeout
        while True:
            request = self._next_request(deadline, timeout)
            try:
                stamp = int(request.get_metadata().get("SensorTimestamp") or 0)
                luma = _luma_of(request, lores, size) if stamp > self._luma_stamp else None
            except Exception as exc:
                _release(request)
                raise CaptureFailed(f"the frame for motion could not be read: {exc}") from exc
            _release(request)
            if luma is not None:
                break
            if time.monotonic() >= deadline:  # the same frame again and again
                raise failure(CaptureTimeout, f"no new frame from the camera within "
                              f"{timeout:g} s", FRAMES_FIX)
        self._luma_stamp, self._luma_frames = stamp, self._luma_frames + 1
        return LumaFrame(luma, _exposed_at(stamp), self._luma_frames)

    def stop_luma(self) -> None:
        if self._luma is None:
            return
        self._luma = None
        if self._picam2 is not None and self._stream is None and self._recording is None:
            # The still configuration again, without lores; a stream or a recording
            # drop theirs at their next restart.
            self._switch_still_geometry(None)

    def _switch_still_geometry(self, stream: _Stream | None) -> None:
        """Restart the still configuration with or without lores, freeing the buffers of
        the one left: two full-resolution still buffers would hold twice the CMA."""
        left = self._picam2.camera_configuration()["use_case"]
        self._switch(stream)
        allocator = self._picam2.allocator
        if left in allocator.buffer_dict and left != self._picam2.camera_configuration()["use_case"]:
            allocator.deallocate(left)

    def _luma_lores(self, main: tuple[int, int]) -> tuple[int, int] | None:
        """The lores size motion needs beside a main stream of ``main``, if it fits there
        (libcamera's ISP makes lores no larger than main)."""
        luma = self._luma
        if luma is None or luma[0] > main[0] or luma[1] > main[1]:
            return None
        return tuple(luma)

    def _next_request(self, deadline: float, timeout: float, flush: bool | None = None):
        """The camera's next completed request, by ``deadline``; its failures as ours."""
        try:
            return self._picam2.capture_request(wait=max(0.05, deadline - time.monotonic()),
                                                flush=flush)
        except self._timeout_errors() as exc:
            self._cancel_jobs()
            raise failure(CaptureTimeout, f"no frame from the camera within {timeout:g} s",
                          FRAMES_FIX) from exc
        except Exception as exc:
            raise CaptureFailed(f"the camera did not deliver a frame: {exc}") from exc

    def _take(self, settings: CaptureSettings, timeout: float) -> Capture:
        """The next frame of the running configuration that shows ``settings``, encoded."""
        picam2 = self._picam2
        deadline = time.monotonic() + timeout
        sent = self._apply(settings)
        if settings.format == "png":
            picam2.options["compress_level"] = PNG_COMPRESS_LEVEL
        else:
            picam2.options["quality"] = settings.quality
        focus_wait = self._focus_wait(settings)
        focus_deadline = time.monotonic() + AF_WAIT_S
        fresh = sent is not None
        while True:
            request = self._next_request(deadline, timeout, flush=True if fresh else None)
            try:
                raw = request.get_metadata()
                waiting = unapplied(sent or {}, raw)
                # Scanning; or, after a trigger, a frame from before the scan began.
                unfocused = raw.get("AfState") == 1 or (raw.get("AfState") == 0 and
                                                        "AfTrigger" in (sent or {}))
                if not waiting and focus_wait and unfocused and time.monotonic() < focus_deadline:
                    waiting = "focus"
                if not waiting:
                    # Straight from the camera buffer at its own size; any other
                    # size copies the frame out first, so the buffer (the still
                    # configuration's only one) goes back before the slow resize.
                    native = (settings.width, settings.height) == self._main_size
                    data = self._encode_buffer(request, settings) if native else None
                    image = None if native else request.make_image("main")
            except Exception as exc:
                _release(request)
                log.warning("encoding a frame failed", exc_info=True)
                raise CaptureFailed(f"the frame could not be encoded: {exc}") from exc
            _release(request)  # the buffer goes back to the camera whatever happened
            if not waiting:
                if data is None:
                    try:
                        data = _encode_image(image, settings)
                    except Exception as exc:
                        log.warning("encoding a frame failed", exc_info=True)
                        raise CaptureFailed(f"the frame could not be encoded: {exc}") from exc
                return Capture(data, settings.width, settings.height, settings.format,
                               frame_metadata(raw))
            if time.monotonic() >= deadline:
                raise CaptureTimeout(f"the camera did not apply {waiting} within {timeout:g} s")
            if waiting != "focus":
                # picamera2 can drop a set_controls() that races a request's
                # recycling (pi-audit F3): send them again with the next request.
                self._send(self._with_resets(self._controls))
            fresh = False

    def _focus_wait(self, settings: CaptureSettings) -> bool:
        """Whether a still waits for autofocus: continuous AF, or a triggered scan."""
        if "AfMode" not in self._base:
            return False
        controls = {**self._base, **settings.controls}
        return controls.get("AfMode") == 2 or (controls.get("AfMode") == 1
                                               and controls.get("AfTrigger") == 0)

    def _apply(self, settings: CaptureSettings) -> dict | None:
        """Bring flips and controls in line with ``settings``.

        Returns the controls sent when a new frame is needed to show them (None
        when the running frames already do).
        """
        wanted = self._coerced({**self._base, **settings.controls})
        one_shot = {k: v for k, v in wanted.items() if k in ONE_SHOT_CONTROLS}
        controls = {k: v for k, v in wanted.items() if k not in ONE_SHOT_CONTROLS}
        flips = (bool(settings.hflip), bool(settings.vflip))
        if flips != self._flips:
            # Mode switch: flips live in the configuration, which only changes
            # while stopped. The new configuration carries the controls, so they
            # are applied from the first frame after the restart.
            try:
                _stop_camera(self._picam2)
                self._configure_and_start(*flips, self._with_resets(controls))
            except Exception as exc:
                # Half-reconfigured is not a state to capture from: let the owner reopen.
                raise CameraUnavailable(f"switching the camera to the new flips failed: {exc}") from exc
            self._controls = controls
            if one_shot:
                self._send(one_shot)
            return {**controls, **one_shot}
        if controls != self._controls or one_shot:
            sent = {**self._with_resets(controls), **one_shot}
            self._send(sent)
            self._controls = controls
            return sent
        return None

    def _send(self, controls: dict) -> None:
        try:
            self._picam2.set_controls(controls)
        except Exception as exc:
            raise CaptureFailed(f"the camera refused the controls: {exc}") from exc

    def _configure_and_start(self, hflip: bool, vflip: bool, controls: dict,
                             make_room: bool = True) -> None:
        """Configure for stills, or for ``self._stream`` when set, and start."""
        from libcamera import Transform

        picam2 = self._picam2
        transform = Transform(hflip=hflip, vflip=vflip)
        stream = self._stream
        recording = self._recording
        if recording is not None:
            video = recording.settings
            main = (video.width, video.height)
            size = stream.size if stream else self._luma_lores(main)
            lores = {"lores": {"size": size, "format": "YUV420"}} if size else {}
            tag = f"-{size[0]}x{size[1]}" if size else ""
            # BGR888 as for stills, which the VC4 codec (RGB24) and libx264 both take.
            config = picam2.create_video_configuration(
                main={"size": main, "format": "BGR888"}, **lores,
                buffer_count=VIDEO_BUFFER_COUNT, transform=transform,
                controls={"FrameRate": video.fps, **controls},
                use_case=f"record-{main[0]}x{main[1]}{tag}")
        elif stream is None:
            width, height = self._full_size
            size = self._luma_lores(self._full_size)
            lores = {"lores": {"size": size, "format": "YUV420"}} if size else {}
            tag = f"-lores-{size[0]}x{size[1]}" if size else ""
            config = picam2.create_still_configuration(
                main={"size": self._full_size}, **lores, buffer_count=BUFFER_COUNT,
                transform=transform, controls=dict(controls),
                use_case=f"still-{width}x{height}{tag}")
        else:
            main = self._video_main_size(stream.size)
            # BGR888 like the still configuration, so stills encode the same way;
            # YUV420 is what the hardware encoder takes from lores.
            config = picam2.create_video_configuration(
                main={"size": main, "format": "BGR888"},
                lores={"size": stream.size, "format": "YUV420"},
                buffer_count=VIDEO_BUFFER_COUNT, transform=transform,
                controls={"FrameRate": stream.fps, **controls},
                use_case=f"video-{main[0]}x{main[1]}-{stream.size[0]}x{stream.size[1]}")
        self._configure(config, make_room)
        if recording is not None:
            self._start_h264(recording)
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

    def _configure(self, config: dict, make_room: bool) -> None:
        """``configure``; out of camera memory, once more after freeing the buffers of
        the other geometries when ``make_room``."""
        picam2 = self._picam2
        allocator = picam2.allocator
        try:
            picam2.configure(config)
            self._count_buffers(config)
            return
        except Exception as exc:
            if not is_enomem(exc):
                raise
            drop_failed_allocation(allocator)
            spare = [k for k in allocator.buffer_dict if k != config["use_case"]] if make_room else []
            if not spare:
                raise
        log.warning("out of camera memory configuring %s; freeing the buffers of %s",
                    config["use_case"], ", ".join(spare))
        for key in spare:
            allocator.deallocate(key)
        try:
            picam2.configure(config)
        except Exception as exc:
            if is_enomem(exc):
                drop_failed_allocation(allocator)
            raise
        self._count_buffers(config)

    def _count_buffers(self, config: dict) -> None:
        mapped = self._picam2.allocator.mapped_buffers.values()
        self._buffer_bytes[config["use_case"]] = sum(len(memory) for memory in mapped)

    def _stop(self) -> None:
        """Stop the camera, then the encoders, as picamera2's stop_recording() does."""
        encoder, self._encoder = self._encoder, None
        recording = self._recording
        try:
            _stop_camera(self._picam2)
        finally:
            if encoder is not None:
                _stop_encoder(self._picam2, encoder)
            if recording is not None and recording.encoder is not None:
                h264, recording.encoder = recording.encoder, None
                _stop_encoder(self._picam2, h264)

    # -- video -----------------------------------------------------------------------

    def start_encoder(self, settings: VideoSettings, output: Any, follow: bool = False) -> Any:
        self._require_open()
        recording = self._recording
        claim = _Claim(recording or _Recording(settings, pi_video.tee()), output, settings, follow)
        if recording is None:
            pi_video.require_outputs(".".join(map(str, _picamera2_version(self._lib) or ("?",))))
            self._record(claim.recording, settings, claim)
        elif follow or _encode(settings) == _encode(recording.settings):
            recording.claims.append(claim)
            recording.tee.add(output)
            self.request_keyframe(claim)  # its output starts at a keyframe
            log.info("H.264 %dx%d: %d outputs on one encoder", recording.settings.width,
                     recording.settings.height, recording.tee.outputs)
        elif any(not other.follow for other in recording.claims):  # a clip or the pre-roll
            video = recording.settings
            raise failure(CameraBusy, f"the camera is recording video at {video.width}x"
                          f"{video.height} {video.fps:g} fps, and a Pi's camera has one video "
                          f"stream: {settings.width}x{settings.height} at {settings.fps:g} fps "
                          f"would need another", f"ask for {video.width}x{video.height} at "
                          f"{video.fps:g} fps with the same flips, which shares the running "
                          f"encoder, or wait for it to stop")
        else:  # only live view runs: it follows this recording
            self._record(recording, settings, claim)
        return claim

    def _record(self, recording: _Recording, settings: VideoSettings,
                claim: _Claim | None = None) -> None:
        """(Re)start the camera and ``recording``'s encoder at ``settings``, with ``claim``.

        The outputs already on its tee stay started (``held``): the new encoder
        starts with a keyframe and tells them about its stream. If it fails, the
        camera goes back to what ran before: ``recording`` at its old settings
        when it ran and has claims left, else no recording, its outputs stopped
        (their owners hear of it). Raises what ``start_encoder`` raises.
        """
        running = recording is self._recording
        before, previous = recording.settings, self._stream
        if previous is not None and (previous.size[0] > settings.width
                                     or previous.size[1] > settings.height):
            # lores cannot be larger than main: that stream goes on in software.
            self._stream = None
        with recording.tee.held():
            try:
                self._stop()
                recording.settings = settings
                if claim is not None:
                    recording.claims.append(claim)
                    recording.tee.add(claim.output)
                self._recording = recording
                self._configure_and_start(settings.hflip, settings.vflip,
                                          self._with_resets(self._controls))
                log.info("recording H.264 %dx%d at %g fps with %s, %d output(s)", settings.width,
                         settings.height, settings.fps, type(recording.encoder).__name__,
                         recording.tee.outputs)
                return
            except Exception as exc:
                error = exc
                if claim is not None:
                    recording.claims.remove(claim)
                    recording.tee.remove(claim.output)
                self._stop()
                recording.settings = before
                restarted = (running and bool(recording.claims)
                             and self._restart(previous, recording))
        if not restarted:
            self._recording = None
            recording.tee.stop()  # not held: the outputs left stop
            restarted = self._restart(previous)
        what = f"recording {settings.width}x{settings.height} at {settings.fps:g} fps"
        if not restarted:
            raise CameraUnavailable(f"{what} failed and the camera did not restart: "
                                    f"{error}") from error
        if is_enomem(error):
            raise failure(InsufficientCameraMemory, f"{what} needs more contiguous camera "
                          f"(CMA) memory than is free ({error})", CMA_FIX) from error
        raise CaptureFailed(f"{what} did not start: {error}") from error

    def stop_encoder(self, encoder: Any) -> None:
        recording = getattr(encoder, "recording", None)
        if self._picam2 is None or recording is None or recording is not self._recording \
                or encoder not in recording.claims:
            return  # closed (and stopped) with the camera already
        if len(recording.claims) > 1:
            recording.claims.remove(encoder)
            recording.tee.remove(encoder.output)  # the encoder goes on for the others
            wanted = recording.wanted()
            if _encode(wanted) != _encode(recording.settings):
                try:  # the live view left goes back to its own settings
                    self._record(recording, wanted)
                except (InsufficientCameraMemory, CaptureFailed) as exc:  # it ran on as it was
                    log.warning("the H.264 encoder stays at %dx%d: %s", recording.settings.width,
                                recording.settings.height, exc.detail)
            return
        try:
            self._stop()  # the output gets the last frames, then stop()
        finally:
            self._recording = None
        try:
            self._configure_and_start(*self._flips, self._with_resets(self._controls))
        except Exception as exc:
            raise CameraUnavailable(f"restarting the camera after a recording failed: "
                                    f"{exc}") from exc

    def request_keyframe(self, encoder: Any) -> bool:
        h264 = encoder.recording.encoder if isinstance(encoder, _Claim) else None
        return h264 is not None and pi_video.request_keyframe(h264)

    def live_h264_size(self, sizes: list[tuple[int, int]]) -> tuple[int, int]:
        # A Pi 5 encodes H.264 in software (libx264): 1280x720 at 30 fps takes about
        # a core, 1920x1080 does not keep up, so 720p is its live size when listed.
        try:
            from picamera2.platform import Platform, get_platform
        except ImportError:
            return sizes[0]
        if get_platform() == Platform.PISP and PISP_LIVE_SIZE in sizes:
            return PISP_LIVE_SIZE
        return sizes[0]

    def file_output(self, path: str) -> Any:
        if pi_video.outputs_supported():
            return pi_video.mp4_file(path)
        return super().file_output(path)  # start_encoder refuses to record into it

    def circular_output(self, seconds: float, max_bytes: int) -> Any:
        if pi_video.outputs_supported():
            return pi_video.pre_roll(seconds, max_bytes)
        return super().circular_output(seconds, max_bytes)

    def _start_h264(self, recording: _Recording) -> None:
        """picamera2's H.264 encoder for the platform, on main, into the recording's output."""
        from picamera2.platform import Platform, get_platform

        encoder = pi_video.h264_encoder(recording.settings, get_platform() == Platform.VC4)
        try:
            self._picam2.start_encoder(encoder, recording.tee, name="main")
        except Exception:
            _abandon_encoder(encoder)
            raise
        recording.encoder = encoder

    def _switch(self, stream: _Stream | None, make_room: bool = True) -> None:
        """Restart in the still configuration (None) or streaming ``stream``.

        Out of camera memory, the previous configuration starts again (its buffers
        are still allocated unless ``make_room`` freed them) and the switch is
        refused with ``InsufficientCameraMemory``.
        """
        previous = self._stream
        try:
            self._stop()
            self._stream = stream
            self._configure_and_start(*self._flips, self._with_resets(self._controls), make_room)
        except Exception as exc:
            mode = "streaming" if stream else "stills"
            if is_enomem(exc) and self._restart(previous):
                raise failure(InsufficientCameraMemory, self._memory_refusal(stream, previous, exc),
                              CMA_FIX) from exc
            # Half-reconfigured is not a state to capture from: let the owner reopen.
            raise CameraUnavailable(f"switching the camera to {mode} failed: {exc}") from exc

    def _memory_refusal(self, stream: _Stream | None, previous: _Stream | None,
                        exc: Exception) -> str:
        if stream is None and previous is not None:
            w, h = self._full_size
            mw, mh = self._video_main_size(previous.size)
            return (f"a {w}x{h} still needs more contiguous camera (CMA) memory than is free "
                    f"while the {previous.size[0]}x{previous.size[1]} stream holds its buffers "
                    f"({exc}); take one of at most {mw}x{mh} (the stream's own frames) or stop "
                    f"the stream first")
        what = (f"streaming at {stream.size[0]}x{stream.size[1]}" if stream is not None
                else f"a {self._full_size[0]}x{self._full_size[1]} still")
        return f"{what} needs more contiguous camera (CMA) memory than is free ({exc})"

    def _restart(self, stream: _Stream | None, recording: _Recording | None = None) -> bool:
        """Back to ``stream``'s configuration (and ``recording``'s) after a failed switch;
        False if that fails too."""
        try:
            self._stream, self._recording = stream, recording
            self._configure_and_start(*self._flips, self._with_resets(self._controls))
            return True
        except Exception:
            log.warning("restarting the previous configuration failed", exc_info=True)
            if recording is not None:
                self._stop()
            return False

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
            encoder = None
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
                if encoder is not None:
                    _abandon_encoder(encoder)
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
        if name == "FrameDurationLimits":
            # What the running configuration asked for (stills allow long
            # exposures), not the advertised 30 fps default (pi-audit F2).
            value = (self._picam2.camera_configuration() or {}).get("controls", {}).get(name)
            if value is not None:
                return [int(v) for v in value]
        info = self._caps.controls.get(name) if self._caps else None
        return None if info is None else info.default

    def _coerced(self, controls: dict) -> dict:
        """Turn JSON values into the types libcamera's binding insists on.

        JSON has one number type; pybind11 refuses a float for an integer control
        (ExposureTime, ScalerCrop), so whole-number floats become ints there.
        """
        caps = self._caps.controls if self._caps else {}
        out = {}
        for name, value in controls.items():
            info = caps.get(name)
            out[name] = value if info is None else coerce(info, value)
        return out

    def _encode_buffer(self, request, settings: CaptureSettings) -> bytes:
        # picamera2 encodes straight from the camera buffer. It needs a real
        # BytesIO (it type-checks for one) and an explicit format.
        buffer = io.BytesIO()
        request.save("main", buffer, format=settings.format)
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
                raise failure(CameraUnavailable, f"picamera2 cannot be imported ({exc})",
                              INSTALL_FIX) from exc
            version = _picamera2_version(picamera2)
            if version is not None and version < OLDEST_PICAMERA2:
                raise failure(CameraUnavailable, f"picamera2 {'.'.join(map(str, version))} is "
                              f"too old: picam-api needs {'.'.join(map(str, OLDEST_PICAMERA2))} "
                              f"or newer", UPGRADE_FIX)
            self._lib = picamera2
        return self._lib

    def _timeout_errors(self) -> tuple[type[BaseException], ...]:
        # picamera2.TimeoutError is concurrent.futures.TimeoutError, which is
        # the builtin TimeoutError since Python 3.11; keep both to be sure.
        return (TimeoutError, getattr(self._lib, "TimeoutError", TimeoutError))

    def _cancel_jobs(self) -> None:
        """Drop the timed-out job so it cannot complete later and leak a request."""
        try:
            self._picam2.cancel_all_and_flush()
        except Exception:
            log.warning("cancel_all_and_flush() failed after a capture timeout", exc_info=True)


def _luma_of(request, lores: dict | None, size: tuple[int, int]):
    """Motion's ``size`` luma plane from a request: the Y rows that come first in the lores
    YUV420 array, (height * 3 / 2, stride); or, without lores, main's BGR888 (R, G, B)."""
    from PIL import Image

    if lores is not None:
        width, height = lores["size"]
        luma = request.make_array("lores")[:height, :width]
    else:
        from picamera2 import MappedArray

        with MappedArray(request, "main") as mapped:
            # Every n-th pixel of the camera's buffer, so that only a few times
            # motion's pixels are copied out and converted.
            rgb = mapped.array
            step = max(1, min(rgb.shape[1] // size[0], rgb.shape[0] // size[1]))
            luma = np.asarray(Image.fromarray(np.ascontiguousarray(rgb[::step, ::step, :3]),
                                              "RGB").convert("L"))
    if luma.shape != (size[1], size[0]):
        luma = np.asarray(Image.fromarray(luma).resize(size, Image.Resampling.BOX))
    return np.ascontiguousarray(luma)


def _exposed_at(stamp_ns: int) -> float:
    """A frame's SensorTimestamp (CLOCK_BOOTTIME nanoseconds) as epoch seconds; now
    when it is not a recent time of that clock."""
    now = time.time()
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - stamp_ns / 1e9
    return now - age if 0 <= age < LUMA_MAX_AGE_S else now


def _release(request) -> None:
    """``request.release()``, whose control conversion can fail (pi-audit F1)."""
    try:
        request.release()
    except Exception as exc:
        raise CaptureFailed(f"the camera refused the controls when the frame was returned: "
                            f"{exc}") from exc


def _stop_camera(picam2) -> None:
    picam2.stop()


def _stop_encoder(picam2, encoder) -> None:
    try:
        picam2.stop_encoder(encoder)
    except Exception:
        log.warning("stopping the MJPEG encoder failed", exc_info=True)
        _abandon_encoder(encoder)


def _abandon_encoder(encoder) -> None:
    """Undo what a failed ``Encoder.start`` left behind (pi-audit F9).

    picamera2 marks the encoder running before ``_start()``, and the V4L2 one
    opens /dev/video11 and starts its poll thread before the ioctls that can
    fail: end the thread and close the device.
    """
    encoder._running = False
    thread = getattr(encoder, "thread", None)
    if isinstance(thread, threading.Thread) and thread.is_alive():
        thread.join(2.0)
    device = getattr(encoder, "vd", None)
    if device is not None:
        try:
            device.close()
        except Exception:
            log.warning("closing the encoder's device failed", exc_info=True)
        encoder.vd = None


def _encode_image(image, settings: CaptureSettings) -> bytes:
    """A frame copied out of the camera, at ``settings``' size and format."""
    from PIL import Image

    # Another aspect ratio is cut from the middle of the frame, never squashed;
    # reducing_gap shrinks by whole factors first, so a big downscale of a 12 MP
    # frame takes a fraction of a plain LANCZOS pass.
    image = image.resize((settings.width, settings.height), Image.Resampling.LANCZOS,
                         box=_centre_crop(image.size, (settings.width, settings.height)),
                         reducing_gap=3.0)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if settings.format == "png":
        image.save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        image.save(buffer, "JPEG", quality=settings.quality)
    return buffer.getvalue()


def _centre_crop(size: tuple[int, int], target: tuple[int, int]) -> tuple[float, float, float, float]:
    """The largest box of ``target``'s aspect ratio in the middle of ``size``."""
    width, height = size
    aspect = target[0] / target[1]
    if width / height > aspect:
        w = height * aspect
        return ((width - w) / 2, 0, (width + w) / 2, height)
    h = width / aspect
    return (0, (height - h) / 2, width, (height + h) / 2)


def _picamera2_version(module) -> tuple[int, ...] | None:
    """The version of the picamera2 actually imported, from the metadata beside it."""
    from importlib.metadata import distributions

    where = str(Path(module.__file__).resolve().parent.parent)
    for dist in distributions(path=[where]):
        if (dist.metadata["Name"] or "").lower() == "picamera2":
            return tuple(int(p) for p in dist.version.split(".")[:3] if p.isdigit())
    return None


def _quality_level(levels, quality: int):
    """The picamera2 ``Quality`` level nearest to JPEG ``quality``."""
    return levels[min(QUALITY_LEVELS, key=lambda level: abs(level[1] - quality))[0]]


