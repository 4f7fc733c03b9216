"""Choosing one app's gpiozero pin factory.

Every call makes a new factory that the caller owns and injects into its
devices; gpiozero's global ``Device.pin_factory`` is never touched, so apps (and
tests, which build many) never share pins.
"""
from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Mapping

from gpiozero import Device
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from ..errors import ConfigError

log = logging.getLogger(__name__)

PI_MODEL = Path("/proc/device-tree/model")


def make_pin_factory(configured: str, env: Mapping[str, str] | None = None) -> Factory:
    """``$GPIOZERO_PIN_FACTORY``, else ``gpio.pin_factory``, else gpiozero's own
    default on a Raspberry Pi, else a MockFactory whose pins can do PWM.

    Raises ``ConfigError`` (one line) when the named factory is unknown or fails
    to start.
    """
    env = os.environ if env is None else env
    source, name = "GPIOZERO_PIN_FACTORY", env.get("GPIOZERO_PIN_FACTORY")
    if not name:
        source, name = "gpio.pin_factory", configured
    if name:
        factory = _named(source, name, env)
        log.info("GPIO: pin factory %s (from %s)", type(factory).__name__, source)
    elif is_raspberry_pi():
        factory = _started("gpio", "default", Device._default_pin_factory)
        log.info("GPIO: pin factory %s (gpiozero's default on this Pi)", type(factory).__name__)
    else:
        factory = MockFactory(pin_class=MockPWMPin)
    if isinstance(factory, MockFactory):
        log.warning("GPIO: pins are SIMULATED by gpiozero's MockFactory; "
                    "nothing is wired to real hardware")
    return factory


def is_raspberry_pi() -> bool:
    try:
        return b"Raspberry Pi" in PI_MODEL.read_bytes()
    except OSError:
        return False


def _named(source: str, name: str, env: Mapping[str, str]) -> Factory:
    """Look ``name`` up as gpiozero does: its entry points, exact name first."""
    factories = {point.name: point for point in entry_points(group="gpiozero_pin_factories")}
    point = factories.get(name) or factories.get(name.lower())
    if point is None:
        raise ConfigError(f"{source}: no gpiozero pin factory named {name!r} "
                          f"(installed: {', '.join(sorted(factories))})")
    factory_class = point.load()
    if issubclass(factory_class, MockFactory) and not env.get("GPIOZERO_MOCK_PIN_CLASS"):
        # gpiozero's plain MockPin cannot drive a pwm device.
        return _started(source, name, factory_class, pin_class=MockPWMPin)
    return _started(source, name, factory_class)


def _started(source: str, name: str, make, **kwargs) -> Factory:
    try:
        return make(**kwargs)
    except Exception as exc:  # each backend fails its own way (ImportError, OSError, ...)
        raise ConfigError(f"{source}: pin factory {name!r} did not start: {exc}") from None
