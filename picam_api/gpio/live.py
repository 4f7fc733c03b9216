"""Live devices: a gpiozero device plus what the API reports and enforces about it."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import threading
import time
from typing import Callable, Iterator

from .devices import Kind

log = logging.getLogger(__name__)


class LiveDevice:
    """One configured device: its name, kind and pin, and the gpiozero device.

    ``changed(device)`` is called, outside the device's lock, after each change
    of value that passes through here (the GPIO service publishes it).
    """

    def __init__(self, name: str, kind: Kind, pin: str, device):
        self.name = name
        self.kind = kind
        self.pin = pin
        self.device = device
        self.changed: Callable[[LiveDevice], None] = _ignore
        self._lock = threading.Lock()

    def state(self) -> dict:
        return {"name": self.name, "kind": self.kind.name, "pin": self.pin,
                "value": self.device.value}

    def close(self) -> None:
        self.device.close()


class Output(LiveDevice):
    """An output. Every write stops what ran before it: a blink or pulse (gpiozero
    does that) and a trigger's timed hold (``set(..., for_s)``, done here).

    ``writes`` counts writes, so the capture light can tell whether anyone
    changed the output while it was lit.
    """

    def __init__(self, *args):
        super().__init__(*args)
        self.writes = 0
        self._hold: threading.Timer | None = None

    def set(self, value: float, for_s: float | None = None) -> None:
        """Set the value; with ``for_s``, switch off again after that many seconds."""
        with self._writing() as device:
            device.value = value
            if for_s:
                self._hold = threading.Timer(for_s, self._hold_expired)
                self._hold.name = f"picam-gpio-hold-{self.name}"
                self._hold.daemon = True
                self._hold.start()

    def toggle(self) -> None:
        with self._writing() as device:
            device.toggle()

    def blink(self, on_time: float, off_time: float, n: int | None) -> None:
        """Blink in gpiozero's background thread, ``n`` times or until the next write."""
        with self._writing() as device:
            device.blink(on_time=on_time, off_time=off_time, n=n)

    def pulse(self, fade_in_time: float, fade_out_time: float, n: int | None) -> None:
        with self._writing() as device:
            device.pulse(fade_in_time=fade_in_time, fade_out_time=fade_out_time, n=n)

    @contextlib.contextmanager
    def lit(self) -> Iterator[None]:
        """Fully on for the length of a capture, then back as it was.

        The light is best effort: if it cannot be switched, the capture still
        runs. It is not switched back if someone wrote to it meanwhile.
        """
        restore = self._light_up()
        try:
            yield
        finally:
            if restore is not None:
                self._light_down(*restore)

    def close(self) -> None:
        with self._lock:
            hold = self._cancel_hold()
        if hold is not None:
            hold.join()
        super().close()

    @contextlib.contextmanager
    def _writing(self):
        with self._lock:
            self._cancel_hold()
            yield self.device
            self.writes += 1
        self.changed(self)

    def _cancel_hold(self) -> threading.Timer | None:
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.cancel()
        return hold

    def _hold_expired(self) -> None:
        with self._lock:
            # A write since the hold began has cancelled or replaced it.
            if self._hold is not threading.current_thread():
                return
            self._hold = None
            self.device.off()
            self.writes += 1
        self.changed(self)

    def _light_up(self) -> tuple[float, int] | None:
        try:
            with self._lock:
                before = self.device.value
                if before == 1:
                    return None
                self.device.on()
                return before, self.writes
        except Exception as exc:  # closed, or the backend's own error: light is best effort
            log.warning("capture light %s not switched on: %s", self.name, exc)
            return None

    def _light_down(self, before: float, writes: int) -> None:
        try:
            with self._lock:
                if self.writes == writes:
                    self.device.value = before
        except Exception as exc:  # as in _light_up
            log.warning("capture light %s not switched back: %s", self.name, exc)


class Input(LiveDevice):
    """An input: counts its edges and hands its trigger actions to ``submit``.

    gpiozero calls the event methods on its own threads, so they only record
    and enqueue; ``submit`` returns False when the queue is full. Each event
    ends with ``triggered(device, event, result)``, where result is fired,
    suppressed, dropped or none (no actions).
    """

    def __init__(self, *args, actions: dict[str, list[dict]], min_interval_s: float,
                 submit: Callable[["Input", str, list[dict]], bool]):
        super().__init__(*args)
        self.actions = actions
        self.min_interval_s = min_interval_s
        self._submit = submit
        self._last_fired: dict[str, float] = {}
        self.edges = 0
        self.last_changed: str | None = None
        self.fired = self.suppressed = self.dropped = self.failures = 0
        self.last_error: str | None = None
        self.triggered: Callable[[Input, str, str], None] = _ignore
        self.device_class: str | None = None  # what Home Assistant should call it (motion...)
        for event, callback in self.kind.events.items():
            counts_edge = callback in ("when_activated", "when_deactivated")
            setattr(self.device, callback, functools.partial(self._event, event, counts_edge))

    def state(self) -> dict:
        with self._lock:
            return {**super().state(), "last_changed": self.last_changed, "edges": self.edges,
                    "triggers_fired": self.fired, "triggers_suppressed": self.suppressed,
                    "triggers_dropped": self.dropped, "trigger_failures": self.failures,
                    "last_error": self.last_error}

    def failed(self, error: str) -> None:
        """Count a trigger action that failed (called from the trigger worker)."""
        with self._lock:
            self.failures += 1
            self.last_error = error

    def _event(self, event: str, counts_edge: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if counts_edge:
                self.edges += 1
                self.last_changed = _now_iso()
            result = self._fire(event, now)
        if counts_edge:
            self.changed(self)
        self.triggered(self, event, result)

    def _fire(self, event: str, now: float) -> str:
        actions = self.actions.get(event)
        if not actions:
            return "none"
        if now - self._last_fired.get(event, float("-inf")) < self.min_interval_s:
            self.suppressed += 1
            return "suppressed"
        self._last_fired[event] = now
        if self._submit(self, event, actions):
            self.fired += 1
            return "fired"
        self.dropped += 1
        return "dropped"


def _ignore(*args) -> None:
    pass


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")
