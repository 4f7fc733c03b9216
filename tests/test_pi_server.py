"""``picam-api serve`` on the picamera2 backend over the simulated Camera Module 3 (tests/simcam)."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import time

import piexif
import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, ServerProcess, assert_problem, ffprobe, mp4_boxes, wait_for
from webrtc_viewer import Viewer, nal_units, received_h264, sps_profile

PREROLL_TOML = ('[video]\nwidth = 640\nheight = 480\nfps = 15.0\nkeyframe_s = 0.5\n'
                'preroll_s = 1.0\n')


@pytest.fixture
def pi_server(request, tmp_path, monkeypatch):
    """``picam-api serve`` on the simulated imx708; parametrise with (sensor, extra TOML)
    or (sensor, extra TOML, other simcam.World fields)."""
    import simcam

    sensor, extra_toml, *world = getattr(request, "param", ("imx708", ""))
    for name, value in simcam.environ({}, sensors=[sensor], **(world[0] if world else {})).items():
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


# Live and clips at one rate, and keyframes 10 s apart, so a viewer that starts
# sooner does so at a keyframe it asked for.
SHARED_TOML = '[video]\nfps = 15.0\n{video}[stream.h264]\nfps = 15.0\ngop = 10.0\n'


def mp4_slices(path) -> set[bytes]:
    """The coded slices (NAL types 1 and 5) of an MP4's H.264 samples (4-byte lengths)."""
    import av

    slices = set()
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            data, offset = bytes(packet), 0
            while offset + 4 <= len(data):
                size = int.from_bytes(data[offset:offset + 4], "big")
                nal = data[offset + 4:offset + 4 + size]
                offset += 4 + size
                if nal and nal[0] & 0x1F in (1, 5):
                    slices.add(nal)
    return slices


@pytest.mark.parametrize("pi_server, size", [
    # A Pi 4: the V4L2 codec; the live size is the first of stream.sizes.
    (("imx219", SHARED_TOML.format(video="width = 640\nheight = 480\n")), (640, 480)),
    # A Pi 5: libav in software; the live size is 1280x720, as the clip's default.
    (("imx219", SHARED_TOML.format(video=""), {"platform": "pisp"}), (1280, 720)),
], indirect=["pi_server"], ids=["pi4-v4l2", "pi5-libav"])
def test_webrtc_viewers_and_a_clip_share_one_constrained_baseline_encoder(pi_server, size,
                                                                          tmp_path):
    url = pi_server.url + "/api/v1"
    admin = ("admin", ADMIN_PASSWORD)

    def finished(location):
        body = requests.get(pi_server.url + location, auth=admin, timeout=30).json()
        return body if body["state"] not in ("queued", "recording") else None

    async def watch():
        first, second = Viewer(url + "/stream/whep"), Viewer(url + "/stream/whep")
        try:
            assert (await first.connect()).status_code == 201, first.response.text
            before = await first.frames(5)
            await asyncio.sleep(1.0)  # mid-GOP: the next regular keyframe is 9 s away
            joined = time.monotonic()
            assert (await second.connect()).status_code == 201, second.response.text
            await second.frames(1)
            waited = time.monotonic() - joined
            clip = await asyncio.to_thread(requests.post, url + "/videos", auth=admin,
                                           json={"duration_s": 1.0}, timeout=30)
            assert clip.status_code == 202, clip.text
            during = await first.frames(20)  # while the clip records
            video = await asyncio.to_thread(wait_for, lambda: finished(clip.headers["Location"]),
                                            30, "the clip")
            return before + during, waited, video
        finally:
            await first.close()
            await second.close()

    with received_h264() as units:
        frames, waited, video = asyncio.run(watch())
    assert {(frame.width, frame.height) for frame in frames} == {size}
    assert waited < 5.0, f"the second viewer waited {waited:.1f} s for a keyframe"
    nals = [nal for unit in units for nal in nal_units(unit)]
    profiles = {sps_profile(nal) for nal in nals if nal[0] & 0x1F == 7}
    assert profiles == {(66, True)}  # constrained baseline, what browsers negotiate
    assert video["state"] == "ready", video
    path = tmp_path / "clip.mp4"
    path.write_bytes(requests.get(pi_server.url + video["links"]["video"], auth=admin,
                                  timeout=30).content)
    probe = ffprobe(path)
    assert (probe["codec_name"], probe["profile"], probe["width"], probe["height"]) == \
        ("h264", "Constrained Baseline", *size)
    assert probe["frames"] == video["frames"] and 0.9 <= probe["duration"] <= 1.5, probe
    # One encode: the clip's slices are the very bytes the viewers were sent.
    clip, sent = mp4_slices(path), {nal for nal in nals if nal[0] & 0x1F in (1, 5)}
    assert len(clip & sent) >= 0.8 * len(clip), (len(clip & sent), len(clip))
    h264 = requests.get(url + "/info", auth=admin, timeout=30).json()["h264"]
    assert h264["encoders_started"] == 1


