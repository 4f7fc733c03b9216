"""``picam-api serve`` on the picamera2 backend over the simulated Camera Module 3 (tests/simcam)."""
from __future__ import annotations

import asyncio
import datetime as dt
import io

import piexif
import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, ServerProcess, assert_problem, ffprobe, mp4_boxes, wait_for
from webrtc_viewer import Viewer

PREROLL_TOML = ('[video]\nwidth = 640\nheight = 480\nfps = 15.0\nkeyframe_s = 0.5\n'
                'preroll_s = 1.0\n')


@pytest.fixture
def pi_server(request, tmp_path, monkeypatch):
    """``picam-api serve`` on the simulated imx708; parametrise with (sensor, extra TOML)."""
    import simcam

    sensor, extra_toml = getattr(request, "param", ("imx708", ""))
    for name, value in simcam.environ({}, sensors=[sensor]).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PICAM_CAMERA_BACKEND", "picamera2")
    server = ServerProcess(tmp_path, extra_toml).start()
    yield server
    server.stop()


def test_a_photo_through_the_api_keeps_its_frames_metadata_and_exif(pi_server):
    with requests.Session() as http:
        http.auth = ("admin", ADMIN_PASSWORD)
        info = http.get(pi_server.url + "/api/v1/info", timeout=30).json()
        assert info["backend"] == "picamera2" and info["camera"]["model"] == "imx708"
        matrix = http.get(pi_server.url + "/api/v1/camera", timeout=30).json()[
            "capabilities"]["controls"]["ColourCorrectionMatrix"]
        assert (matrix["type"], matrix["array"], matrix["length"], matrix["min"]) == \
            ("number", True, 9, -8.0)
        created = http.post(pi_server.url + "/api/v1/photos", timeout=60,
                            json={"controls": {"ExposureTime": 12000, "AnalogueGain": 2.0}})
        assert created.status_code == 201, created.text
        photo = http.get(pi_server.url + created.headers["Location"], timeout=30).json()
        image = http.get(pi_server.url + photo["links"]["image"], timeout=30).content
    assert (photo["width"], photo["height"]) == (1920, 1080)  # the sensor's 16:9
    metadata = photo["metadata"]
    assert metadata["ExposureTime"] == pytest.approx(12000, rel=0.02)
    assert metadata["AnalogueGain"] == pytest.approx(2.0, rel=0.02)
    assert metadata["AfState"] == 2 and {"LensPosition", "FocusFoM", "Lux", "ColourTemperature",
                                         "DigitalGain", "SensorTimestamp"} <= set(metadata)
    assert Image.open(io.BytesIO(image)).size == (1920, 1080)
    exif = piexif.load(image)
    taken = dt.datetime.fromisoformat(photo["taken_at"].replace("Z", "+00:00"))
    assert exif["Exif"][piexif.ExifIFD.DateTimeOriginal] == taken.strftime("%Y:%m:%d %H:%M:%S").encode()
    assert exif["Exif"][piexif.ExifIFD.SubSecTimeOriginal] == f"{taken.microsecond // 1000:03d}".encode()
    assert exif["Exif"][piexif.ExifIFD.ExposureTime] == (metadata["ExposureTime"], 1_000_000)
    assert exif["0th"][piexif.ImageIFD.Model] == b"imx708"


@pytest.mark.parametrize("pi_server", [("imx219", PREROLL_TOML)], indirect=True)
def test_a_clip_through_the_api_starts_in_its_pre_roll_and_stills_go_on(pi_server, tmp_path):
    with requests.Session() as http:
        http.auth = ("admin", ADMIN_PASSWORD)
        url = pi_server.url + "/api/v1"
        wait_for(lambda: (http.get(url + "/info", timeout=30).json().get("video", {})
                          .get("preroll") or {}).get("span_s", 0) >= 0.9, 30, "a full pre-roll")
        created = http.post(url + "/videos", json={"duration_s": 1.0}, timeout=30)
        assert created.status_code == 202, created.text
        # The pre-roll's encoder holds the camera at 640x480: smaller stills work,
        # a full one is refused, saying what works.
        small = http.post(url + "/photos", json={"width": 320, "height": 240}, timeout=30)
        assert small.status_code == 201, small.text
        problem = assert_problem(http.post(url + "/photos", json={"width": 3280, "height": 2464},
                                           timeout=30), 503)
        assert "recording video at 640x480" in problem["detail"]
        def finished():
            body = http.get(pi_server.url + created.headers["Location"], timeout=30).json()
            return body if body["state"] not in ("queued", "recording") else None

        video = wait_for(finished, 30, "the clip")
        assert video["state"] == "ready", video
        data = http.get(pi_server.url + video["links"]["video"], timeout=30).content
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    boxes = mp4_boxes(data)
    assert boxes.index("moov") < boxes.index("mdat")
    probe = ffprobe(path)
    assert (probe["codec_name"], probe["pix_fmt"], probe["width"], probe["height"]) == \
        ("h264", "yuv420p", 640, 480)
    assert probe["frames"] == video["frames"]
    # 1 s asked for after a pre-roll that starts at a keyframe in the second before.
    assert 1.4 <= probe["duration"] <= 2.2, probe


def test_live_h264_over_webrtc_comes_from_picamera2s_encoder(pi_server):
    # The hub's fan-out is no picamera2 Output: the backend puts one in front of it.
    async def watch():
        viewer = Viewer(pi_server.url + "/api/v1/stream/whep")
        response = await viewer.connect()
        try:
            return response, await viewer.frames(10) if response.status_code == 201 else []
        finally:
            await viewer.close()

    response, frames = asyncio.run(watch())
    assert response.status_code == 201, response.text
    assert {(frame.width, frame.height) for frame in frames} == {(640, 480)}
    pictures = [frame.to_ndarray(format="gray") for frame in frames]
    assert all(picture.std() > 10 for picture in pictures)  # the simulator's test image
    h264 = requests.get(pi_server.url + "/api/v1/info", auth=("admin", ADMIN_PASSWORD),
                        timeout=30).json()["h264"]
    assert h264["encoders_started"] == 1
