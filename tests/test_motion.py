"""Motion detection end to end: a real server over HTTP and SSE, PIR AND motion on
gpiozero's MockFactory, actions, hours, the config's checks, and a backend without luma frames."""
from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import textwrap
import time

import pytest
import requests
from PIL import Image

from conftest import ADMIN_PASSWORD, ServerProcess, assert_problem, basic, wait_for
from picam_api.camera.base import CameraBackend, Capabilities, Capture
from picam_api.config import from_mapping
from picam_api.errors import ConfigError
from sse import SseClient

ADMIN = basic("admin", ADMIN_PASSWORD)
# The object crosses the middle band left to right in 1.6 s, every 4 s.
SCENE = {"path": [[-0.15, 0.5], [1.15, 0.5]], "speed": 0.8, "size": 0.2, "repeat_s": 4.0,
         "noise": 3.0}
SCENE_TOML = ('[camera.mock]\nsensor = [640, 480]\n[camera.mock.scene]\n'
              'path = [[-0.15, 0.5], [1.15, 0.5]]\nspeed = 0.8\nsize = 0.2\nrepeat_s = 4.0\n'
              'noise = 3.0\n'
              '[motion]\nenabled = true\ncooldown_s = 0.0\nend_after_s = 0.6\n'
              'on_start = [{action = "photo", settings = {width = 320, height = 240}}]\n')


@pytest.fixture(autouse=True)
def no_factory_from_the_environment(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)


def motion_config(config: dict, **motion) -> dict:
    config["camera"]["mock"].update(sensor=[640, 480], scene=SCENE)
    config["motion"] = {"enabled": True, "cooldown_s": 0.0, "end_after_s": 0.6, **motion}
    return config


def next_of(sse: SseClient, kind: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        event = sse.next(max(0.1, deadline - time.monotonic()))
        if event["event"] == kind:
            return event["data"]["data"]


def test_motion_over_http_events_photo_preview_masks_and_a_restart(tmp_path):
    server = ServerProcess(tmp_path, SCENE_TOML).start()
    api = server.url + "/api/v1/motion"
    try:
        sse = SseClient(server.port, "/api/v1/events?types=motion.*", headers=ADMIN)
        assert sse.status == 200
        # A whole pass from the left edge (the first may have begun while the detector learnt).
        while (start := next_of(sse, "motion.start"))["bbox"]["x"] > 0.2:
            pass
        assert set(start) >= {"event", "score", "area_pct", "bbox", "frame_time"}
        assert start["score"] >= 1 and start["area_pct"] >= 0.5
        assert dt.datetime.fromisoformat(start["frame_time"]).tzinfo is not None
        bbox = start["bbox"]
        # The object's band: y 0.4-0.6 of the frame.
        assert bbox["y"] == pytest.approx(0.4, abs=0.05) and bbox["h"] <= 0.25
        end = next_of(sse, "motion.end")
        assert end["event"] == start["event"] and end["duration_s"] > 0 and end["frames"] >= 2, (start, end)
        status = requests.get(api, headers=ADMIN, timeout=5).json()
        assert status["enabled"] is True and status["state"] == "running"
        assert status["counters"]["events"] >= 1 and status["events"][0]["type"] in (
            "motion.start", "motion.end")
        assert status["cpu"]["detect_ms"] > 0 and 0 < status["cpu"]["percent_of_core"] < 100
        assert status["links"]["preview"] == "/api/v1/motion/preview.jpg"
        # The on_start action: a photo with source motion.
        photos = wait_for(lambda: [p for p in requests.get(
            server.url + "/api/v1/photos", headers=ADMIN, timeout=5).json()["items"]
            if p["source"] == "motion"], what="a photo with source motion")
        assert photos[0]["trigger"] == "motion" and photos[0]["width"] == 320
        preview = requests.get(server.url + "/api/v1/motion/preview.jpg", headers=ADMIN, timeout=5)
        assert preview.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(preview.content)).size == (320, 240)
        # A mask over the object's band hides it for a whole pass, and no longer once lifted.
        changed = requests.patch(api, headers=ADMIN, timeout=5, json={
            "masks": [{"x": 0, "y": 0.3, "w": 1, "h": 0.4}], "sensitivity": 70})
        assert changed.status_code == 200 and changed.json()["masks"][0]["h"] == 0.4
        sse.sock.close()
        time.sleep(1.5)  # the detector learns the scene again under its new mask
        before = requests.get(api, headers=ADMIN, timeout=5).json()["counters"]
        time.sleep(4.5)  # more than a whole pass of the object
        after = requests.get(api, headers=ADMIN, timeout=5).json()["counters"]
        assert after["frames"] >= before["frames"] + 15
        assert (after["events"], after["moving_frames"]) == (before["events"], before["moving_frames"])
        sse = SseClient(server.port, "/api/v1/events?types=motion.start", headers=ADMIN)
        assert requests.patch(api, headers=ADMIN, json={"masks": []}, timeout=5).status_code == 200
        next_of(sse, "motion.start", timeout=8)
        sse.sock.close()
        # Bad tuning is a 422 naming the field.
        assert_problem(requests.patch(api, headers=ADMIN, timeout=5, json={
            "masks": [{"x": 0.5, "y": 0, "w": 0, "h": 0.1}]}), 422, "masks.0.w")
        assert_problem(requests.patch(api, headers=ADMIN, timeout=5, json={"sensitivity": 0}),
                       422, "sensitivity")
        assert_problem(requests.patch(api, headers=ADMIN, timeout=5, json={"enabled": "yes"}),
                       422, "enabled")
        assert requests.get(api, timeout=5).status_code == 401
        # The tuning survives a restart.
        assert server.stop() == 0
        server.start()
        assert requests.get(api, headers=ADMIN, timeout=5).json()["sensitivity"] == 70
    finally:
        server.stop()


