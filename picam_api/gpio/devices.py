"""The GPIO device kinds, and checking ``[[gpio.devices]]`` against them.

``check_devices`` runs while the config loads, before any pin factory exists, so
pins are checked against the 40-pin header that every current Raspberry Pi
shares, and normalised to gpiozero's BCM name ("GPIO17") so that ``17``,
``"BOARD11"`` and ``"J8:11"`` count as the same pin. Its result is valid input
again: the config layers re-check what they merge.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from gpiozero import (LED, PWMLED, Button, Buzzer, DigitalInputDevice,
                      DigitalOutputDevice, pi_info)

# The same checks as every other config key, so GPIO options read alike.
from ..rules import boolean as _bool
from ..rules import check_capture_request
from ..rules import choice as _choice
from ..rules import number as _number

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
# Any 40-pin model: the header is the same from the Pi 1 B+ to the Pi 5.
HEADER = pi_info("a02082")
PIN_RULE = "use a BCM number or a gpiozero pin name such as GPIO17, BOARD11 or J8:11"


@dataclass(frozen=True)
class Kind:
    """What a device kind is built from, which options it takes, and what it can do.

    ``events`` maps an input's trigger keys to the gpiozero callbacks that fire
    them; ``actions`` are the PATCH actions an output accepts.
    """

    name: str
    device_class: type
    options: dict[str, Callable[[Any], Any]]
    events: dict[str, str] = field(default_factory=dict)
    actions: tuple[str, ...] = ()
    pwm: bool = False

    @property
    def is_input(self) -> bool:
        return not self.actions

    def check_value(self, value: Any) -> float | int:
        """An output value for this kind: 0 or 1, or 0.0-1.0 for pwm."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if self.pwm:
            if not 0 <= value <= 1:
                raise ValueError("must be between 0.0 and 1.0")
            return float(value)
        if value not in (0, 1):
            raise ValueError("must be 0 or 1")
        return int(value)


_SWITCHED = {"active_high": _bool, "initial_value": _bool}
_DIGITAL = ("value", "toggle", "blink")
_INPUT = {"pull_up": _bool, "bounce_time": _number(float, 0.001, 60)}

KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("led", LED, _SWITCHED, actions=_DIGITAL),
    Kind("output", DigitalOutputDevice, _SWITCHED, actions=_DIGITAL),
    Kind("buzzer", Buzzer, _SWITCHED, actions=_DIGITAL),
    Kind("pwm", PWMLED, {"active_high": _bool, "initial_value": _number(float, 0, 1),
                         "frequency": _number(float, 1, 10000)},
         actions=(*_DIGITAL, "pulse"), pwm=True),
    Kind("button", Button, {**_INPUT, "hold_time": _number(float, 0.01, 3600)},
         events={"on_press": "when_activated", "on_release": "when_deactivated",
                 "on_hold": "when_held"}),
    Kind("input", DigitalInputDevice, _INPUT,
         events={"on_active": "when_activated", "on_inactive": "when_deactivated"}),
)}

