"""The GPIO service: one app's devices, their state, PATCH actions and triggers."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from gpiozero.pins.mock import MockFactory

from .. import resources
from ..errors import ConfigError, Conflict, InvalidInput, NotFound, PicamError
from .devices import KINDS
from .factory import make_pin_factory
from .live import Input, LiveDevice, Output
from .triggers import TriggerWorker

if TYPE_CHECKING:
    from ..camera import CameraOwner
    from ..capture import CaptureService
    from ..events import EventBus
    from ..timelapse import TimelapseService
    from ..video import VideoService
    from ..workers import WorkerHealth

log = logging.getLogger(__name__)


class GpioService:
    """The GPIO devices named in the config, built on this app's own pin factory.

    Every device is built when the service is made, so a pin that cannot be had
    stops start-up with one line. Inputs hand their trigger actions to a
    ``TriggerWorker``; photos go through ``capture``, time-lapse actions through
    ``timelapses`` and clips through ``videos`` (a clip records in the background;
    a second one while it runs fails as a 409 would). The capture light (``light``,
    an output's name or "") is a hook of the camera ``owner``. ``shutdown()`` closes
    every device, so the pins are free for the next start.
    """

    def __init__(self, config: dict, *, owner: CameraOwner, capture: CaptureService,
                 timelapses: TimelapseService, videos: VideoService, events: EventBus,
                 health: WorkerHealth, light: str = ""):
        self._owner = owner
        self._capture = capture
        self._timelapses = timelapses
        self._videos = videos
        self.events = events
        self.triggers = TriggerWorker(health=health)
        self.factory = self._pin_factory(config)
        self.devices: dict[str, LiveDevice] = {}
        try:
            for spec in config["devices"]:
                self.devices[spec["name"]] = self._build(spec)
            self.light = self._capture_light(light)
        except BaseException:
            self._close()
            raise
        if self.light is not None:
            owner.hooks.append(self.light.lit)

    def start(self) -> None:
        """Start running trigger actions (inputs may queue them from construction on)."""
        self.triggers.start()

    def shutdown(self, timeout: float) -> None:
        """Stop the triggers (a capture in flight ends first), then release every pin."""
        self.triggers.stop(timeout)
        hooks = self._owner.hooks
        if self.light is not None and self.light.lit in hooks:
            hooks.remove(self.light.lit)
        self._close()

    def info(self) -> dict:
        """What /api/v1/info reports: which pin factory, and whether the pins are simulated."""
        return {"pin_factory": type(self.factory).__name__ if self.factory else None,
                "mock": isinstance(self.factory, MockFactory),
                "devices": len(self.devices),
                "capture_light": self.light.name if self.light else None}

    def get(self, name: str) -> LiveDevice:
        """The device named ``name``, or ``NotFound``."""
        try:
            return self.devices[name]
        except KeyError:
            # Never echo the name: it is whatever the client put in the URL.
            raise NotFound("there is no GPIO device with that name; see GET /api/v1/gpio") from None

    def apply(self, name: str, change: dict) -> LiveDevice:
        """Apply one PATCH action (``value``, ``toggle``, ``blink`` or ``pulse``) to an output."""
        device = self.get(name)
        if not isinstance(device, Output):
            raise Conflict(f"{name} is an input ({device.kind.name}); only outputs can be changed")
        [(action, args)] = change.items()
        if action not in device.kind.actions:
            able = [kind.name for kind in KINDS.values() if action in kind.actions]
            raise InvalidInput({action: [f"a {device.kind.name} cannot {action}; "
                                         f"only {', '.join(able)} devices can"]})
        if action == "value":
            try:
                device.set(device.kind.check_value(args))
            except ValueError as exc:
                raise InvalidInput({"value": [f"{exc} for a {device.kind.name}"]}) from None
        elif action == "toggle":
            device.toggle()
        elif action == "blink":
            device.blink(**args)
        else:
            device.pulse(**args)
        return device

    def _pin_factory(self, config: dict):
        try:
            return make_pin_factory(config["pin_factory"])
        except ConfigError as exc:
            if config["devices"]:
                raise
            # A camera-only install must not fail to start because GPIO cannot.
            log.warning("GPIO unavailable, and no devices are configured: %s", exc.detail)
            return None

    def _build(self, spec: dict) -> LiveDevice:
        name, pin, kind = spec["name"], spec["pin"], KINDS[spec["kind"]]
        options = {key: value for key, value in spec.items() if key in kind.options}
        try:
            device = kind.device_class(pin, pin_factory=self.factory, **options)
        except Exception as exc:  # pin in use, a fixed pull-up, no PWM: each backend says it its way
            raise ConfigError(f"gpio.devices: {name}: {pin} cannot be a {kind.name}: {exc}") from None
        if not kind.is_input:
            live = Output(name, kind, pin, device)
        else:
            live = Input(name, kind, pin, device,
                         actions={event: spec[event] for event in kind.events if event in spec},
                         min_interval_s=spec.get("min_interval_s", 0.0), submit=self._submit)
            live.triggered = self._triggered
            live.device_class = spec.get("device_class")
        live.changed = self._changed
        return live

    def _changed(self, device: LiveDevice) -> None:
        self.events.publish("gpio.changed", resources.gpio_device(device))

    def _triggered(self, device: Input, event: str, result: str) -> None:
        self.events.publish("gpio.triggered", {"name": device.name, "kind": device.kind.name,
                                               "event": event, "result": result})

    def _capture_light(self, name: str) -> Output | None:
        # The config check made sure it names an output.
        return self.devices[name] if name else None

    def _submit(self, trigger: Input, event: str, actions: list[dict]) -> bool:
        return self.triggers.submit(functools.partial(self._run, trigger, event, actions))

    def _run(self, trigger: Input, event: str, actions: list[dict]) -> None:
        """On the trigger worker: run each action; a failure is counted, never raised."""
        for action in actions:
            try:
                self._perform(trigger.name, action)
            except Exception as exc:
                error = f"{event}: {action['action']}: {_describe(exc)}"
                trigger.failed(error)
                log.warning("GPIO trigger %s %s", trigger.name, error)

    def _perform(self, trigger: str, action: dict) -> None:
        kind = action["action"]
        if kind == "photo":
            self._capture.take_photo(action["settings"], source="gpio", trigger=trigger)
        elif kind == "timelapse":
            self._timelapses.set_state(action["timelapse"], action["state"])
        elif kind == "video":
            self._videos.record({"duration_s": action["duration_s"]}, trigger=trigger)
        else:
            self.devices[action["device"]].set(action["value"], action.get("for_s"))

    def _close(self) -> None:
        for device in self.devices.values():
            try:
                device.close()
            except Exception:  # one stuck device must not keep the others' pins
                log.exception("GPIO device %s did not close", device.name)
        if self.factory is not None:
            self.factory.close()


def _describe(exc: Exception) -> str:
    return exc.detail if isinstance(exc, PicamError) else str(exc) or type(exc).__name__