def test_a_viewer_reads_but_cannot_tune(client, viewer_headers):
    assert client.get("/api/v1/motion", headers=viewer_headers).status_code == 200
    assert client.get("/api/v1/motion/preview.jpg", headers=viewer_headers).status_code == 200
    assert_problem(client.patch("/api/v1/motion", headers=viewer_headers, json={"enabled": True}),
                   403)


def test_switching_off_stops_reading_frames(make_app, config, admin_headers):
    app = make_app(motion_config(config))
    services, client = app.extensions["picam"], app.test_client()
    wait_for(lambda: services.backend.luma_frames > 5, what="frames read")
    body = client.patch("/api/v1/motion", headers=admin_headers, json={"enabled": False}).json
    assert body["enabled"] is False
    wait_for(lambda: client.get("/api/v1/motion", headers=admin_headers).json["state"] == "off")
    read = services.backend.luma_frames
    time.sleep(1.0)
    assert services.backend.luma_frames == read


def test_pir_and_motion_fires_only_with_the_pin_active_and_runs_the_actions(
        make_app, config, admin_headers):
    config["gpio"] = {"devices": [{"name": "pir", "pin": 27, "kind": "input"},
                                  {"name": "lamp", "pin": 17, "kind": "led"}]}
    app = make_app(motion_config(
        config, require_input="pir", require_window_s=0.5,
        on_start=[{"action": "output", "device": "lamp", "value": 1, "for_s": 0.5},
                  {"action": "timelapse", "timelapse": "garden", "state": "paused"}],
        on_end=[{"action": "timelapse", "timelapse": "garden", "state": "running"}]))
    services, client = app.extensions["picam"], app.test_client()
    job = client.post("/api/v1/timelapses", headers=admin_headers,
                      json={"name": "garden", "interval_s": 60, "frames": 10,
                            "width": 320, "height": 240}).json
    status = lambda: client.get("/api/v1/motion", headers=admin_headers).json  # noqa: E731
    # Motion with the PIR quiet: seen, not confirmed, no event, the lamp stays off.
    wait_for(lambda: status()["counters"]["unconfirmed"] >= 1, timeout=15,
             what="motion seen without the PIR")
    assert status()["counters"]["events"] == 0
    assert services.gpio.devices["lamp"].device.value == 0
    services.gpio.factory.pin("GPIO27").drive_high()
    start = wait_for(lambda: [e for e in status()["events"] if e["type"] == "motion.start"],
                     timeout=15, what="motion.start with the PIR active")[0]
    assert start["input"] == "pir"
    wait_for(lambda: client.get(f"/api/v1/timelapses/{job['id']}",
                                headers=admin_headers).json["state"] == "paused",
             what="the time-lapse paused by on_start")
    wait_for(lambda: services.gpio.devices["lamp"].device.value == 1 or
             services.gpio.devices["lamp"].writes >= 2, what="the lamp switched on")
    wait_for(lambda: services.gpio.devices["lamp"].device.value == 0, what="the lamp off after for_s")
    wait_for(lambda: client.get(f"/api/v1/timelapses/{job['id']}",
                                headers=admin_headers).json["state"] == "running",
             timeout=15, what="the time-lapse resumed by on_end")
    assert status()["counters"]["action_failures"] == 0


