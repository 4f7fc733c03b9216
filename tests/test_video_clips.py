"""Clips from the camera (the mock's libx264 encoder), pre-roll, GPIO triggers and limits.

Every mock video frame carries its frame number and the wall-clock time it was
drawn (``mock_video.stamp``); decoding a clip and reading them proves which
moments it holds, so a pre-roll is seen to start before its trigger.
"""
from __future__ import annotations

import time

import av
import pytest

from conftest import assert_problem, ffprobe, mp4_boxes, wait_for
from picam_api.camera.mock_video import read_stamp

VIDEO = {"width": 320, "height": 240, "fps": 15.0, "keyframe_s": 0.5, "max_duration_s": 20.0}


@pytest.fixture
def config(config):
    config["video"] = dict(VIDEO)
    return config


def post(client, headers, **body):
    return client.post("/api/v1/videos", headers=headers, json=body)


def finished(client, headers, video: dict, timeout: float = 30) -> dict:
    def done():
        body = client.get(video["links"]["self"], headers=headers).json
        return body if body["state"] not in ("queued", "rendering", "recording") else None
    return wait_for(done, timeout, "the clip to finish")


def saved(client, headers, video: dict, tmp_path):
    response = client.get(video["links"]["video"], headers=headers)
    assert response.status_code == 200, response.data[:200]
    path = tmp_path / f"{video['id']}.mp4"
    path.write_bytes(response.data)
    return response.data, path


def stamps(path) -> list[tuple[int, int]]:
    """(frame number, wall ms mod 2**32) of every frame of the clip."""
    with av.open(str(path)) as container:
        return [read_stamp(frame.to_ndarray(format="gray")) for frame in container.decode(video=0)]


def now_ms() -> int:
    return int(time.time() * 1000) % 2**32


def test_a_clip_is_an_h264_mp4_of_the_asked_length(client, admin_headers, tmp_path):
    response = post(client, admin_headers, duration_s=2, width=640, height=360, fps=20)
    assert response.status_code == 202 and response.json["state"] == "recording"
    assert response.json["source"] == "clip" and response.json["trigger"] is None
    video = finished(client, admin_headers, response.json)
    assert video["state"] == "ready", video
    assert (video["width"], video["height"], video["codec"]) == (640, 360, "h264")
    data, path = saved(client, admin_headers, video, tmp_path)
    assert mp4_boxes(data).index("moov") < mp4_boxes(data).index("mdat")
    probe = ffprobe(path)
    assert (probe["codec_name"], probe["pix_fmt"], probe["width"], probe["height"]) == \
        ("h264", "yuv420p", 640, 360)
    assert (probe["color_range"], probe["color_space"]) == ("tv", "bt470bg")
    assert probe["frames"] == video["frames"]
    # A loaded machine may skip a tick; never more than a few, and never a burst.
    assert 32 <= probe["frames"] <= 41
    assert probe["duration"] == pytest.approx(2.0, abs=0.25)
    assert probe["fps"] == pytest.approx(20, rel=0.2)
    assert video["duration_s"] == pytest.approx(probe["duration"], abs=0.1)
    numbers = [number for number, _ in stamps(path)]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    thumbnail = client.get(video["links"]["thumbnail"], headers=admin_headers)
    assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/jpeg"


def test_one_recording_at_a_time_and_cancel_keeps_nothing(client, admin_headers, services):
    first = post(client, admin_headers, duration_s=10)
    assert first.status_code == 202
    assert_problem(post(client, admin_headers, duration_s=1), 409)
    assert client.get("/api/v1/info", headers=admin_headers).json["video"]["recording"] is True
    time.sleep(0.5)
    cancelled = client.patch(first.json["links"]["self"], headers=admin_headers,
                             json={"state": "cancelled"})
    assert cancelled.status_code == 200
    video = finished(client, admin_headers, first.json)
    assert video["state"] == "cancelled" and video["bytes"] is None
    assert not list((services.data_dir / "videos").rglob("*.mp4"))
    assert not list((services.data_dir / "videos").rglob("*.tmp"))
    # The camera is free again.
    again = finished(client, admin_headers, post(client, admin_headers, duration_s=0.5).json)
    assert again["state"] == "ready"


def test_clip_limits_are_422(client, admin_headers):
    for body, field in (({"duration_s": 21}, "duration_s"),  # video.max_duration_s
                        ({"duration_s": 1, "width": 4000}, "width"),
                        ({"duration_s": 1, "width": 321}, "width"),
                        ({"duration_s": 1, "fps": 100}, "fps"),
                        ({"duration_s": 0}, "duration_s")):
        assert_problem(post(client, admin_headers, **body), 422, field)


def test_the_storage_reserve_refuses_and_ends_clips_leaving_nothing(client, admin_headers,
                                                                    services):
    reserve = services.photos.reserve_bytes
    services.photos.reserve_bytes = 2**62
    assert_problem(post(client, admin_headers, duration_s=2), 507)
    assert client.get("/api/v1/videos", headers=admin_headers).json["items"] == []
    services.photos.reserve_bytes = reserve
    recording = post(client, admin_headers, duration_s=10).json
    time.sleep(1.0)
    services.photos.reserve_bytes = 2**62  # the disk fills during the recording
    video = finished(client, admin_headers, recording)
    assert video["state"] == "failed" and "reserve" in video["last_error"]
    assert not list((services.data_dir / "videos").rglob("*.mp4"))
    assert not list((services.data_dir / "videos").rglob("*.tmp"))


