"""GPIO over HTTP on gpiozero's MockFactory: state, PATCH actions, triggers, the capture light."""
from __future__ import annotations

import copy
import time

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from picam_api.errors import ConfigError
from picam_api.gpio import service as gpio_service
from conftest import PROBLEM, assert_problem, wait_for

SMALL = {"width": 64, "height": 48}
DEVICES = [
    {"name": "porch", "pin": 17, "kind": "led"},
    {"name": "relay", "pin": "GPIO27", "kind": "output", "active_high": False},
    {"name": "dimmer", "pin": "BOARD12", "kind": "pwm"},
    {"name": "beeper", "pin": 22, "kind": "buzzer"},
    {"name": "flash", "pin": "J8:29", "kind": "led"},
    {"name": "pir", "pin": 23, "kind": "input",
     "on_active": {"action": "photo", "settings": SMALL}},
    {"name": "door", "pin": 24, "kind": "button",
     "on_press": {"action": "output", "device": "porch", "value": 1, "for_s": 0.3}},
]


@pytest.fixture(autouse=True)
def no_factory_from_the_environment(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.delenv("GPIOZERO_MOCK_PIN_CLASS", raising=False)


@pytest.fixture
def config(config):
    """The test config plus the devices above; the flash is the capture light."""
    config["gpio"] = {"devices": copy.deepcopy(DEVICES)}
    config["camera"]["light"] = "flash"
    return config


@pytest.fixture
def gpio(services):
    return services.gpio


def pin(gpio, name: str):
    """The mock pin under a device, from the app's own factory."""
    return gpio.factory.pin(gpio.devices[name].pin)



def click(button_pin) -> None:
    """Press and release a button (active low)."""
    button_pin.drive_low()
    button_pin.drive_high()


def patch(client, headers, name: str, body):
    return client.patch(f"/api/v1/gpio/{name}", headers=headers, json=body)


def device(client, headers, name: str) -> dict:
    response = client.get(f"/api/v1/gpio/{name}", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def gpio_photos(services) -> list:
    return [p for p in services.photos.list(100).items if p.source == "gpio"]



# -- reading ---------------------------------------------------------------------------


def test_list_shows_every_device_with_its_state(client, viewer_headers):
    response = client.get("/api/v1/gpio", headers=viewer_headers)
    assert response.status_code == 200
    body = response.json
    assert body["next"] is None
    items = {item["name"]: item for item in body["items"]}
    assert list(items) == [d["name"] for d in DEVICES]
    assert {name: (item["kind"], item["pin"]) for name, item in items.items()} == {
        "porch": ("led", "GPIO17"), "relay": ("output", "GPIO27"), "dimmer": ("pwm", "GPIO18"),
        "beeper": ("buzzer", "GPIO22"), "flash": ("led", "GPIO5"), "pir": ("input", "GPIO23"),
        "door": ("button", "GPIO24")}
    assert items["porch"]["value"] == 0 and items["dimmer"]["value"] == 0.0
    assert items["porch"]["links"] == {"self": "/api/v1/gpio/porch"}
    assert "edges" not in items["porch"]
    assert items["pir"]["edges"] == 0 and items["pir"]["last_changed"] is None
    assert items["pir"]["trigger_failures"] == 0 and items["pir"]["last_error"] is None


def test_one_device(client, viewer_headers):
    body = device(client, viewer_headers, "door")
    assert body["name"] == "door" and body["kind"] == "button" and body["value"] == 0
    assert body["links"]["self"] == "/api/v1/gpio/door"


def test_info_says_the_pins_are_simulated(client, viewer_headers):
    gpio = client.get("/api/v1/info", headers=viewer_headers).json["gpio"]
    assert gpio == {"pin_factory": "MockFactory", "mock": True, "devices": len(DEVICES),
                    "capture_light": "flash"}


def test_no_devices_is_an_empty_list(make_app, config, admin_headers):
    del config["gpio"], config["camera"]["light"]
    client = make_app(config).test_client()
    assert client.get("/api/v1/gpio", headers=admin_headers).json == {"items": [], "next": None}
    assert client.get("/api/v1/info", headers=admin_headers).json["gpio"]["mock"] is True


# -- PATCH: the pin changes ------------------------------------------------------------


def test_value_switches_the_pin(client, admin_headers, gpio):
    response = patch(client, admin_headers, "porch", {"value": 1})
    assert response.status_code == 200
    assert response.json["value"] == 1
    assert pin(gpio, "porch").state == 1
    patch(client, admin_headers, "porch", {"value": 0})
    assert pin(gpio, "porch").state == 0
    assert device(client, admin_headers, "porch")["value"] == 0


def test_active_low_relay_drives_the_pin_low_when_on(client, admin_headers, gpio):
    assert pin(gpio, "relay").state == 1  # off
    assert patch(client, admin_headers, "relay", {"value": 1}).json["value"] == 1
    assert pin(gpio, "relay").state == 0


def test_pwm_value_sets_the_duty_cycle(client, admin_headers, gpio):
    assert isinstance(pin(gpio, "dimmer"), MockPWMPin)
    assert patch(client, admin_headers, "dimmer", {"value": 0.25}).json["value"] == 0.25
    assert pin(gpio, "dimmer").state == 0.25
    patch(client, admin_headers, "dimmer", {"value": 1})
    assert pin(gpio, "dimmer").state == 1


def test_toggle(client, admin_headers, gpio):
    assert patch(client, admin_headers, "beeper", {"toggle": True}).json["value"] == 1
    assert pin(gpio, "beeper").state == 1
    assert patch(client, admin_headers, "beeper", {"toggle": True}).json["value"] == 0
    assert pin(gpio, "beeper").state == 0


def test_blink_runs_in_the_background_until_the_next_patch(client, admin_headers, gpio):
    led = pin(gpio, "porch")
    led.clear_states()
    response = patch(client, admin_headers, "porch",
                     {"blink": {"on_time": 0.02, "off_time": 0.02}})
    assert response.status_code == 200
    wait_for(lambda: len(led.states) >= 6)
    assert patch(client, admin_headers, "porch", {"value": 0}).status_code == 200
    settled = len(led.states)
    time.sleep(0.15)
    assert len(led.states) == settled and led.state == 0
    led.assert_states([False, True, False, True, False])


def test_blink_n_times_then_stops(client, admin_headers, gpio):
    led = pin(gpio, "porch")
    led.clear_states()
    patch(client, admin_headers, "porch", {"blink": {"on_time": 0.01, "off_time": 0.01, "n": 2}})
    wait_for(lambda: len(led.states) == 5)
    time.sleep(0.1)
    assert [s.state for s in led.states] == [False, True, False, True, False]


def test_pulse_fades_a_pwm_device(client, admin_headers, gpio):
    dimmer = pin(gpio, "dimmer")
    dimmer.clear_states()
    response = patch(client, admin_headers, "dimmer",
                     {"pulse": {"fade_in_time": 0.2, "fade_out_time": 0.2, "n": 1}})
    assert response.status_code == 200
    wait_for(lambda: len(dimmer.states) > 3 and dimmer.state == 0)
    values = [s.state for s in dimmer.states]
    assert 1 in values
    assert any(0 < v < 1 for v in values), values


def test_a_later_patch_stops_a_pulse(client, admin_headers, gpio):
    dimmer = pin(gpio, "dimmer")
    patch(client, admin_headers, "dimmer", {"pulse": {"fade_in_time": 0.05, "fade_out_time": 0.05}})
    wait_for(lambda: len(dimmer.states) > 4)
    patch(client, admin_headers, "dimmer", {"value": 0.5})
    settled = len(dimmer.states)
    time.sleep(0.15)
    assert len(dimmer.states) == settled and dimmer.state == 0.5


# -- PATCH: refusals -------------------------------------------------------------------


def test_patch_on_an_input_is_409(client, admin_headers, gpio):
    for name in ("pir", "door"):
        body = assert_problem(patch(client, admin_headers, name, {"value": 1}), 409)
        assert "input" in body["detail"]
    assert pin(gpio, "pir").state == 0


@pytest.mark.parametrize("name, body, field", [
    ("porch", {"value": 2}, "value"),
    ("porch", {"value": -0.1}, "value"),
    ("porch", {"value": "1"}, "value"),
    ("porch", {"value": True}, "value"),
    ("porch", {"value": None}, "value"),
    ("porch", {"value": 0.5}, "value"),
    ("dimmer", {"value": 1.5}, "value"),
    ("porch", {"toggle": False}, "toggle"),
    ("porch", {"toggle": 1}, "toggle"),
    ("porch", {"blink": {"on_time": 0}}, "blink.on_time"),
    ("porch", {"blink": {"off_time": "1"}}, "blink.off_time"),
    ("porch", {"blink": {"n": 0}}, "blink.n"),
    ("porch", {"blink": {"n": 1.5}}, "blink.n"),
    ("porch", {"blink": {"colour": "red"}}, "blink.colour"),
    ("porch", {"blink": 3}, "blink"),
    ("porch", {"pulse": {}}, "pulse"),
    ("beeper", {"pulse": {"n": 1}}, "pulse"),
    ("dimmer", {"pulse": {"fade_in_time": -1}}, "pulse.fade_in_time"),
    ("porch", {"value": 1, "toggle": True}, "body"),
    ("porch", {}, "body"),
    ("porch", {"colour": "red"}, "colour"),
])
def test_bad_patch_is_422_naming_the_field(client, admin_headers, gpio, name, body, field):
    before = pin(gpio, name).state
    assert_problem(patch(client, admin_headers, name, body), 422, field)
    assert pin(gpio, name).state == before


def test_a_json_array_body_is_a_clear_4xx(client, admin_headers):
    response = patch(client, admin_headers, "porch", [1])
    assert 400 <= response.status_code < 500 and response.content_type == PROBLEM


@pytest.mark.parametrize("path", [
    "/api/v1/gpio/nothing", "/api/v1/gpio/..", "/api/v1/gpio/porch%2F..", "/api/v1/gpio/a/b",
    "/api/v1/gpio/" + "x" * 65, "/api/v1/gpio/%00",
])
def test_unknown_or_malformed_names_are_404(client, admin_headers, path):
    for method in ("GET", "PATCH"):
        response = client.open(path, method=method, headers=admin_headers, json={"value": 1})
        body = assert_problem(response, 404)
        assert "x" * 65 not in body["detail"]


def test_viewer_reads_but_cannot_patch(client, viewer_headers, gpio):
    assert client.get("/api/v1/gpio/porch", headers=viewer_headers).status_code == 200
    assert_problem(patch(client, viewer_headers, "porch", {"value": 1}), 403)
    assert pin(gpio, "porch").state == 0


def test_patch_without_credentials_is_401(client):
    assert client.patch("/api/v1/gpio/porch", json={"value": 1}).status_code == 401


# -- inputs and their triggers ---------------------------------------------------------


def test_driving_an_input_updates_its_state_and_takes_a_tagged_photo(client, admin_headers,
                                                                       services, gpio):
    pir = pin(gpio, "pir")
    pir.drive_high()
    body = device(client, admin_headers, "pir")
    assert body["value"] == 1 and body["edges"] == 1
    assert body["last_changed"].endswith("Z")
    photo = wait_for(lambda: gpio_photos(services))[0]
    assert photo.trigger == "pir"
    assert (photo.width, photo.height) == (64, 48)
    pir.drive_low()
    body = device(client, admin_headers, "pir")
    assert body["value"] == 0 and body["edges"] == 2 and body["triggers_fired"] == 1
    listed = client.get(f"/api/v1/photos/{photo.id}", headers=admin_headers).json
    assert listed["source"] == "gpio" and listed["trigger"] == "pir"


def test_a_button_turns_a_light_on_for_a_while(client, admin_headers, gpio):
    porch = pin(gpio, "porch")
    porch.clear_states()
    pressed = time.monotonic()
    pin(gpio, "door").drive_low()
    assert device(client, admin_headers, "door")["value"] == 1
    pin(gpio, "door").drive_high()  # a held button would keep gpiozero's hold thread waiting
    wait_for(lambda: porch.state == 1)
    wait_for(lambda: porch.state == 0)
    assert time.monotonic() - pressed >= 0.25
    assert [s.state for s in porch.states] == [False, True, False]


def test_a_patch_during_a_timed_hold_cancels_it(client, admin_headers, gpio):
    click(pin(gpio, "door"))
    wait_for(lambda: pin(gpio, "porch").state == 1)
    patch(client, admin_headers, "porch", {"value": 1})
    time.sleep(0.5)
    assert pin(gpio, "porch").state == 1


def test_min_interval_suppresses_rapid_triggers(make_app, config, admin_headers):
    config["gpio"]["devices"][5]["min_interval_s"] = 60
    app = make_app(config)
    services, client = app.extensions["picam"], app.test_client()
    pir = pin(services.gpio, "pir")
    for _ in range(3):
        pir.drive_high()
        pir.drive_low()
    wait_for(lambda: gpio_photos(services))
    body = device(client, admin_headers, "pir")
    assert body["edges"] == 6
    assert (body["triggers_fired"], body["triggers_suppressed"]) == (1, 2)
    time.sleep(0.2)
    assert len(gpio_photos(services)) == 1


def test_a_failing_trigger_is_counted_and_nothing_breaks(client, admin_headers, services, gpio):
    services.backend.fail_rate = 1.0
    pin(gpio, "pir").drive_high()
    body = wait_for(lambda: (b := device(client, admin_headers, "pir"))["trigger_failures"] and b)
    assert body["trigger_failures"] == 1
    assert body["last_error"].startswith("on_active: photo:")
    assert gpio_photos(services) == []
    services.backend.fail_rate = 0.0
    pin(gpio, "pir").drive_low()
    pin(gpio, "pir").drive_high()
    wait_for(lambda: gpio_photos(services))
    assert device(client, admin_headers, "pir")["trigger_failures"] == 1


def test_a_full_trigger_queue_drops_and_counts_and_shutdown_does_not_wait(make_app, config):
    app = make_app(config)
    services = app.extensions["picam"]
    services.backend.delay_s = 0.3
    pir = pin(services.gpio, "pir")
    for _ in range(50):
        pir.drive_high()
        pir.drive_low()
    state = services.gpio.devices["pir"].state()
    assert state["triggers_dropped"] > 0
    assert state["triggers_fired"] + state["triggers_dropped"] == 50
    started = time.monotonic()
    services.shutdown()
    assert time.monotonic() - started < 2.0
    assert not services.gpio.triggers.is_alive()


def test_a_trigger_pauses_and_resumes_a_timelapse(make_app, config, admin_headers):
    config["gpio"]["devices"][6]["on_press"] = {"action": "timelapse", "timelapse": "garden",
                                                "state": "paused"}
    config["gpio"]["devices"][6]["on_release"] = {"action": "timelapse", "timelapse": "garden",
                                                  "state": "running"}
    app = make_app(config)
    services, client = app.extensions["picam"], app.test_client()
    response = client.post("/api/v1/timelapses", headers=admin_headers,
                           json={"name": "garden", "interval_s": 3600, "frames": 5, **SMALL})
    assert response.status_code == 201, response.json
    url = response.headers["Location"]
    door = pin(services.gpio, "door")
    door.drive_low()
    wait_for(lambda: client.get(url, headers=admin_headers).json["state"] == "paused")
    door.drive_high()
    wait_for(lambda: client.get(url, headers=admin_headers).json["state"] != "paused")
    assert device(client, admin_headers, "door")["trigger_failures"] == 0


def test_a_timelapse_trigger_for_an_unknown_job_is_a_counted_failure(make_app, config,
                                                                       admin_headers):
    config["gpio"]["devices"][6]["on_press"] = {"action": "timelapse", "timelapse": "nope",
                                                "state": "paused"}
    app = make_app(config)
    click(pin(app.extensions["picam"].gpio, "door"))
    client = app.test_client()
    body = wait_for(lambda: (b := device(client, admin_headers, "door"))["trigger_failures"] and b)
    assert "on_press: timelapse:" in body["last_error"] and "nope" in body["last_error"]


# -- the capture light -----------------------------------------------------------------


def lights_seen_by_captures(services, monkeypatch, light: str = "flash") -> list:
    """Records the light's pin state from inside every capture."""
    seen = []
    original = services.backend.capture

    def capture(settings, timeout):
        seen.append(pin(services.gpio, light).state)
        return original(settings, timeout)

    monkeypatch.setattr(services.backend, "capture", capture)
    return seen


def test_the_capture_light_is_on_during_a_capture_and_off_after(client, admin_headers, services,
                                                                 gpio, monkeypatch):
    seen = lights_seen_by_captures(services, monkeypatch)
    flash = pin(gpio, "flash")
    flash.clear_states()
    assert client.post("/api/v1/photos", headers=admin_headers, json=SMALL).status_code == 201
    assert client.get("/api/v1/snapshot.jpg?width=64&height=48",
                      headers=admin_headers).status_code == 200
    assert seen == [True, True]
    assert flash.state == 0
    assert [s.state for s in flash.states] == [False, True, False, True, False]


def test_the_capture_light_lights_triggered_photos_too(client, services, gpio, monkeypatch):
    seen = lights_seen_by_captures(services, monkeypatch)
    pin(gpio, "pir").drive_high()
    wait_for(lambda: gpio_photos(services))
    assert seen == [True]
    assert pin(gpio, "flash").state == 0


def test_a_capture_light_already_on_stays_on(client, admin_headers, services, gpio, monkeypatch):
    seen = lights_seen_by_captures(services, monkeypatch)
    patch(client, admin_headers, "flash", {"value": 1})
    client.post("/api/v1/photos", headers=admin_headers, json=SMALL)
    assert seen == [True] and pin(gpio, "flash").state == 1


def test_a_dimmed_capture_light_returns_to_its_level(make_app, config, admin_headers,
                                                     monkeypatch):
    config["camera"]["light"] = "dimmer"
    app = make_app(config)
    services, client = app.extensions["picam"], app.test_client()
    seen = lights_seen_by_captures(services, monkeypatch, "dimmer")
    patch(client, admin_headers, "dimmer", {"value": 0.3})
    assert client.post("/api/v1/photos", headers=admin_headers, json=SMALL).status_code == 201
    assert seen == [1] and pin(services.gpio, "dimmer").state == 0.3


def test_a_change_to_the_light_during_a_capture_is_kept(client, admin_headers, services, gpio,
                                                        monkeypatch):
    original = services.backend.capture

    def capture(settings, timeout):
        gpio.apply("flash", {"value": 1})
        return original(settings, timeout)

    monkeypatch.setattr(services.backend, "capture", capture)
    client.post("/api/v1/photos", headers=admin_headers, json=SMALL)
    assert pin(gpio, "flash").state == 1


def test_a_failed_capture_still_switches_the_light_off(client, admin_headers, services, gpio):
    services.backend.fail_rate = 1.0
    assert client.post("/api/v1/photos", headers=admin_headers, json=SMALL).status_code == 503
    assert pin(gpio, "flash").state == 0


def test_shutdown_unhooks_the_capture_light(services):
    assert services.gpio.light.lit in services.owner.hooks
    services.shutdown()
    assert services.gpio.light.lit not in services.owner.hooks


# -- pin factories and shutdown ----------------------------------------------------------


def test_each_app_has_its_own_factory_and_the_global_one_is_untouched(make_app, config,
                                                                     admin_headers, tmp_path):
    first = make_app(config)
    second_config = copy.deepcopy(config)
    second_config["storage"]["data_dir"] = str(tmp_path / "second")
    second = make_app(second_config)
    one, two = first.extensions["picam"].gpio, second.extensions["picam"].gpio
    assert one.factory is not two.factory
    patch(first.test_client(), admin_headers, "porch", {"value": 1})
    assert pin(one, "porch").state == 1 and pin(two, "porch").state == 0
    assert Device.pin_factory is None


class _SharedFactory(MockFactory):
    """One factory for several apps. Its close() does nothing, so what frees the pins
    is each device's own close(), which is what this checks."""

    def close(self):
        pass


def test_shutdown_releases_the_pins(make_app, config, tmp_path, monkeypatch):
    shared = _SharedFactory(pin_class=MockPWMPin)
    monkeypatch.setattr(gpio_service, "make_pin_factory", lambda configured: shared)
    first = make_app(config).extensions["picam"]
    porch, pir = pin(first.gpio, "porch"), pin(first.gpio, "pir")
    second_config = copy.deepcopy(config)
    second_config["storage"]["data_dir"] = str(tmp_path / "second")

    with pytest.raises(ConfigError, match="porch: GPIO17 cannot be a led"):
        make_app(second_config)  # the first app still holds the pins

    first.shutdown()
    assert porch.function == "input" and pir.when_changed is None
    second = make_app(second_config).extensions["picam"]
    second.gpio.apply("porch", {"value": 1})
    assert pin(second.gpio, "porch").state == 1


def test_the_gpio_service_shuts_down_twice_harmlessly(gpio):
    gpio.shutdown(1.0)
    gpio.shutdown(1.0)
    assert not gpio.triggers.is_alive()
