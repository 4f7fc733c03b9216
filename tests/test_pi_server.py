"""``picam-api serve`` on the picamera2 backend over the simulated Camera Module 3 (tests/simcam)."""
from __future__ import annotations

import datetime as dt
import io

import piexif
import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, ServerProcess


@pytest.fixture
def pi_server(tmp_path, monkeypatch):
    import simcam

    for name, value in simcam.environ({}, sensors=["imx708"]).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PICAM_CAMERA_BACKEND", "picamera2")
    server = ServerProcess(tmp_path).start()
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
