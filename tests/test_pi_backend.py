"""The picamera2 backend running the REAL picamera2 over the simulated libcamera (tests/simcam).

Each pi-audit finding (F1-F15, ../shared/reference/pi-audit.md) has a test here
named after it; tests/test_pi_versions.py runs this file again against the
oldest picamera2 supported.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from PIL import Image

from picam_api.camera import pi, settings as camera_settings
from picam_api.camera.base import CaptureSettings
from picam_api.camera.owner import CameraOwner
from picam_api.camera.pi import Picamera2Camera
from picam_api.errors import (CameraBusy, CameraUnavailable, CaptureFailed, CaptureTimeout,
                              InsufficientCameraMemory, InvalidInput)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
STREAM = (320, 240)


@pytest.fixture
def backend(sim):
    cam = Picamera2Camera({"camera_num": 0})
    yield cam
    cam.close()


@pytest.fixture
def picam2(backend):
    """The opened backend's real Picamera2."""
    backend.open()
    return backend._picam2


def shot(backend, **kw) -> CaptureSettings:
    caps = backend._caps
    kw.setdefault("width", caps.sensor_size[0])
    kw.setdefault("height", caps.sensor_size[1])
    return CaptureSettings(**kw)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close_to(colour, expected, slack=40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(colour, expected))


def settle(picam2, frames: int = 3) -> None:
    """Let the running camera deliver a few frames (AF steps, AE)."""
    for _ in range(frames):
        picam2.capture_request(wait=TIMEOUT).release()


# -- open ------------------------------------------------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"]}], indirect=True)
def test_open_runs_a_one_buffer_still_from_a_persistent_allocator(sim, backend):
    caps = backend.open()
    picam2 = backend._picam2
    config = picam2.camera_configuration()
    assert caps.model == "imx708" and caps.sensor_size == (4608, 2592) and caps.even_sizes
    assert config["main"]["size"] == (4608, 2592) and config["buffer_count"] == 1
    assert config["use_case"] == "still-4608x2592"
    assert type(picam2.allocator).__name__ == "PersistentAllocator"
    assert picam2.started and picam2._event_loop_running
    # One main and one raw buffer: what a Camera Module 3 still costs in CMA (F5).
    sizes = sorted(size for label, size in sim.heap.buffers() if label.startswith("picamera2"))
    assert sizes == [14929920, 35831808]
    json.dumps(caps.to_dict())


def test_controls_carry_libcamera_types_and_hide_what_picamera2_manages(sim, backend):
    caps = backend.open()
    gains, crop = caps.controls["ColourGains"], caps.controls["ScalerCrop"]
    assert (gains.type, gains.size) == ("number", 2)
    assert (crop.type, crop.size) == ("rectangle", None)
    assert caps.controls["ExposureTime"].type == "integer"
    assert not {"ExposureTimeMode", "AnalogueGainMode", "ScalerCrops"} & set(caps.controls)


# -- F1, F2: controls checked by libcamera's type and size ----------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"], "libcamera": "0.5"},
                                 {"sensors": ["imx708"], "libcamera": "0.6"}], indirect=True)
def test_f1_f2_array_controls_accept_exactly_their_real_shapes(sim, backend):
    caps = backend.open()
    defaults = camera_settings.initial_defaults(caps)
    # A colour matrix has negative entries: the IPA's advertised minimum (0.0) is not one.
    matrix = [1.8, -0.6, -0.2, -0.3, 1.6, -0.3, 0.0, -0.5, 1.5]
    good = {"FrameDurationLimits": [70000, 100000], "AfWindows": [[1000, 800, 512, 512]],
            "ColourCorrectionMatrix": matrix, "AwbEnable": False}
    for name, value in good.items():
        camera_settings.resolve({"controls": {name: value}}, defaults, caps)
    bad = {"AfWindows": [5], "ColourCorrectionMatrix": 1.0, "FrameDurationLimits": 100000}
    for name, value in bad.items():
        with pytest.raises(InvalidInput) as info:
            camera_settings.resolve({"controls": {name: value}}, defaults, caps)
        assert f"controls.{name}" in info.value.extra["errors"]
    # The accepted shapes go through picamera2 and libcamera's conversion.
    settings = camera_settings.resolve({"controls": good, "width": 640, "height": 360},
                                       defaults, caps)
    result = backend.capture(settings, TIMEOUT)
    assert decoded(result.data).size == (640, 360)
    assert backend._picam2._preview.thread.is_alive()  # the event loop survived
    request = backend._picam2.capture_request(wait=TIMEOUT)  # and the IPA took the matrix
    try:
        assert request.get_metadata()["ColourCorrectionMatrix"] == pytest.approx(matrix)
    finally:
        request.release()
    with pytest.raises(InvalidInput, match="between -8.0 and 8.0"):
        camera_settings.resolve({"controls": {"ColourCorrectionMatrix": [9.0] * 9}}, defaults, caps)


