"""``[[gpio.devices]]`` and ``gpio.*`` in the config, and choosing the pin factory."""
from __future__ import annotations

import logging
import subprocess
import tomllib
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from picam_api.config import from_mapping
from picam_api.errors import ConfigError
from picam_api.gpio import factory as gpio_factory
from picam_api.device_kinds import check_devices

from conftest import BIN

LED = {"name": "porch", "pin": 17, "kind": "led"}
PIR = {"name": "pir", "pin": 23, "kind": "input"}


@pytest.fixture(autouse=True)
def no_factory_from_the_environment(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.delenv("GPIOZERO_MOCK_PIN_CLASS", raising=False)


def config_error(gpio: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        from_mapping({"gpio": gpio})
    line = caught.value.detail
    assert "\n" not in line
    return line


# -- good configs ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", [17, "17", "GPIO17", "gpio17", "BCM17", "BOARD11", "J8:11"])
def test_pin_names_normalise_to_bcm(spec):
    [device] = check_devices([{**LED, "pin": spec}])
    assert device["pin"] == "GPIO17"


def test_a_full_config_is_normalised_and_checking_it_again_changes_nothing():
    devices = [
        {**LED, "active_high": False, "initial_value": True},
        {"name": "dimmer", "pin": 18, "kind": "pwm", "frequency": 200, "initial_value": 0.5},
        {"name": "bell", "pin": 22, "kind": "buzzer"},
        {"name": "relay", "pin": 27, "kind": "output"},
        {**PIR, "pull_up": False, "bounce_time": 0.05, "min_interval_s": 10,
         "on_active": [{"action": "photo", "settings": {"width": 640, "quality": 80}},
                       {"action": "output", "device": "porch", "for_s": 30}],
         "on_inactive": {"action": "output", "device": "dimmer", "value": 0.2}},
        {"name": "door", "pin": 24, "kind": "button", "hold_time": 2,
         "on_press": {"action": "timelapse", "timelapse": "garden", "state": "paused"},
         "on_hold": {"action": "photo"}},
    ]
    config = from_mapping({"gpio": {"devices": devices}, "camera": {"light": "porch"}})
    checked = config["gpio"]["devices"]
    assert checked[4]["on_active"] == [
        {"action": "photo", "settings": {"width": 640, "quality": 80}},
        {"action": "output", "device": "porch", "value": 1, "for_s": 30.0}]
    assert checked[4]["on_inactive"] == [{"action": "output", "device": "dimmer", "value": 0.2}]
    assert checked[5]["on_hold"] == [{"action": "photo", "settings": {}}]
    assert from_mapping({"gpio": config["gpio"]})["gpio"] == config["gpio"]


# -- bad configs: one line naming the device -----------------------------------------


@pytest.mark.parametrize("devices, expected", [
    ([LED, {**LED, "pin": 18}], "porch: the name is used twice"),
    ([LED, {**PIR, "pin": "BOARD11"}], "pir: pin GPIO17 is already used by porch"),
    ([LED, {**PIR, "pin": "J8:11"}], "pir: pin GPIO17 is already used by porch"),
    ([{**LED, "kind": "lamp"}], "porch: kind must be one of led, output, buzzer, pwm, button"),
    ([{**LED, "kind": None}], "porch: kind must be one of"),
    ([{**LED, "pin": "GPIO99"}], "porch: pin 'GPIO99' is not on the 40-pin header"),
    ([{**LED, "pin": 40}], "porch: pin 40 is not on the 40-pin header"),
    ([{**LED, "pin": "BOARD1"}], "porch: pin 'BOARD1' is 3V3, not a GPIO"),
    ([{**LED, "pin": 17.0}], "porch: pin 17.0 is not a pin name"),
    ([{**LED, "pin": True}], "porch: pin True is not a pin name"),
    ([{"name": "porch", "kind": "led"}], "porch: pin is required"),
    ([{**LED, "name": "a/b"}], "device #1: name must be"),
    ([{**LED, "name": "x" * 65}], "device #1: name must be"),
    ([{**LED, "name": ""}], "device #1: name must be"),
    ([{"pin": 17, "kind": "led"}], "device #1: name must be"),
    (["porch"], "device #1: must be a table"),
    ({"name": "porch"}, "must be an array of tables"),
    ([{**LED, "pull_up": True}], "porch: pull_up does not apply to a led"),
    ([{**LED, "frequency": 100}], "porch: frequency does not apply to a led"),
    ([{**LED, "min_interval_s": 1}], "porch: min_interval_s does not apply to a led"),
    ([{**LED, "on_press": {"action": "photo"}}], "porch: on_press does not apply to a led"),
    ([{**PIR, "on_press": {"action": "photo"}}], "pir: on_press does not apply to a input"),
    ([{**PIR, "hold_time": 1}], "pir: hold_time does not apply to a input"),
    ([{**PIR, "active_high": True}], "pir: active_high does not apply to a input"),
    ([{**LED, "initial_value": 0.5}], "porch: initial_value must be true or false"),
    ([{**LED, "kind": "pwm", "initial_value": 2}], "porch: initial_value must be between 0 and 1"),
    ([{**LED, "kind": "pwm", "frequency": 0}], "porch: frequency must be between 1 and 10000"),
    ([{**PIR, "bounce_time": 0}], "pir: bounce_time must be between"),
    ([{**PIR, "min_interval_s": -1}], "pir: min_interval_s must be between"),
    ([{**PIR, "on_active": []}], "pir: on_active has no actions"),
    ([{**PIR, "on_active": "photo"}], "pir: on_active: must be a table"),
    ([{**PIR, "on_active": {"action": "email"}}], "pir: on_active: action must be one of"),
    ([{**PIR, "on_active": {"action": "photo", "device": "porch"}}],
     "pir: on_active: device does not apply to a photo action"),
    ([{**PIR, "on_active": {"action": "photo", "settings": {"quality": 500}}}],
     "pir: on_active: settings.quality"),
    ([{**PIR, "on_active": {"action": "photo", "settings": {"iso": 100}}}],
     "pir: on_active: settings.iso"),
    ([{**PIR, "on_active": {"action": "photo", "settings": "small"}}],
     "pir: on_active: settings must be a table"),
    ([{**PIR, "on_active": {"action": "timelapse", "state": "paused"}}],
     "pir: on_active: timelapse must name a time-lapse"),
    ([{**PIR, "on_active": {"action": "timelapse", "timelapse": "t", "state": "cancelled"}}],
     "pir: on_active: state must be one of paused, running"),
    ([{**PIR, "on_active": {"action": "output", "device": "nothing"}}],
     "pir: on_active: device must name an output device (none configured)"),
    ([LED, {**PIR, "on_active": {"action": "output", "device": "pir"}}],
     "pir: on_active: device must name an output device (porch)"),
    ([LED, {**PIR, "on_active": {"action": "output", "device": "porch", "value": 0.5}}],
     "pir: on_active: value must be 0 or 1"),
    ([LED, {**PIR, "on_active": {"action": "output", "device": "porch", "for_s": 0}}],
     "pir: on_active: for_s must be between"),
    ([LED, {**PIR, "on_active": {"action": "output", "device": "porch", "value": 0,
                                 "for_s": 5}}],
     "pir: on_active: for_s switches the output off after a while"),
])
def test_bad_devices_are_one_line_naming_the_device(devices, expected):
    line = config_error({"devices": devices})
    assert line.startswith("config: gpio.devices: ")
    assert expected in line


@pytest.mark.parametrize("toml, expected", [
    ('[[gpio.devices]]\nname = "a"\npin = 17\nkind = "led"\n'
     '[[gpio.devices]]\nname = "a"\npin = 18\nkind = "led"\n', "a: the name is used twice"),
    ('[[gpio.devices]]\nname = "a"\npin = 17\nkind = "led"\n'
     '[[gpio.devices]]\nname = "b"\npin = "BOARD11"\nkind = "led"\n',
     "b: pin GPIO17 is already used by a"),
    ('[[gpio.devices]]\nname = "a"\npin = 17\nkind = "laser"\n', "a: kind must be one of"),
    ('[[gpio.devices]]\nname = "a"\npin = "GPIO77"\nkind = "led"\n', "a: pin 'GPIO77'"),
    ('[[gpio.devices]]\nname = "a"\npin = 17\nkind = "led"\npull_up = true\n',
     "a: pull_up does not apply to a led"),
])
def test_config_check_prints_the_one_line(tmp_path, toml, expected):
    path = tmp_path / "gpio.toml"
    path.write_text(toml)
    result = subprocess.run([str(BIN / "picam-api"), "config", "check", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"picam-api: {path}: gpio.devices: ") and expected in line


def test_config_check_accepts_gpio_devices(tmp_path):
    path = tmp_path / "gpio.toml"
    path.write_text('[camera]\nlight = "flash"\n'
                    '[[gpio.devices]]\nname = "flash"\npin = 5\nkind = "led"\n'
                    '[[gpio.devices]]\nname = "pir"\npin = "GPIO23"\nkind = "input"\n'
                    'on_active = {action = "photo", settings = {width = 640, height = 480}}\n')
    result = subprocess.run([str(BIN / "picam-api"), "config", "check", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config ok")


# -- errors only start-up can see -----------------------------------------------------


def start_error(make_app, config, gpio: dict) -> str:
    config["gpio"] = gpio
    with pytest.raises(ConfigError) as caught:
        make_app(config)
    assert "\n" not in caught.value.detail
    return caught.value.detail


@pytest.mark.parametrize("light, expected", [
    ("pir", "camera.light: must name an output device (porch) (got 'pir')"),
    ("nothing", "camera.light: must name an output device (porch) (got 'nothing')"),
])
def test_capture_light_must_name_an_output(make_app, config, light, expected):
    config["camera"]["light"] = light
    assert start_error(make_app, config, {"devices": [LED, PIR]}) == expected
    # The config check sees it too, without starting anything.
    with pytest.raises(ConfigError, match="camera.light"):
        from_mapping({"gpio": {"devices": [LED, PIR]}, "camera": {"light": light}})


def test_a_pin_gpiozero_refuses_stops_start_up_with_one_line(make_app, config):
    # GPIO2 has a fixed pull-up on every Pi, so it cannot be pulled down.
    line = start_error(make_app, config,
                       {"devices": [LED, {**PIR, "pin": "GPIO2", "pull_up": False}]})
    assert line.startswith("gpio.devices: pir: GPIO2 cannot be a input:")


def test_an_unknown_pin_factory_stops_start_up(make_app, config):
    line = start_error(make_app, config, {"devices": [LED], "pin_factory": "nonesuch"})
    assert line.startswith("gpio.pin_factory: no gpiozero pin factory named 'nonesuch'")
    assert "mock" in line


def test_an_unusable_pin_factory_without_devices_is_only_a_warning(make_app, config,
                                                                    admin_headers, caplog):
    config["gpio"] = {"pin_factory": "nonesuch"}
    client = make_app(config).test_client()
    gpio = client.get("/api/v1/info", headers=admin_headers).json["gpio"]
    assert gpio == {"pin_factory": None, "mock": False, "devices": 0, "capture_light": None}
    assert "GPIO unavailable" in caplog.text


# -- choosing the pin factory ---------------------------------------------------------


@pytest.fixture
def not_a_pi(monkeypatch, tmp_path):
    monkeypatch.setattr(gpio_factory, "PI_MODEL", tmp_path / "no-such-model")


def test_off_a_pi_the_factory_is_a_pwm_capable_mock_and_says_so(not_a_pi, caplog):
    factory = gpio_factory.make_pin_factory("", env={})
    assert isinstance(factory, MockFactory) and factory.pin_class is MockPWMPin
    assert "SIMULATED" in caplog.text
    assert Device.pin_factory is None


def test_on_a_pi_gpiozero_picks_its_default(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    monkeypatch.setattr(gpio_factory, "PI_MODEL", model)
    chosen = MockFactory()
    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(lambda: chosen))
    assert gpio_factory.make_pin_factory("", env={}) is chosen
    assert "gpiozero's default on this Pi" in caplog.text


def test_on_a_pi_a_default_that_fails_is_one_line(monkeypatch, tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B\x00")
    monkeypatch.setattr(gpio_factory, "PI_MODEL", model)

    def fail():
        raise OSError("no gpiochip")

    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(fail))
    with pytest.raises(ConfigError, match="^gpio: pin factory 'default' did not start: no gpiochip$"):
        gpio_factory.make_pin_factory("", env={})


@pytest.mark.parametrize("env, configured", [
    ({"GPIOZERO_PIN_FACTORY": "mock"}, ""),
    ({"GPIOZERO_PIN_FACTORY": "MOCK"}, ""),
    ({}, "mock"),
    ({"GPIOZERO_PIN_FACTORY": "mock"}, "nonesuch"),  # the environment wins
])
def test_a_named_mock_factory_gets_pwm_pins(not_a_pi, env, configured):
    factory = gpio_factory.make_pin_factory(configured, env=env)
    assert isinstance(factory, MockFactory) and factory.pin_class is MockPWMPin


def test_gpiozero_mock_pin_class_is_respected(not_a_pi):
    factory = gpio_factory.make_pin_factory("", env={"GPIOZERO_PIN_FACTORY": "mock",
                                                     "GPIOZERO_MOCK_PIN_CLASS": "mockpin"})
    assert factory.pin_class is not MockPWMPin


def test_an_unknown_factory_in_the_environment_names_the_variable(not_a_pi):
    with pytest.raises(ConfigError, match="^GPIOZERO_PIN_FACTORY: no gpiozero pin factory named"):
        gpio_factory.make_pin_factory("mock", env={"GPIOZERO_PIN_FACTORY": "bogus"})


def test_the_app_uses_gpiozero_pin_factory_from_the_environment(make_app, config, monkeypatch,
                                                                 admin_headers):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    config["gpio"] = {"devices": [LED, {"name": "dimmer", "pin": 18, "kind": "pwm"}]}
    client = make_app(config).test_client()
    assert client.get("/api/v1/info", headers=admin_headers).json["gpio"]["mock"] is True
    assert client.patch("/api/v1/gpio/dimmer", headers=admin_headers,
                        json={"value": 0.5}).status_code == 200


@pytest.mark.parametrize("doc, heading, names", [
    ("docs/gpio.md", "# GPIO", ["status", "porch", "ir-lamp", "pir", "hold-to-pause"]),
    ("README.md", "## GPIO", ["porch", "pir"]),
])
def test_the_documented_examples_start(make_app, config, admin_headers, doc, heading, names):
    text = (Path(__file__).parent.parent / doc).read_text()
    section = text[text.index(f"\n{heading}\n" if heading.startswith("##") else heading):]
    lines = section[section.index("\n    [") + 1:].splitlines()
    block = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    example = tomllib.loads("\n".join(block))
    config["gpio"] = example["gpio"]
    config["camera"].update(example.get("camera", {}))
    client = make_app(config).test_client()
    listed = [d["name"] for d in client.get("/api/v1/gpio", headers=admin_headers).json["items"]]
    assert listed == names
