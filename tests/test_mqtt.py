"""MQTT against a real Mosquitto (tests/broker.py): discovery checked by Home Assistant's
own schemas, state, events, every command good and bad, a broker restart, a dead
service's will, wrong credentials, and two nodes on one broker."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from broker import Broker, Subscriber
from conftest import ADMIN_PASSWORD, ServerProcess, basic, wait_for

ROOT = Path(__file__).parent.parent
HA_DIR = Path(__file__).parent / "ha"
DEVICES = [
    {"name": "led", "pin": 17, "kind": "led"},
    {"name": "lamp", "pin": 18, "kind": "pwm"},
    {"name": "pir", "pin": 27, "kind": "input", "device_class": "motion"},
    {"name": "door", "pin": 22, "kind": "button"},
]
ADMIN = basic("admin", ADMIN_PASSWORD)
SMALL = {"width": 320, "height": 240}


@pytest.fixture(autouse=True)
def no_factory_from_the_environment(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)


@pytest.fixture
def broker(tmp_path):
    root = tmp_path / "broker"
    root.mkdir()
    broker = Broker(root).start()
    yield broker
    broker.stop()


@pytest.fixture
def ha(broker):
    subscriber = Subscriber(broker)
    yield subscriber
    subscriber.close()


@pytest.fixture
def node(make_app, config, broker, ha):
    """An app on the broker as node1, with an LED, a pwm lamp, a PIR and a button."""
    config["mqtt"] = broker.config()
    config["gpio"] = {"devices": DEVICES}
    app = make_app(config)
    wait_for(lambda: ha.last("picam/node1/availability"), what="node1 online")
    yield app
    services_of(app).shutdown()  # before the broker stops


@pytest.fixture
def client(node):
    """The node's own client (conftest's would build a second app, a second client id)."""
    return node.test_client()


def services_of(app):
    return app.extensions["picam"]


def result(ha, request_id: str) -> dict:
    """The answer on cmd/result to the command sent with ``request_id``."""
    def find():
        for message in ha.on("picam/+/cmd/result"):
            body = json.loads(message.payload)
            if body["request_id"] == request_id:
                return body
    return wait_for(find, what=f"the result of {request_id}")


def configs(ha, node: str = "node1") -> dict[str, dict]:
    """The retained discovery configs of ``node`` as the subscriber last saw them."""
    latest = {}
    for message in ha.on(f"homeassistant/+/{node}/+/config"):
        latest[message.topic] = json.loads(message.payload) if message.payload else None
    return {topic: payload for topic, payload in latest.items() if payload is not None}


# -- Home Assistant's own schemas ---------------------------------------------------------


def _python_313() -> str:
    """A Python 3.13 for .venv-ha: $PICAM_HA_PYTHON, python3.13 on PATH, or pyenv's."""
    found = [os.environ.get("PICAM_HA_PYTHON"),
             *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))),
             shutil.which("python3.13")]
    for python in filter(None, found):
        if "/shims/" not in python:  # pyenv's shim answers "command not found" off its version
            return python
    pytest.fail("checking discovery needs Python 3.13 for homeassistant (set PICAM_HA_PYTHON)")


@pytest.fixture(scope="session")
def ha_python() -> str:
    """.venv-ha's python, with homeassistant's MQTT platforms (made once, then reused)."""
    venv = ROOT / ".venv-ha"
    requirements = HA_DIR / "requirements.txt"
    stamp = venv / f".installed-{hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]}"
    if not stamp.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([_python_313(), "-m", "venv", str(venv)], check=True)
        # --no-deps: the file pins every distribution the import needs; --no-compile:
        # homeassistant is thousands of modules, of which the check imports a few.
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--no-compile", "-r", str(requirements)], check=True,
                       timeout=900)
        stamp.touch()
    return str(venv / "bin" / "python")