def test_f1_a_failing_release_is_a_capture_failure(picam2):
    request = picam2.capture_request(wait=TIMEOUT)
    picam2.set_controls({"Brightness": "bright"})  # libcamera cannot cast this
    with pytest.raises(CaptureFailed, match="refused the controls"):
        pi._release(request)


# picamera2's event loop dying is what this test makes happen.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_f1_close_returns_after_the_event_loop_died(backend, picam2):
    picam2.set_controls({"Brightness": "bright"})  # kills the loop at the next recycle
    thread = picam2._preview.thread
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    closer = threading.Thread(target=backend.close, daemon=True)
    closer.start()
    closer.join(TIMEOUT)
    assert not closer.is_alive(), "close() hung on the dead event loop"
    backend.open()  # and the camera opens again
    assert backend._picam2.started


def test_f2_dropping_frame_duration_limits_restores_the_still_configurations(backend, picam2):
    short = {"FrameDurationLimits": [33333, 33333]}
    backend.capture(shot(backend, width=320, height=240, controls=short), TIMEOUT)
    long_exposure = {"ExposureTime": 200000}
    result = backend.capture(shot(backend, width=320, height=240, controls=long_exposure), TIMEOUT)
    assert result.metadata["ExposureTime"] == pytest.approx(200000, rel=0.02)
    assert result.metadata["FrameDuration"] >= 200000


# -- F3: a control change is confirmed from the frame -------------------------------------


def test_f3_exposure_and_gain_are_confirmed_from_the_frame_metadata(backend, picam2):
    settle(picam2)
    for exposure, gain in ((20000, 4.0), (8000, 2.0)):
        controls = {"ExposureTime": exposure, "AnalogueGain": gain}
        result = backend.capture(shot(backend, width=320, height=240, controls=controls), TIMEOUT)
        assert result.metadata["ExposureTime"] == pytest.approx(exposure, rel=0.02)
        assert result.metadata["AnalogueGain"] == pytest.approx(gain, rel=0.02)


def test_controls_are_sent_only_when_they_change_and_dropped_ones_reset(backend, picam2):
    first = backend.capture(shot(backend, width=320, height=240,
                                 controls={"ExposureTime": 30000}), TIMEOUT)
    again = backend.capture(shot(backend, width=320, height=240,
                                 controls={"ExposureTime": 30000.0}), TIMEOUT)
    assert first.metadata["ExposureTime"] == again.metadata["ExposureTime"] == pytest.approx(30000, rel=0.02)
    assert backend._controls["ExposureTime"] == 30000
    auto = backend.capture(shot(backend, width=320, height=240), TIMEOUT)
    settle(picam2)
    auto = backend.capture(shot(backend, width=320, height=240), TIMEOUT)
    assert auto.metadata["ExposureTime"] != pytest.approx(30000, rel=0.02)  # back to AE