def clip_finished(server, location):
    body = requests.get(server.url + location, auth=("admin", ADMIN_PASSWORD), timeout=30).json()
    return body if body["state"] not in ("queued", "recording") else None


# A Pi 4 (the V4L2 codec); tests/test_pi_video.py restarts a Pi 5's libav encoder.
@pytest.mark.parametrize("pi_server", [("imx219", SHARED_TOML.format(video=""))], indirect=True)
def test_a_clip_of_another_size_restarts_the_encoder_and_the_webrtc_viewer_follows_it(
        pi_server, tmp_path):
    url = pi_server.url + "/api/v1"
    live, clip = (640, 480), (1280, 720)

    async def watch():
        viewer = Viewer(url + "/stream/whep")
        try:
            assert (await viewer.connect()).status_code == 201, viewer.response.text
            arrived = []  # (when, size) of every decoded frame

            async def until(done) -> None:
                while not done():
                    frame = (await viewer.frames(1))[0]
                    arrived.append((time.monotonic(), (frame.width, frame.height)))

            await until(lambda: len(arrived) >= 5)
            created = await asyncio.to_thread(
                requests.post, url + "/videos", auth=("admin", ADMIN_PASSWORD), timeout=30,
                json={"duration_s": 1.0, "width": clip[0], "height": clip[1]})
            assert created.status_code == 202, created.text
            finished = asyncio.create_task(asyncio.to_thread(
                wait_for, lambda: clip_finished(pi_server, created.headers["Location"]), 30,
                "the clip"))
            await until(finished.done)
            after = len(arrived)
            await until(lambda: len(arrived) >= after + 5)
            return arrived, await finished
        finally:
            await viewer.close()

    arrived, video = asyncio.run(watch())
    sizes = [size for _, size in arrived]
    assert [s for i, s in enumerate(sizes) if i == 0 or sizes[i - 1] != s] == [live, clip, live]
    gaps = [b - a for (a, _), (b, _) in zip(arrived, arrived[1:])]
    assert max(gaps) < 2.0, f"no frames for {max(gaps):.1f} s"
    assert video["state"] == "ready", video
    path = tmp_path / "clip.mp4"
    path.write_bytes(requests.get(pi_server.url + video["links"]["video"],
                                  auth=("admin", ADMIN_PASSWORD), timeout=30).content)
    probe = ffprobe(path)
    assert (probe["width"], probe["height"]) == clip and probe["frames"] == video["frames"]


@pytest.mark.parametrize("pi_server", [("imx219", PREROLL_TOML)], indirect=True)
def test_with_a_pre_roll_webrtc_shows_its_frames_at_any_live_size(pi_server):
    url = pi_server.url + "/api/v1"
    admin = ("admin", ADMIN_PASSWORD)
    wait_for(lambda: (requests.get(url + "/info", auth=admin, timeout=30).json()["video"]
                      .get("preroll") or {}).get("running"), 30, "the pre-roll")

    async def watch():
        viewer = Viewer(url + "/stream/whep?size=1280x720")
        try:
            response = await viewer.connect()
            return response, await viewer.frames(5) if response.status_code == 201 else []
        finally:
            await viewer.close(delete=False)

    response, frames = asyncio.run(watch())
    assert response.status_code == 201, response.text
    assert {(frame.width, frame.height) for frame in frames} == {(640, 480)}  # the pre-roll's
    encoders = requests.get(url + "/info", auth=admin, timeout=30).json()["h264"]["encoders"]
    assert [(e["size"], e["encoding"]) for e in encoders] == [("1280x720", "640x480")]
