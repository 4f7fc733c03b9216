"""Motion detection on the picamera2 backend: the REAL picamera2 reads a lores YUV420
stream over the simulated libcamera (tests/simcam), whose world puts the mock camera's
scripted scene in front of the sensor (``scene``), so something moves."""
from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from conftest import ADMIN_PASSWORD, ServerProcess, wait_for
from picam_api.camera.base import CaptureSettings, VideoSettings
from test_pi_backend import TIMEOUT, decoded, streamed
from test_pi_video import VIDEO, check_mp4, recorded

MOTION = (320, 240)
# Across the middle band, left to right in 1.6 s, every 4 s.
SCENE = {"path": [[-0.15, 0.5], [1.15, 0.5]], "speed": 0.8, "size": 0.2, "repeat_s": 4.0}


def configuration(backend) -> dict:
    return backend._picam2.camera_configuration()


@pytest.mark.parametrize("sim", [{"platform": "vc4"}, {"platform": "pisp"}], indirect=True)
def test_motion_reads_the_y_plane_of_a_lores_stream_beside_main(sim, backend):
    assert configuration(backend)["lores"] is None
    first = backend.luma_frame(MOTION, TIMEOUT)
    config = configuration(backend)
    assert config["lores"]["size"] == MOTION and config["lores"]["format"] == "YUV420"
    assert config["main"]["size"] == (4608, 2592) and config["buffer_count"] == 1
    assert config["use_case"] == "still-4608x2592-lores-320x240"
    # One set of still buffers at a time: the full-size frame is 35 MiB.
    assert set(backend._picam2.allocator.buffer_dict) == {"still-4608x2592-lores-320x240"}
    # A Pi 5 pads YUV420 rows to 128 bytes: the plane is cut out of a 384-byte stride.
    assert config["lores"]["stride"] == (384 if sim.platform == "pisp" else 320)
    pixels = first.pixels
    assert pixels.shape == (240, 320) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous
    # The pattern's luma: the grey first bar of seven is bright, the blue last one dark.
    assert abs(int(pixels[100, 22]) - 192) < 20 and pixels[100, 297] < 50
    second = backend.luma_frame(MOTION, TIMEOUT)
    assert second.sequence == first.sequence + 1 and first.time < second.time <= time.time()
    backend.stop_luma()
    assert configuration(backend)["lores"] is None
    assert configuration(backend)["use_case"] == "still-4608x2592"
    assert set(backend._picam2.allocator.buffer_dict) == {"still-4608x2592"}


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"], "scene": SCENE}], indirect=True)
def test_the_scenes_object_shows_in_the_luma_frames(sim, backend):
    def object_in(frame) -> float:
        # The object's middle band, against the same band of the empty scene.
        return float(np.abs(frame.pixels[108:132].astype(int) - empty[108:132]).mean())

    sim.stage.start_s = 1e9  # not yet
    empty = backend.luma_frame(MOTION, TIMEOUT).pixels.astype(int)
    assert object_in(backend.luma_frame(MOTION, TIMEOUT)) < 8  # the frame counter at most
    sim.stage.start_s = sim.scene_time()  # it enters now, from the left
    wait_for(lambda: sim.stage.object_box(sim.scene_time(), *MOTION) is not None and
             object_in(backend.luma_frame(MOTION, TIMEOUT)) > 8, 10, "the object in lores")


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"]}], indirect=True)  # no focus wait
def test_stills_the_stream_and_clips_go_on_while_motion_reads(sim, backend, tmp_path):
    backend.luma_frame(MOTION, TIMEOUT)
    full = backend.capture(CaptureSettings(width=3280, height=2464), TIMEOUT)
    assert decoded(full.data).size == (3280, 2464)
    assert configuration(backend)["lores"]["size"] == MOTION
    # The live stream's lores, which its MJPEG encoder reads, serves motion too, scaled.
    live = streamed(width=640, height=480)
    assert decoded(backend.stream_frame(live, 15.0, TIMEOUT).data).size == (640, 480)
    assert configuration(backend)["lores"]["size"] == (640, 480)
    assert backend.luma_frame(MOTION, TIMEOUT).pixels.shape == (240, 320)
    assert decoded(backend.capture(CaptureSettings(width=320, height=240), TIMEOUT).data).size \
        == (320, 240)
    output = backend.file_output(str(tmp_path / "with-stream.mp4"))
    recording = backend.start_encoder(VIDEO, output)
    assert configuration(backend)["lores"]["size"] == (640, 480)
    assert backend.luma_frame(MOTION, TIMEOUT).pixels.shape == (240, 320)
    frames = {backend.stream_frame(live, 15.0, TIMEOUT).data for _ in range(2)}
    assert len(frames) == 2
    recorded(output, 0.5)
    backend.stop_encoder(recording)
    check_mp4(tmp_path / "with-stream.mp4", output)
    backend.stop_stream((640, 480))
    assert configuration(backend)["lores"]["size"] == MOTION  # motion's own again
    # A clip alone: its configuration carries motion's lores beside its main stream.
    output = backend.file_output(str(tmp_path / "clip.mp4"))
    recording = backend.start_encoder(VIDEO, output)
    config = configuration(backend)
    assert config["lores"]["size"] == MOTION and config["use_case"] == "record-640x480-320x240"
    before = backend.luma_frame(MOTION, TIMEOUT)
    assert backend.luma_frame(MOTION, TIMEOUT).sequence == before.sequence + 1
    recorded(output, 0.5)
    backend.stop_encoder(recording)
    check_mp4(tmp_path / "clip.mp4", output)
    backend.stop_luma()
    assert configuration(backend)["lores"] is None