# -- F4: long exposures ----------------------------------------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx477"]}], indirect=True)
def test_f4_the_timeout_grows_with_the_exposure_and_a_long_one_succeeds(
        sim, backend, monkeypatch):
    from picam_api import watchdog

    owner = CameraOwner(backend, timeout=0.5, retry_after=5, reopen_backoff=0)
    owner.capabilities  # opened before the watch: only the captures are watched
    long_exposure = shot(backend, width=320, height=240, controls={"ExposureTime": 600_000})
    short_exposure = shot(backend, width=320, height=240, controls={"ExposureTime": 1000})
    monkeypatch.setattr(watchdog, "STUCK_MARGIN_S", 0.1)
    dog, problems = watchdog.Watchdog(owner, env={}), []
    done = threading.Event()

    def watch():
        while not done.wait(0.1):
            problems.append(dog.problem())
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = owner.capture(long_exposure)  # longer than the 0.5 s timeout by itself
        # Frames already under way keep the long exposure: the next capture waits for them.
        assert backend.capture_timeout(short_exposure, 0.5) == pytest.approx(0.5 + 6 * 0.6)
        short = owner.capture(short_exposure)
    finally:
        done.set()
        watcher.join()
        owner.close()
    assert result.metadata["ExposureTime"] == pytest.approx(600_000, rel=0.02)
    assert short.metadata["ExposureTime"] == pytest.approx(1000, rel=0.05)
    assert len(problems) > 3 and not any(problems)  # never counted as a hang


# -- F10: autofocus on a Camera Module 3 -----------------------------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"]}], indirect=True)
def test_f10_continuous_autofocus_by_default_and_stills_wait_for_focus(sim, backend, picam2):
    sim.focus_distance_m = 0.25  # something close: 4 dioptres
    result = backend.capture(shot(backend, width=640, height=360), TIMEOUT)
    assert result.metadata["LensPosition"] == pytest.approx(4.0, abs=0.05)
    assert result.metadata["AfState"] == 2  # Focused


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"]}], indirect=True)
def test_f10_manual_focus_and_a_triggered_scan(sim, backend, picam2):
    manual = backend.capture(shot(backend, width=640, height=360,
                                  controls={"AfMode": 0, "LensPosition": 7.5}), TIMEOUT)
    assert manual.metadata["LensPosition"] == pytest.approx(7.5)
    assert manual.metadata["AfState"] == 0
    sim.focus_distance_m = 1.0
    scanned = backend.capture(shot(backend, width=640, height=360,
                                   controls={"AfMode": 1, "AfTrigger": 0}), TIMEOUT)
    assert scanned.metadata["LensPosition"] == pytest.approx(1.0, abs=0.05)
    assert scanned.metadata["AfState"] == 2


@pytest.mark.parametrize("sim", [{"sensors": ["imx477"]}], indirect=True)
def test_no_autofocus_where_none_is_advertised(sim, backend):
    caps = backend.open()
    assert "AfMode" not in caps.controls
    settings = shot(backend, width=320, height=240)
    assert backend.capture_timeout(settings, 1.0) == 1.0  # no wait for focus
    assert "AfState" not in backend.capture(settings, TIMEOUT).metadata


# -- F15: aspect ratio -----------------------------------------------------------------------


@pytest.mark.parametrize("sensor, size", [("imx708", (1920, 1080)), ("imx477", (2028, 1520)),
                                          ("imx219", (1640, 1232)), ("ov5647", (1296, 972))])
def test_f15_the_default_photo_keeps_the_sensors_aspect_ratio(sim, sensor, size):
    import simcam

    simcam.reset(sensors=[sensor])
    backend = Picamera2Camera({"camera_num": 0})
    try:
        defaults = camera_settings.initial_defaults(backend.open())
    finally:
        backend.close()
    assert (defaults["width"], defaults["height"]) == size