def test_outside_its_hours_detection_reads_no_frame(make_app, config, admin_headers):
    now = dt.datetime.now()
    later = [(now + dt.timedelta(hours=h)).strftime("%H:%M") for h in (2, 3)]
    app = make_app(motion_config(config, active_hours={"start": later[0], "end": later[1]}))
    services, client = app.extensions["picam"], app.test_client()
    wait_for(lambda: client.get("/api/v1/motion", headers=admin_headers).json["state"]
             == "outside_hours")
    time.sleep(0.6)
    assert services.backend.luma_frames == 0
    body = client.get("/api/v1/motion", headers=admin_headers).json
    assert body["active_hours"] == {"start": later[0], "end": later[1]}


class StillsOnly(CameraBackend):
    """A backend with the required methods only, as the picamera2 backend is today."""

    name = "stills-only"

    def open(self):
        return Capabilities("stills only", (640, 480), {})

    def close(self):
        pass

    def capture(self, settings, timeout):
        return Capture(b"", settings.width, settings.height, settings.format)


def test_a_backend_without_luma_frames_says_what_motion_needs(make_app, config, admin_headers):
    app = make_app(config)
    services = app.extensions["picam"]
    services.owner.close()
    services.owner.backend = StillsOnly()
    problem = assert_problem(app.test_client().patch("/api/v1/motion", headers=admin_headers,
                                                     json={"enabled": True}), 409)
    assert "motion needs small luma frames" in problem["detail"]
    assert "stills-only" in problem["detail"]
    body = app.test_client().get("/api/v1/motion", headers=admin_headers).json
    assert body["enabled"] is False


@pytest.mark.parametrize("motion, message", [
    ({"require_input": "pir"}, "motion.require_input: must name a GPIO input"),
    ({"on_start": [{"action": "output", "device": "nope"}]}, "motion.on_start: device must name"),
    ({"on_end": {"action": "fly"}}, "motion.on_end: action must be one of"),
    ({"active_hours": {"start": "sunset", "end": "sunrise"}}, "follows the sun"),
    ({"active_hours": {"start": "07:00", "end": ""}}, "give both start and end"),
    ({"active_hours": {"start": "7am", "end": "19:00"}}, "motion.active_hours"),
    ({"masks": [{"x": 0, "y": 0, "w": 2, "h": 1}]}, "motion.masks: 0.w"),
    ({"size": [300, 240]}, "motion.size"),
    ({"fps": 0}, "motion.fps"),
])
def test_bad_motion_config_is_one_clear_line(motion, message):
    with pytest.raises(ConfigError) as caught:
        from_mapping({"motion": motion})
    assert message in str(caught.value)


def test_the_config_checks_motion_without_importing_the_layers_above_it():
    # Masks and hours are ruled on in picam_api.motion_rules and day_times, below the
    # config, which the motion and time-lapse packages import in turn.
    code = textwrap.dedent("""
        import sys
        from picam_api.config import from_mapping
        config = from_mapping({
            "location": {"latitude": 52.5, "longitude": 13.4},
            "gpio": {"devices": [{"name": "pir", "pin": 27, "kind": "input"}]},
            "motion": {"masks": [{"points": [[0, 0], [1, 0], [0, 1]]}], "require_input": "pir",
                       "active_hours": {"start": "sunset-30m", "end": "07:00"},
                       "on_start": [{"action": "photo"}]}})
        assert config["motion"]["masks"] == [{"points": [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]}]
        services = ("motion", "timelapse", "gpio", "video", "mqtt", "webhooks", "api", "app")
        print(sorted(name for name in sys.modules if name.startswith("picam_api.")
                     and name.split(".")[1] in services))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