def ha_rejects(ha_python: str, messages: dict[str, dict]) -> dict[str, str]:
    """What Home Assistant's discovery refuses or ignores in ``messages`` ({} if nothing)."""
    request = {"prefix": "homeassistant",
               "messages": [[topic, json.dumps(payload)] for topic, payload in messages.items()]}
    checked = subprocess.run([ha_python, str(HA_DIR / "validate.py")], input=json.dumps(request),
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    verdicts = json.loads(checked.stdout)
    assert set(verdicts) == set(messages)
    return {topic: why for topic, why in verdicts.items() if why}


def test_the_validator_catches_what_home_assistant_refuses(ha_python):
    bad = {"homeassistant/switch/n1/a/config": {"name": "a", "command_topic": "x/+"},
           "homeassistant/sensor/n1/b/config": {"name": "b", "state_topic": "s", "stat_cla": "x"},
           "homeassistant/button/n1/c/config": {"name": "c", "command_topic": "x", "cmd_tpl": "{{"},
           "homeassistant/button/n1/d.e/config": {"name": "d", "command_topic": "x"},
           "homeassistant/button/n1/f/config": {"name": "f", "command_topic": "x", "typo_t": "y"}}
    assert set(ha_rejects(ha_python, bad)) == set(bad)
    good = {"homeassistant/button/n1/g/config": {"name": "g", "~": "p/n1", "cmd_t": "~/cmd"}}
    assert ha_rejects(ha_python, good) == {}


def test_discovery_is_one_device_that_home_assistant_accepts(node, ha, ha_python, client):
    services = services_of(node)
    job = client.post("/api/v1/timelapses", headers=ADMIN,
                      json={"name": "garden", "interval_s": 60, "frames": 10, **SMALL}).json
    sensor = f"homeassistant/sensor/node1/timelapse_{job['id']}/config"
    found = wait_for(lambda: configs(ha).get(sensor), what="the time-lapse's progress sensor")
    assert found["unit_of_measurement"] == "%"
    assert found["state_topic"] == f"picam/node1/state/timelapse/{job['id']}"
    messages = configs(ha)
    assert ha_rejects(ha_python, messages) == {}
    by_component = {}
    for topic, payload in messages.items():
        by_component.setdefault(topic.split("/")[1], []).append(payload)
    assert {k: len(v) for k, v in by_component.items()} == {
        "camera": 1, "button": 1, "binary_sensor": 3, "sensor": 4, "switch": 1, "light": 1,
        "device_automation": 5}  # pir: active/inactive; door: press/release/hold
    model = services.owner.capabilities.model
    devices = {json.dumps(payload["device"], sort_keys=True) for payload in messages.values()}
    assert len(devices) == 1
    device = json.loads(devices.pop())
    assert device["identifiers"] == ["picam_node1"] and device["model"] == model
    assert device["sw_version"] and device["configuration_url"].startswith("http://")
    pir = messages["homeassistant/binary_sensor/node1/gpio_pir/config"]
    assert pir["device_class"] == "motion" and pir["state_topic"] == "picam/node1/state/gpio/pir"
    assert "device_class" not in messages["homeassistant/binary_sensor/node1/gpio_door/config"]
    assert messages["homeassistant/light/node1/gpio_lamp/config"]["brightness_command_topic"] == \
        "picam/node1/cmd/gpio/lamp"
    assert messages["homeassistant/camera/node1/snapshot/config"]["topic"] == "picam/node1/snapshot"
    unique = [payload["unique_id"] for payload in messages.values() if "unique_id" in payload]
    assert len(unique) == len(set(unique))


def test_state_events_and_snapshot(node, ha, client):
    services = services_of(node)
    assert ha.json("picam/node1/state/camera")["usable"] is True
    photo = client.post("/api/v1/photos", headers=ADMIN, json=SMALL).json
    event = wait_for(lambda: ha.json("picam/node1/events/photo.created"), what="photo.created")
    assert event["data"]["id"] == photo["id"] and event["type"] == "photo.created"
    wait_for(lambda: (ha.json("picam/node1/state/storage") or {}).get("photos") == 1)
    storage = ha.json("picam/node1/state/storage")
    assert storage["last_photo_id"] == photo["id"] and storage["free_bytes"] > 0
    snapshot = wait_for(lambda: ha.last("picam/node1/snapshot"), what="the snapshot")
    assert snapshot.payload[:2] == b"\xff\xd8"
    assert snapshot.payload == client.get(photo["links"]["image"], headers=ADMIN).data
    # An edge on the PIR's pin: its state, retained, and the events.
    services.gpio.factory.pin("GPIO27").drive_high()
    wait_for(lambda: (ha.json("picam/node1/state/gpio/pir") or {}).get("value") == 1,
             what="the PIR's state")
    changed = wait_for(lambda: ha.json("picam/node1/events/gpio.changed"))
    assert changed["data"]["name"] == "pir"
    triggered = wait_for(lambda: ha.json("picam/node1/events/gpio.triggered"))
    assert triggered["data"] == {"name": "pir", "kind": "input", "event": "on_active",
                                 "result": "none"}
    # A time-lapse is in state/ while it runs, and gone when it ends.
    job = client.post("/api/v1/timelapses", headers=ADMIN,
                      json={"interval_s": 0.5, "frames": 2, **SMALL}).json
    topic = f"picam/node1/state/timelapse/{job['id']}"
    wait_for(lambda: ha.last(topic), what="the time-lapse's state")
    wait_for(lambda: ha.last(topic).payload == b"", what="the finished job's state to clear")
    states = [json.loads(m.payload) for m in ha.on(topic) if m.payload]
    assert states[-1]["frames_captured"] == 2 and states[-1]["progress"] == 100.0


def http_answer(client, method: str, path: str, body) -> dict:
    response = client.open(path, method=method, headers=ADMIN, data=json.dumps(body),
                           content_type="application/json")
    return response.json


def test_every_command_answers_as_the_http_api(node, ha, client):
    client.post("/api/v1/timelapses", headers=ADMIN,
                json={"name": "garden", "interval_s": 60, "frames": 10, **SMALL})
    cases = [
        # (topic suffix, payload, status, HTTP route for the same body or None)
        ("photo", {"width": 320, "height": 240, "quality": 50}, 201, None),
        ("photo", {}, 201, None),
        ("photo", {"width": "wide"}, 422, ("POST", "/api/v1/photos")),
        ("photo", {"flash": True}, 422, ("POST", "/api/v1/photos")),
        ("photo", {"controls": {"NoSuchControl": 1}}, 422, ("POST", "/api/v1/photos")),
        ("video", {"duration_s": 1, "width": 320, "height": 240, "fps": 10}, 202, None),
        ("video", {"duration_s": -1}, 422, ("POST", "/api/v1/videos")),
        ("timelapse/garden", {"state": "paused"}, 200, None),
        ("timelapse/garden", {"state": "running"}, 200, None),
        ("timelapse/garden", {"state": "asleep"}, 422, None),
        ("timelapse/no-such-job", {"state": "paused"}, 404, None),
        ("gpio/led", {"value": 1}, 200, None),
        ("gpio/led", {"toggle": True}, 200, None),
        ("gpio/led", {"blink": {"on_time": 0.1, "off_time": 0.1, "n": 2}}, 200, None),
        ("gpio/lamp", {"value": 0.5}, 200, None),
        ("gpio/lamp", {"pulse": {}}, 200, None),
        ("gpio/led", {"value": 0.5}, 422, ("PATCH", "/api/v1/gpio/led")),
        ("gpio/led", {"value": 1, "toggle": True}, 422, ("PATCH", "/api/v1/gpio/led")),
        ("gpio/led", {"pulse": {}}, 422, ("PATCH", "/api/v1/gpio/led")),
        ("gpio/pir", {"value": 1}, 409, ("PATCH", "/api/v1/gpio/pir")),
        ("gpio/nothing", {"value": 1}, 404, ("PATCH", "/api/v1/gpio/nothing")),
        ("selfdestruct", {}, 404, None),
    ]
    for n, (suffix, payload, status, route) in enumerate(cases):
        ha.send(f"picam/node1/cmd/{suffix}", {**payload, "request_id": f"case-{n}"})
    for n, (suffix, payload, status, route) in enumerate(cases):
        answer = result(ha, f"case-{n}")
        assert answer["command"] == suffix
        if status < 300:
            assert answer["ok"] is True, (suffix, payload, answer)
            assert answer["status"] == status, (suffix, payload, answer)
            continue
        assert answer["ok"] is False and answer["problem"]["status"] == status, (suffix, payload, answer)
        if route:
            assert answer["problem"] == http_answer(client, *route, payload), (suffix, payload)
    assert client.get("/api/v1/timelapses?limit=1", headers=ADMIN).json["items"][0]["state"] \
        == "running"  # paused, then resumed
    # The payload itself: not JSON, too large, a bad request_id.
    ha.send("picam/node1/cmd/photo", b"{not json")
    ha.send("picam/node1/cmd/photo", {"request_id": 7})
    ha.send("picam/node1/cmd/photo", json.dumps({"request_id": "big", "pad": "x" * 70_000}))
    wait_for(lambda: len([m for m in ha.on("picam/node1/cmd/result")
                          if json.loads(m.payload)["request_id"] is None]) == 3)
    answers = [json.loads(m.payload) for m in ha.on("picam/node1/cmd/result")
               if json.loads(m.payload)["request_id"] is None]
    assert sorted(a["problem"]["status"] for a in answers) == [400, 413, 422]
    assert services_of(node).mqtt.status()["connected"] is True


def test_a_redelivered_command_runs_once(node, ha, client):
    for _ in range(3):
        ha.send("picam/node1/cmd/photo", {"request_id": "once", **SMALL})
    wait_for(lambda: len([m for m in ha.on("picam/node1/cmd/result")]) == 3)
    answers = [json.loads(m.payload) for m in ha.on("picam/node1/cmd/result")]
    assert all(a == answers[0] for a in answers) and answers[0]["ok"]
    assert len(client.get("/api/v1/photos", headers=ADMIN).json["items"]) == 1
    # Without a request_id, a command runs each time and is not answered.
    ha.send("picam/node1/cmd/photo", SMALL)
    wait_for(lambda: len(client.get("/api/v1/photos", headers=ADMIN).json["items"]) == 2)


def test_home_assistant_coming_online_gets_discovery_again(node, ha):
    wait_for(lambda: len(configs(ha)) >= 10)
    ha.clear()
    ha.send("homeassistant/status", "online")
    wait_for(lambda: len(configs(ha)) >= 10, what="discovery again")
    assert ha.last("picam/node1/availability").payload == b"online"
    assert ha.json("picam/node1/state/storage") is not None


def test_a_device_that_leaves_the_config_is_removed(make_app, config, broker, ha, tmp_path):
    config["mqtt"] = broker.config()
    config["gpio"] = {"devices": DEVICES}
    first = make_app(config)
    wait_for(lambda: "homeassistant/binary_sensor/node1/gpio_pir/config" in configs(ha))
    services_of(first).shutdown()
    config["gpio"] = {"devices": DEVICES[:2]}  # the PIR and the button are gone
    make_app(config)
    wait_for(lambda: "homeassistant/binary_sensor/node1/gpio_pir/config" not in configs(ha),
             what="the PIR's config emptied")
    late = Subscriber(broker, client_id="late-ha")  # one that sees only what is retained
    try:
        wait_for(lambda: "homeassistant/switch/node1/gpio_led/config" in configs(late))
        retained = configs(late)
        assert not [t for t in retained if "gpio_pir" in t or "gpio_door" in t]
        assert "homeassistant/light/node1/gpio_lamp/config" in retained
    finally:
        late.close()


def test_broker_restart_loses_no_command(node, ha, broker, client):
    services = services_of(node)
    wait_for(lambda: ha.json("picam/node1/state/storage"))
    ha.clear()
    broker.stop()
    wait_for(lambda: not services.mqtt.status()["connected"], what="the bridge to notice")
    assert services.mqtt.status()["last_error"]
    assert client.get("/api/v1/health").status_code == 200  # the service goes on
    # Sent while the broker is down: the test's client keeps them (QoS 1) until it is back.
    for n in range(3):
        ha.send("picam/node1/cmd/photo", {"request_id": f"down-{n}", **SMALL})
    broker.start()
    for n in range(3):
        assert result(ha, f"down-{n}")["ok"] is True
    wait_for(lambda: services.mqtt.status()["connected"])
    wait_for(lambda: ha.json("picam/node1/state/storage") and
             ha.json("picam/node1/state/storage")["photos"] == 3, what="state published again")
    assert ha.last("picam/node1/availability").payload == b"online"
    assert len(client.get("/api/v1/photos", headers=ADMIN).json["items"]) == 3


def test_two_nodes_on_one_broker(make_app, config, broker, ha, tmp_path):
    apps = {}
    for node, user in (("node1", "picam"), ("node2", "picam2")):
        node_config = {**config, "storage": {"data_dir": str(tmp_path / node), "reserve_mb": 0},
                       "mqtt": broker.config(user, node), "gpio": {"devices": DEVICES[:1]}}
        apps[node] = make_app(node_config)
    for node in apps:
        wait_for(lambda: len(configs(ha, node)) >= 7, what=f"{node}'s discovery")
    one, two = configs(ha, "node1"), configs(ha, "node2")
    assert {p["device"]["identifiers"][0] for p in one.values()} == {"picam_node1"}
    assert {p["device"]["identifiers"][0] for p in two.values()} == {"picam_node2"}
    assert not {p["unique_id"] for p in one.values()} & {p["unique_id"] for p in two.values()}
    ha.send("picam/node2/cmd/gpio/led", {"value": 1, "request_id": "two"})
    assert result(ha, "two")["ok"]
    assert services_of(apps["node2"]).gpio.devices["led"].device.value == 1
    assert services_of(apps["node1"]).gpio.devices["led"].device.value == 0


def test_the_will_says_offline_when_the_service_dies(broker, ha, tmp_path):
    server = ServerProcess(tmp_path, broker.toml(keepalive_s=5)).start()
    try:
        wait_for(lambda: ha.last("picam/node1/availability") and
                 ha.last("picam/node1/availability").payload == b"online", what="online")
        info = requests.get(server.url + "/api/v1/info", headers=ADMIN, timeout=10).json()
        assert info["mqtt"]["connected"] is True and info["mqtt"]["node_id"] == "node1"
        server.kill()
        wait_for(lambda: ha.last("picam/node1/availability").payload == b"offline",
                 what="the will")
    finally:
        server.stop()


def test_wrong_credentials_are_logged_and_the_service_stays_up(broker, tmp_path):
    toml = broker.toml().replace('password = "picam-secret-1"', 'password = "not-it-9e1f"')
    server = ServerProcess(tmp_path, toml).start()
    try:
        info = wait_for(lambda: (lambda i: i if i["last_error"] else None)(
            requests.get(server.url + "/api/v1/info", headers=ADMIN, timeout=10).json()["mqtt"]))
        assert info["connected"] is False and "refused" in info["last_error"]
        assert requests.get(server.url + "/api/v1/health", timeout=10).status_code == 200
        time.sleep(2.5)  # more retries: logged once, not at every one
    finally:
        server.stop()
    log = server.log.read_text()
    lines = [line for line in log.splitlines() if "refused the connection" in line]
    assert len(lines) == 1, log
    assert "127.0.0.1:%d" % broker.port in lines[0] and "not-it-9e1f" not in log