@pytest.mark.parametrize("sim", [{"sensors": ["imx477"]}], indirect=True)
def test_f15_another_aspect_ratio_is_cut_from_the_centre_not_squashed(sim, backend, picam2):
    image = decoded(backend.capture(shot(backend, width=1600, height=900), TIMEOUT).data)
    assert image.size == (1600, 900)
    # The colour bars fill the top two thirds of the sensor's 4:3 frame. Cut to
    # 16:9 from the middle they reach 72% of the way down; squashed, 67%.
    bars = [(192, 192, 0), (0, 192, 192), (0, 192, 0), (192, 0, 192), (192, 0, 0)]
    row = int(900 * 0.70)
    matches = [close_to(image.getpixel((1600 * (2 * i + 3) // 14, row)), colour)
               for i, colour in enumerate(bars)]
    assert sum(matches) >= 4, matches  # the moving dot may cover one


# -- frames in their format and stride ------------------------------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx477"]}], indirect=True)
def test_a_padded_stride_frame_decodes_upright(sim, backend, picam2):
    config = picam2.camera_configuration()["main"]
    assert config["stride"] > config["size"][0] * 3  # 4056 x 3 bytes padded
    image = decoded(backend.capture(shot(backend, quality=80), TIMEOUT).data)
    w, h = image.size
    assert (w, h) == (4056, 3040)
    for bar, colour in enumerate([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0)]):
        assert close_to(image.getpixel((w * (2 * bar + 1) // 14, h // 3)), colour)


def test_png_and_resized_jpeg(backend, picam2):
    png = backend.capture(shot(backend, format="png", width=200, height=150), TIMEOUT)
    assert decoded(png.data).format == "PNG" and decoded(png.data).size == (200, 150)
    small = backend.capture(shot(backend, width=320, height=240, quality=5), TIMEOUT)
    large = backend.capture(shot(backend, width=320, height=240, quality=95), TIMEOUT)
    assert len(small.data) < len(large.data)


def test_flips_reconfigure_only_when_they_change(backend, picam2):
    count = picam2.configure_count
    backend.capture(shot(backend, width=320, height=180), TIMEOUT)
    backend.capture(shot(backend, width=320, height=180, hflip=True), TIMEOUT)
    backend.capture(shot(backend, width=320, height=180, hflip=True, quality=50), TIMEOUT)
    assert picam2.configure_count == count + 1
    transform = picam2.camera_configuration()["transform"]
    assert (transform.hflip, transform.vflip) == (True, False)
    flipped = decoded(backend.capture(shot(backend, width=320, height=180, hflip=True), TIMEOUT).data)
    # the blue bar is now on the left (y=70: below the text, above the moving dot)
    assert close_to(flipped.getpixel((10, 70)), (0, 0, 192))


# -- F5: memory on small Pis ------------------------------------------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"], "cma_mib": 256}], indirect=True)
def test_f5_mode_switches_reuse_their_buffers(sim, backend, picam2):
    def cycle():
        backend.stream_frame(CaptureSettings(width=STREAM[0], height=STREAM[1], quality=70),
                             10.0, TIMEOUT)
        backend.stop_stream(STREAM)
    cycle()
    buffers = sim.heap.frame_buffers()
    for _ in range(2):
        cycle()
    assert sim.heap.frame_buffers() == buffers  # the same dma-bufs, none reallocated
    assert sim.heap.failures == 0


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"], "cma_mib": 32}], indirect=True)
def test_f5_a_still_that_cannot_fit_is_refused_saying_why(sim, backend):
    with pytest.raises(CameraUnavailable) as info:
        backend.open()
    assert "CMA" in info.value.detail and "/proc/meminfo" in info.value.detail


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"], "cma_mib": 64}], indirect=True)
def test_f5_a_full_still_that_cannot_fit_beside_the_stream_is_refused_and_it_streams_on(
        sim, backend, picam2):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)  # the stream made room: the still's buffers went
    buffers = sim.heap.frame_buffers()
    with pytest.raises(InsufficientCameraMemory) as info:
        backend.capture(shot(backend), TIMEOUT)
    assert info.value.status == 503 and "while the 320x240 stream holds" in info.value.detail
    assert "cma-256" in info.value.extra["fix"]
    assert sim.heap.frame_buffers() == buffers  # the stream's own, and nothing left behind
    assert decoded(backend.stream_frame(streamed(), 10.0, TIMEOUT).data).size == STREAM
    fits = backend.capture(shot(backend, width=640, height=360), TIMEOUT)  # from the stream
    assert decoded(fits.data).size == (640, 360)


# -- F8, F12: open errors -----------------------------------------------------------------------


@pytest.mark.parametrize("sim, match", [
    ({"dma_heap": False}, "video group"),
    ({"unplugged": True}, "not connected"),
], indirect=["sim"])
def test_f8_f12_open_errors_are_unavailable_with_what_to_do(sim, backend, match):
    with pytest.raises(CameraUnavailable) as info:
        backend.open()
    assert not isinstance(info.value, CameraBusy)
    assert match in info.value.detail


@pytest.mark.parametrize("sim", [{"busy": True}], indirect=True)
def test_a_camera_held_elsewhere_is_busy(sim, backend):
    with pytest.raises(CameraBusy, match="another process.*Device or resource busy"):
        backend.open()


@pytest.mark.parametrize("sim", [{"sensors": []}], indirect=True)
def test_no_camera_attached_is_unavailable(sim, backend):
    with pytest.raises(CameraUnavailable, match="no camera attached"):
        backend.open()


def test_a_bad_camera_number_is_unavailable(sim):
    with pytest.raises(CameraUnavailable, match="no camera number 1"):
        Picamera2Camera({"camera_num": 1}).open()


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"]}], indirect=True)  # no focus to wait for
def test_frames_that_stop_are_a_timeout_and_the_owner_reopens(sim, backend):
    owner = CameraOwner(backend, timeout=1.0, retry_after=7, reopen_backoff=0)
    try:
        owner.capture(CaptureSettings(width=320, height=240))
        sim.frontend_timeout = 0  # the sensor goes quiet
        with pytest.raises(CaptureTimeout) as info:
            # A frame that completed just before may still be handed out, once
            # (picamera2 keeps the newest finished request).
            for _ in range(2):
                owner.capture(CaptureSettings(width=320, height=240))
        assert info.value.retry_after == 7 and "stopped sending frames" in info.value.extra["fix"]
        sim.frontend_timeout = None
        assert decoded(owner.capture(CaptureSettings(width=320, height=240)).data).size == (320, 240)
    finally:
        owner.close()


# -- streaming, F9 ---------------------------------------------------------------------------


def streamed(**kw) -> CaptureSettings:
    kw.setdefault("width", STREAM[0])
    kw.setdefault("height", STREAM[1])
    kw.setdefault("quality", 75)
    return CaptureSettings(**kw)


@pytest.mark.parametrize("sim", [{"platform": "pisp"}], indirect=True)
def test_a_pi_5_streams_lores_with_the_software_jpeg_encoder(sim, backend, picam2):
    frame = backend.stream_frame(streamed(), 15.0, TIMEOUT)
    assert decoded(frame.data).size == STREAM
    config = picam2.camera_configuration()
    assert config["lores"]["size"] == STREAM and config["lores"]["format"] == "YUV420"
    assert type(backend._encoder).__name__ == "JpegEncoder"
    image = decoded(backend.stream_frame(streamed(), 15.0, TIMEOUT).data)
    # YUV420 lores through simplejpeg: the middle bar of seven is green (y=100: below
    # the text, above the moving dot).
    assert close_to(image.getpixel((STREAM[0] // 2, 100)), (0, 192, 0), slack=50)


def test_a_pi_4_streams_lores_through_the_hardware_mjpeg_codec(sim, backend, picam2):
    from simcam import video11

    frame = backend.stream_frame(streamed(), 15.0, TIMEOUT)
    assert type(backend._encoder).__name__ == "MJPEGEncoder"  # V4L2, /dev/video11
    assert decoded(frame.data).size == STREAM
    frames = [backend.stream_frame(streamed(), 15.0, TIMEOUT).data for _ in range(3)]
    assert len(set(frames)) == 3  # each a new frame
    image = decoded(frames[-1])
    assert close_to(image.getpixel((STREAM[0] // 2, 100)), (0, 192, 0), slack=50)
    codec = video11.OPENED[-1]
    assert codec.encoded >= 4 and codec.output_format[:2] == STREAM
    assert ("video11", video11.MIN_COMPRESSED_BUFFER) in sim.heap.buffers()  # its CMA
    backend.stop_stream(STREAM)
    assert codec.closed and not sim.heap.buffers().count(("video11", video11.MIN_COMPRESSED_BUFFER))
    assert not _poll_threads()


@pytest.mark.parametrize("sim", [{"codec_broken": True}], indirect=True)
def test_f9_a_failed_hardware_encoder_leaves_no_thread_or_device(sim, backend, picam2):
    from simcam import video11

    frame = backend.stream_frame(streamed(), 10.0, TIMEOUT)  # VC4: V4L2 first, then software
    assert decoded(frame.data).size == STREAM
    assert type(backend._encoder).__name__ == "JpegEncoder"
    assert video11.OPENED and all(codec.closed for codec in video11.OPENED)
    assert not _poll_threads()


def _poll_threads() -> list[threading.Thread]:
    """picamera2's V4L2 encoder threads still running."""
    return [t for t in threading.enumerate() if "thread_poll" in repr(getattr(t, "_target", ""))]


def test_stills_during_a_stream_and_back_to_stills(sim, backend, picam2, monkeypatch):
    monkeypatch.setattr(pi, "VIDEO_MAIN_COVERS", (640, 480))
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    assert picam2.camera_configuration()["use_case"].startswith("video-")
    small = backend.capture(streamed(width=320, height=200), TIMEOUT)  # from the running stream
    assert decoded(small.data).size == (320, 200)
    full = backend.capture(shot(backend), TIMEOUT)  # pauses the stream
    assert decoded(full.data).size == backend._caps.sensor_size
    assert picam2.camera_configuration()["use_case"].startswith("video-")
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    backend.stop_stream(STREAM)
    assert picam2.camera_configuration()["use_case"].startswith("still-")
    assert backend._encoder is None


def test_the_frame_sink_hands_out_each_frame_once():
    sink = pi._FrameSink()
    sink.write(b"one")
    sink.write(b"two")
    assert sink.next_frame(0.01) == b"two"
    assert sink.next_frame(0.01) is None


# -- metadata and EXIF -------------------------------------------------------------------------


@pytest.mark.parametrize("sim", [{"sensors": ["imx708"]}], indirect=True)
def test_photo_metadata_comes_from_the_frame_and_jpegs_carry_exif(sim, backend):
    import piexif

    owner = CameraOwner(backend, timeout=TIMEOUT, retry_after=5)
    try:
        result = owner.capture(CaptureSettings(width=640, height=360,
                                               controls={"ExposureTime": 12000}))
    finally:
        owner.close()
    md = result.metadata
    assert {"ExposureTime", "AnalogueGain", "DigitalGain", "ColourTemperature", "Lux",
            "FocusFoM", "LensPosition", "SensorTimestamp"} <= set(md)
    exif = piexif.load(result.data)
    assert exif["0th"][piexif.ImageIFD.Make] == b"Raspberry Pi"
    assert exif["0th"][piexif.ImageIFD.Model] == b"imx708"
    assert exif["0th"][piexif.ImageIFD.Orientation] == 1
    assert exif["Exif"][piexif.ExifIFD.ExposureTime] == (md["ExposureTime"], 1_000_000)
    assert exif["Exif"][piexif.ExifIFD.ISOSpeedRatings] == round(md["AnalogueGain"] * md["DigitalGain"] * 100)
    stamp = result.taken_at.strftime("%Y:%m:%d %H:%M:%S").encode()
    assert exif["Exif"][piexif.ExifIFD.DateTimeOriginal] == stamp
    assert exif["Exif"][piexif.ExifIFD.SubSecTimeOriginal] == f"{result.taken_at.microsecond // 1000:03d}".encode()


def test_importing_the_backend_does_not_import_picamera2():
    code = textwrap.dedent("""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("picamera2", "libcamera"):
                    raise ImportError("blocked: " + name)
                return None

        sys.meta_path.insert(0, Block())
        import picam_api.camera.pi
        import picam_api.camera
        picam_api.camera.pi.Picamera2Camera({"camera_num": 0})
        assert "picamera2" not in sys.modules and "libcamera" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