_COMMON = ("name", "pin", "kind")
# Home Assistant's binary_sensor device classes, for MQTT discovery ("motion" for a PIR).
HA_DEVICE_CLASSES = (
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window")
_INPUT_ONLY = {"min_interval_s": _number(float, 0, 86400),
               "device_class": _choice(*HA_DEVICE_CLASSES)}
_ACTION_KEYS = {"photo": ("settings",), "timelapse": ("timelapse", "state"),
                "output": ("device", "value", "for_s"), "video": ("duration_s",)}
_TIMELAPSE_STATES = ("paused", "running")


def check_devices(value: Any) -> list[dict]:
    """Check the ``gpio.devices`` array; return it normalised, or raise ValueError(reason).

    Each reason names the device, so the config layer's one line says which.
    """
    if not isinstance(value, list):
        raise ValueError("must be an array of tables ([[gpio.devices]])")
    devices: list[dict] = []
    names: set[str] = set()
    pins: dict[str, str] = {}
    for index, spec in enumerate(value):
        label = f"device #{index + 1}"
        if not isinstance(spec, dict):
            raise ValueError(f"{label}: must be a table")
        name = spec.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{label}: name {NAME_RULE}, not {name!r}")
        if name in names:
            raise ValueError(f"{name}: the name is used twice")
        names.add(name)
        device = _check_device(name, spec)
        if device["pin"] in pins:
            raise ValueError(f"{name}: pin {device['pin']} is already used by "
                             f"{pins[device['pin']]}")
        pins[device["pin"]] = name
        devices.append(device)
    kinds = {device["name"]: KINDS[device["kind"]] for device in devices}
    for device in devices:
        for event in KINDS[device["kind"]].events:
            if event in device:
                device[event] = _check_actions(device["name"], event, device[event], kinds)
    return devices


def _check_device(name: str, spec: dict) -> dict:
    """Everything but the trigger actions, which need every device's kind."""
    kind_name = spec.get("kind")
    if not isinstance(kind_name, str) or kind_name not in KINDS:
        raise ValueError(f"{name}: kind must be one of {', '.join(KINDS)}, not {kind_name!r}")
    if "pin" not in spec:
        raise ValueError(f"{name}: pin is required")
    kind = KINDS[kind_name]
    device = {"name": name, "kind": kind_name, "pin": normalise_pin(name, spec["pin"])}
    checks = {**kind.options, **(_INPUT_ONLY if kind.is_input else {})}
    for key, value in spec.items():
        if key in _COMMON:
            continue
        if key in kind.events:
            device[key] = value  # checked once every device is known
        elif key in checks:
            device[key] = _checked(name, key, checks[key], value)
        else:
            takes = ", ".join([*checks, *kind.events])
            raise ValueError(f"{name}: {key} does not apply to a {kind_name} (it takes {takes})")
    return device


def normalise_pin(name: str, pin: Any) -> str:
    """gpiozero's BCM name for ``pin`` ("GPIO17"), or ValueError naming the device."""
    if isinstance(pin, bool) or not isinstance(pin, (int, str)):
        raise ValueError(f"{name}: pin {pin!r} is not a pin name: {PIN_RULE}")
    spec = pin.strip().upper() if isinstance(pin, str) else pin
    for _header, info in HEADER.find_pin(spec):
        if not info.name.startswith("GPIO"):
            raise ValueError(f"{name}: pin {pin!r} is {info.name}, not a GPIO")
        return info.name
    raise ValueError(f"{name}: pin {pin!r} is not on the 40-pin header: {PIN_RULE}")


def _check_actions(name: str, event: str, value: Any, kinds: dict[str, Kind]) -> list[dict]:
    """One action table or an array of them; returned as a list."""
    actions = value if isinstance(value, list) else [value]
    if not actions:
        raise ValueError(f"{name}: {event} has no actions")
    return [_check_action(f"{name}: {event}", action, kinds) for action in actions]


def _check_action(where: str, action: Any, kinds: dict[str, Kind]) -> dict:
    if not isinstance(action, dict):
        raise ValueError(f"{where}: must be a table such as {{action = \"photo\"}}")
    kind = action.get("action")
    if not isinstance(kind, str) or kind not in _ACTION_KEYS:
        raise ValueError(f"{where}: action must be one of {', '.join(_ACTION_KEYS)}, "
                         f"not {kind!r}")
    extra = set(action) - {"action", *_ACTION_KEYS[kind]}
    if extra:
        raise ValueError(f"{where}: {', '.join(sorted(extra))} does not apply to a {kind} "
                         f"action (it takes {', '.join(_ACTION_KEYS[kind])})")
    return {"photo": _photo, "timelapse": _timelapse, "output": _output,
            "video": _video}[kind](where, action, kinds)


def _photo(where: str, action: dict, kinds: dict[str, Kind]) -> dict:
    # The capture request of POST /api/v1/photos, so a trigger takes exactly what the API takes.
    settings = action.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: settings must be a table of capture fields")
    try:
        settings = check_capture_request(settings)
    except ValueError as exc:
        raise ValueError(f"{where}: settings.{exc}") from None
    return {"action": "photo", "settings": settings}


def _timelapse(where: str, action: dict, kinds: dict[str, Kind]) -> dict:
    job = action.get("timelapse")
    if not isinstance(job, str) or not 1 <= len(job) <= 64:
        raise ValueError(f"{where}: timelapse must name a time-lapse (its name or id)")
    if action.get("state") not in _TIMELAPSE_STATES:
        raise ValueError(f"{where}: state must be one of {', '.join(_TIMELAPSE_STATES)}")
    return {"action": "timelapse", "timelapse": job, "state": action["state"]}


def _output(where: str, action: dict, kinds: dict[str, Kind]) -> dict:
    target = action.get("device")
    if not isinstance(target, str) or target not in kinds or kinds[target].is_input:
        outputs = [name for name, kind in kinds.items() if not kind.is_input]
        raise ValueError(f"{where}: device must name an output device "
                         f"({', '.join(outputs) or 'none configured'}), not {target!r}")
    value = _checked(where, "value", kinds[target].check_value, action.get("value", 1))
    checked = {"action": "output", "device": target, "value": value}
    if "for_s" in action:
        if not value:
            raise ValueError(f"{where}: for_s switches the output off after a while, "
                             "so value must be above 0")
        checked["for_s"] = _checked(where, "for_s", _number(float, 0.01, 86400), action["for_s"])
    return checked


def _video(where: str, action: dict, kinds: dict[str, Kind]) -> dict:
    # The clip's length; the video service checks it against video.max_duration_s as well.
    duration = _checked(where, "duration_s", _number(float, 0.1, 86400), action.get("duration_s", 10))
    return {"action": "video", "duration_s": duration}


def _checked(where: str, key: str, check: Callable[[Any], Any], value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {key} {exc}, not {value!r}") from None


def check_capture_light(name: str, devices: list[dict]) -> None:
    """The capture light, when set, must be one of the configured outputs."""
    outputs = [d["name"] for d in devices if not KINDS[d["kind"]].is_input]
    if name and name not in outputs:
        raise ValueError(f"must name an output device ({', '.join(outputs) or 'none configured'})")
