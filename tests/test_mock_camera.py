import io
import threading
import time

import pytest
from PIL import Image, ImageStat

from picam_api.camera.base import CaptureSettings
from picam_api.camera.mock import MockCamera
from picam_api.config import from_mapping
from picam_api.errors import CameraUnavailable, CaptureFailed, CaptureTimeout


@pytest.fixture
def camera():
    mock = MockCamera(from_mapping({"camera": {"mock": {"seed": 3}}})["camera"])
    mock.open()
    yield mock
    mock.close()


def shot(camera, **settings) -> Image.Image:
    capture = camera.capture(CaptureSettings(**{"width": 320, "height": 240, **settings}), 2.0)
    image = Image.open(io.BytesIO(capture.data))
    image.load()
    return image


def test_capture_is_a_real_image_at_the_requested_size(camera):
    capture = camera.capture(CaptureSettings(width=640, height=360, quality=80), 2.0)
    image = Image.open(io.BytesIO(capture.data))
    assert (image.format, image.size) == ("JPEG", (640, 360))
    assert (capture.width, capture.height, capture.format) == (640, 360, "jpeg")
    png = camera.capture(CaptureSettings(width=100, height=50, format="png"), 2.0)
    assert Image.open(io.BytesIO(png.data)).format == "PNG"


def test_capabilities_look_like_a_camera(camera):
    caps = camera.open()
    assert caps.sensor_size == (4608, 2592)
    assert {"Brightness", "Contrast", "Saturation", "AeEnable"} <= set(caps.controls)
    assert caps.controls["Brightness"].minimum == -1.0


def test_frames_differ_and_count(camera):
    first = shot(camera)
    time.sleep(0.3)  # the dot moves with time
    second = shot(camera)
    assert camera.frames == 2
    assert first.tobytes() != second.tobytes()


def test_hflip_mirrors_the_picture(camera):
    plain = camera.render(CaptureSettings(width=320, height=240), 1, _fixed_time())
    flipped = camera.render(CaptureSettings(width=320, height=240, hflip=True), 1, _fixed_time())
    # Colour bars: the left edge becomes the right edge.
    assert flipped.getpixel((319, 200)) == plain.getpixel((0, 200))
    vflipped = camera.render(CaptureSettings(width=320, height=240, vflip=True), 1, _fixed_time())
    assert vflipped.getpixel((5, 239)) == plain.getpixel((5, 0))


@pytest.mark.parametrize("control, value, measure", [
    ("Brightness", 0.5, lambda s: sum(s.mean)),
    ("Brightness", -0.5, lambda s: -sum(s.mean)),
    ("Contrast", 3.0, lambda s: sum(s.stddev)),
    ("ExposureValue", 2.0, lambda s: sum(s.mean)),
])
def test_controls_have_visible_effects(camera, control, value, measure):
    base = camera.render(CaptureSettings(width=320, height=240), 1, _fixed_time())
    changed = camera.render(CaptureSettings(width=320, height=240, controls={control: value}),
                            1, _fixed_time())
    assert measure(ImageStat.Stat(changed)) > measure(ImageStat.Stat(base))


def test_saturation_zero_is_grey(camera):
    grey = camera.render(CaptureSettings(width=64, height=48, controls={"Saturation": 0.0}),
                         1, _fixed_time())
    r, g, b = grey.getpixel((20, 10))
    assert r == g == b


def test_fail_rate_one_always_fails(camera):
    camera.fail_rate = 1.0
    with pytest.raises(CaptureFailed):
        shot(camera)


def test_hang_times_out_after_the_wait(camera):
    camera.hang = True
    started = time.monotonic()
    with pytest.raises(CaptureTimeout):
        camera.capture(CaptureSettings(width=64, height=48), 0.3)
    assert 0.25 <= time.monotonic() - started < 2.0


def test_delay_longer_than_timeout_is_a_timeout(camera):
    camera.delay_s = 5.0
    with pytest.raises(CaptureTimeout):
        camera.capture(CaptureSettings(width=64, height=48), 0.2)


def test_close_ends_a_hang_early(camera):
    camera.hang = True
    threading.Timer(0.2, camera.close).start()
    started = time.monotonic()
    with pytest.raises(CaptureTimeout):
        camera.capture(CaptureSettings(width=64, height=48), 10.0)
    assert time.monotonic() - started < 5.0


def test_missing_camera_does_not_open():
    mock = MockCamera(from_mapping({"camera": {"mock": {"missing": True}}})["camera"])
    with pytest.raises(CameraUnavailable):
        mock.open()


def _fixed_time():
    import datetime as dt
    return dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