@pytest.mark.parametrize("sim", [{"sensors": ["imx219"]}], indirect=True)
def test_beside_a_recording_without_lores_motion_reads_main_and_the_clip_goes_on(sim, backend,
                                                                                 tmp_path):
    # A pre-roll or a live H.264 encoder that started before motion: restarting it to
    # add lores would cut it, so motion's frames come from its main stream.
    output = backend.file_output(str(tmp_path / "clip.mp4"))
    recording = backend.start_encoder(VIDEO, output)
    assert configuration(backend)["lores"] is None
    frames = [backend.luma_frame(MOTION, TIMEOUT) for _ in range(2)]
    assert frames[1].sequence == frames[0].sequence + 1 and frames[0].time < frames[1].time
    pixels = frames[1].pixels
    assert pixels.shape == (240, 320) and pixels.flags.c_contiguous
    assert abs(int(pixels[100, 22]) - 192) < 20 and pixels[100, 297] < 50  # the same bars
    backend.stop_encoder(recording)  # restarts with the lores motion asked for
    assert configuration(backend)["lores"]["size"] == MOTION
    check_mp4(tmp_path / "clip.mp4", output)
    # A recording smaller than motion.size cannot carry lores (no larger than main).
    tiny = VideoSettings(width=160, height=120, fps=15.0, bitrate=500_000)
    output = backend.file_output(str(tmp_path / "tiny.mp4"))
    recording = backend.start_encoder(tiny, output)
    assert configuration(backend)["lores"] is None
    assert backend.luma_frame(MOTION, TIMEOUT).pixels.shape == (240, 320)
    recorded(output, 0.5)
    backend.stop_encoder(recording)
    check_mp4(tmp_path / "tiny.mp4", output, size=(160, 120))


def test_motion_over_http_on_the_simulated_pi(tmp_path, monkeypatch):
    import simcam

    for name, value in simcam.environ({}, sensors=["imx219"], scene=SCENE).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PICAM_CAMERA_BACKEND", "picamera2")
    # The simulator's frame counter is an overlay, masked as one would mask a clock.
    server = ServerProcess(tmp_path, '[motion]\ncooldown_s = 0.0\nend_after_s = 0.6\n'
                           'masks = [{x = 0.6, y = 0.9, w = 0.4, h = 0.1}]\n'
                           'on_start = [{action = "photo", settings = {width = 320, height = 240}}]\n'
                           ).start()
    api = server.url + "/api/v1"
    try:
        with requests.Session() as http:
            http.auth = ("admin", ADMIN_PASSWORD)
            changed = http.patch(api + "/motion", json={"enabled": True}, timeout=60)
            assert changed.status_code == 200, changed.text
            status = wait_for(lambda: (body := http.get(api + "/motion", timeout=30).json())
                              ["counters"]["events"] >= 2 and body, 40, "two motion events")
            assert status["state"] == "running" and status["last_error"] is None
            start = next(e for e in status["events"] if e["type"] == "motion.start")
            # The object's band, y 0.4-0.6 of the frame.
            assert start["bbox"]["y"] == pytest.approx(0.4, abs=0.05) and start["bbox"]["h"] <= 0.25
            photos = wait_for(lambda: [p for p in http.get(api + "/photos", timeout=30).json()
                                       ["items"] if p["source"] == "motion"], 30,
                              "a photo with source motion")
            assert (photos[0]["width"], photos[0]["height"]) == (320, 240)
            assert http.post(api + "/photos", json={}, timeout=60).status_code == 201
            preview = http.get(api + "/motion/preview.jpg", timeout=30)
            assert preview.status_code == 200 and decoded(preview.content).size == MOTION
    finally:
        server.stop()