def test_a_stalled_camera_fails_the_clip(client, admin_headers, services, mock_camera):
    recording = post(client, admin_headers, duration_s=10).json
    time.sleep(0.5)
    mock_camera.hang = True
    video = finished(client, admin_headers, recording, timeout=10)
    assert video["state"] == "failed" and "no frames" in video["last_error"]
    mock_camera.hang = False


def test_no_camera_is_a_503_and_no_video(make_app, config, admin_headers):
    config["camera"]["mock"]["missing"] = True
    client = make_app(config).test_client()
    response = post(client, admin_headers, duration_s=1)
    assert_problem(response, 503)
    assert response.headers["Retry-After"]
    assert client.get("/api/v1/videos", headers=admin_headers).json["items"] == []


def test_stills_and_the_mjpeg_stream_work_during_a_recording(client, admin_headers):
    recording = post(client, admin_headers, duration_s=3).json
    for _ in range(3):
        photo = client.post("/api/v1/photos", headers=admin_headers, json={"width": 320, "height": 240})
        assert photo.status_code == 201
    stream = client.get("/api/v1/stream.mjpg", headers=admin_headers)
    assert stream.status_code == 200
    chunks = stream.response
    first = b"".join(next(chunks) for _ in range(2))
    stream.close()
    assert b"image/jpeg" in first
    assert finished(client, admin_headers, recording)["state"] == "ready"


def test_preroll_clip_starts_before_its_trigger(make_app, config, admin_headers, tmp_path):
    config["video"]["preroll_s"] = 2.0
    app = make_app(config)
    client = app.test_client()

    def ring_full():
        preroll = client.get("/api/v1/info", headers=admin_headers).json["video"]["preroll"]
        return preroll if preroll["running"] and preroll["span_s"] >= 1.9 else None

    preroll = wait_for(ring_full, 15, "the pre-roll ring to fill")
    # Bounded, and reported: about 2 s of 15 fps frames.
    assert 25 <= preroll["frames"] <= 40 and 0 < preroll["bytes"] <= preroll["max_bytes"]
    trigger = now_ms()
    video = finished(client, admin_headers, post(client, admin_headers, duration_s=1.5).json)
    assert video["state"] == "ready", video
    assert video["options"]["preroll_s"] == 2.0
    _, path = saved(client, admin_headers, video, tmp_path)
    frames = stamps(path)
    first_ms, last_ms = frames[0][1], frames[-1][1]
    # It opens at the keyframe at or after t - 2 s (keyframes every 0.5 s) ...
    assert trigger - 2100 <= first_ms <= trigger - 1400
    # ... and runs on to t + 1.5 s.
    assert last_ms >= trigger + 1300
    numbers = [number for number, _ in frames]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # none lost
    probe = ffprobe(path)
    assert probe["codec_name"] == "h264" and probe["frames"] == len(frames)
    assert probe["duration"] == pytest.approx((last_ms - first_ms) / 1000, abs=0.15)
    # Clips with pre-roll come at the ring's size only.
    assert_problem(post(client, admin_headers, duration_s=1, width=640, height=480), 409)


def test_a_gpio_trigger_records_a_clip(make_app, config, admin_headers, tmp_path, monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    config["gpio"] = {"devices": [{"name": "doorbell", "pin": 27, "kind": "button",
                                   "on_press": {"action": "video", "duration_s": 1}}]}
    app = make_app(config)
    client, gpio = app.test_client(), app.extensions["picam"].gpio
    pin = gpio.factory.pin(gpio.devices["doorbell"].pin)
    pin.drive_low()
    pin.drive_high()

    def clip():
        items = client.get("/api/v1/videos?source=clip", headers=admin_headers).json["items"]
        return items[0] if items and items[0]["state"] == "ready" else None

    video = wait_for(clip, 15, "the triggered clip")
    assert video["trigger"] == "doorbell" and video["source"] == "clip"
    _, path = saved(client, admin_headers, video, tmp_path)
    assert ffprobe(path)["frames"] >= 10
    # A second press during a recording is a failed trigger (409), counted on the device.
    pin.drive_low()
    pin.drive_high()
    wait_for(lambda: client.get("/api/v1/videos?source=clip", headers=admin_headers).json[
        "items"][0]["state"] != "ready", 5, "the second clip")
    pin.drive_low()
    pin.drive_high()
    device = wait_for(lambda: (lambda d: d if d["trigger_failures"] else None)(
        client.get("/api/v1/gpio/doorbell", headers=admin_headers).json), 5, "a trigger failure")
    assert "one recording at a time" in device["last_error"]


def test_a_gpio_clip_longer_than_the_limit_is_a_config_error(make_app, config):
    from picam_api.errors import ConfigError
    config["gpio"] = {"devices": [{"name": "pir", "pin": 23, "kind": "input",
                                   "on_active": {"action": "video", "duration_s": 60}}]}
    with pytest.raises(ConfigError, match="video.max_duration_s"):
        make_app(config)
