"""Motion detection as a service: the worker that reads luma frames, the events, the actions.

One ``Worker`` thread (stopped by its Event and joined) asks the camera owner for
a small luma frame ``motion.fps`` times a second while detection is on and
inside its hours, feeds the ``Detector`` and the ``Tracker``, and for each
``motion.start``/``motion.end`` publishes the event and queues the configured
actions on the GPIO trigger worker (photos with source ``motion``, clips,
outputs for a while, time-lapse pause/resume), exactly as an input's trigger
does. ``require_input`` names a GPIO input (a PIR) that must also be active
within ``require_window_s``.

PATCH /api/v1/motion's changes are kept in the database (``meta``), so they
survive a restart and win over the config.
"""
from __future__ import annotations

import collections
import datetime as dt
import io
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from PIL import Image, ImageDraw

from ..clock import iso
from ..errors import CameraError, Conflict, InvalidInput
from ..motion_rules import MaskError, check_masks
from ..resources import API
from ..timelapse.schedule import Window
from ..workers import Worker, WorkerHealth
from .detector import Detector
from .masks import rasterise
from .tracker import Tracker, box

if TYPE_CHECKING:
    from ..camera import CameraOwner
    from ..db import Database
    from ..events import EventBus
    from ..gpio import GpioService
    from ..timelapse.sun import Location

log = logging.getLogger(__name__)

SETTINGS_KEY = "motion_settings"
TUNABLE = ("enabled", "sensitivity", "min_area_pct", "cooldown_s", "masks")
IDLE_INTERVAL_S = 1.0
# A preview older than this is taken afresh.
PREVIEW_MAX_AGE_S = 2.0
# Running averages of the per-frame cost weigh the newest frame this much.
COST_WEIGHT = 0.05


class MotionService:
    """Motion detection of one app; ``start()``/``stop()`` are the app's."""

    def __init__(self, config: dict, *, owner: CameraOwner, gpio: GpioService, events: EventBus,
                 db: Database, health: WorkerHealth, location: Location | None = None):
        self.config = config["motion"]
        self.owner = owner
        self.gpio = gpio
        self.events = events
        self.db = db
        self.width, self.height = self.config["size"]
        self.fps = self.config["fps"]
        hours = self.config["active_hours"]
        self.window = Window.parse(hours["start"], hours["end"], location) if hours["start"] else None
        self.settings = {key: self.config[key] for key in TUNABLE}
        self.settings.update(self._stored())
        self._lock = threading.Lock()  # the settings, the detector and the tracker
        self.detector = Detector(self.width, self.height, sensitivity=self.settings["sensitivity"],
                                 min_area_pct=self.settings["min_area_pct"],
                                 global_change_pct=self.config["global_change_pct"],
                                 background_s=self.config["background_s"], fps=self.fps,
                                 mask=self._mask(self.settings["masks"]))
        self.tracker = Tracker(self.config["min_frames"], self.config["end_after_s"],
                               self.settings["cooldown_s"])
        self.recent: collections.deque[dict] = collections.deque(maxlen=self.config["keep_events"])
        self.state = "off"
        self.last_error: str | None = None
        self.last = None  # the last Observation
        self.last_frame_at: float | None = None
        self.actions_dropped = 0
        self.action_failures = 0
        self.last_action_error: str | None = None
        self.detect_ms: float | None = None  # CPU per frame: the detector alone
        self.frame_ms: float | None = None  # CPU per frame: reading it and detecting
        self._reading = False  # luma frames are being asked for (the camera keeps its stream)
        self._preview: tuple[np.ndarray, np.ndarray | None, tuple | None, float] | None = None
        self.worker = Worker("picam-motion", self._step, self._interval(), health)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float) -> None:
        """Stop the worker; an event in progress ends (and is published) first."""
        self.worker.stop(timeout)
        with self._lock:
            self._idle("off")

    # -- the API's operations --------------------------------------------------------

    def status(self) -> dict:
        """GET /api/v1/motion's body."""
        with self._lock:
            obs, event = self.last, self.tracker.event
            cost = (self.frame_ms or 0.0) * self.fps / 10.0  # ms a second over 1000, in percent
            return {
                "enabled": self.settings["enabled"], "state": self.state,
                "active": event is not None, "event": event.id if event else None,
                "score": obs.score if obs else 0.0, "area_pct": obs.area_pct if obs else 0.0,
                "bbox": box(obs.bbox) if obs else None,
                "last_frame_at": iso(self.last_frame_at) if self.last_frame_at else None,
                "size": {"width": self.width, "height": self.height}, "fps": self.fps,
                "sensitivity": self.settings["sensitivity"],
                "min_area_pct": self.settings["min_area_pct"],
                "cooldown_s": self.settings["cooldown_s"], "masks": self.settings["masks"],
                "global_change_pct": self.config["global_change_pct"],
                "min_frames": self.config["min_frames"], "end_after_s": self.config["end_after_s"],
                "require_input": self.config["require_input"] or None,
                "active_hours": ({"start": self.config["active_hours"]["start"],
                                  "end": self.config["active_hours"]["end"]}
                                 if self.window else None),
                "last_error": self.last_error,
                "events": list(self.recent),
                "counters": {**self.tracker.counters.to_dict(),
                             "actions_dropped": self.actions_dropped,
                             "action_failures": self.action_failures},
                "last_action_error": self.last_action_error,
                "cpu": {"detect_ms": _rounded(self.detect_ms), "frame_ms": _rounded(self.frame_ms),
                        "percent_of_core": round(cost, 3)},
                "links": {"self": f"{API}/motion", "preview": f"{API}/motion/preview.jpg"},
            }

    def update(self, changes: Mapping[str, Any]) -> dict:
        """Apply PATCH /api/v1/motion (already type-checked) and keep it; the new status."""
        changes = dict(changes)
        if "masks" in changes:
            try:
                changes["masks"] = check_masks(changes["masks"])
            except MaskError as exc:
                where = "masks" if exc.where == "masks" else f"masks.{exc.where}"
                raise InvalidInput({where: [exc.reason]}) from None
        if changes.get("enabled") and not self.settings["enabled"]:
            self._probe()
        with self._lock:
            self.settings.update(changes)
            self.detector.sensitivity = self.settings["sensitivity"]
            self.detector.min_area_pct = self.settings["min_area_pct"]
            self.tracker.cooldown_s = self.settings["cooldown_s"]
            if "masks" in changes:
                self.detector.set_mask(self._mask(self.settings["masks"]))
                self.detector.reset()
            stored = {**self._stored(), **changes}
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value", (SETTINGS_KEY, json.dumps(stored)))
        self.worker.interval = self._interval()
        self.worker.wake()
        body = self.status()
        self.events.publish("motion.changed", body)
        return body

    def preview_jpeg(self) -> bytes:
        """The latest frame (or one taken now) with the masks (blue), the changed pixels
        (red) and their box (green) drawn: for tuning."""
        with self._lock:
            preview = self._preview
        if preview is None or time.time() - preview[3] > PREVIEW_MAX_AGE_S:
            frame = self.owner.luma_frame((self.width, self.height))
            if not self._reading:
                self.owner.end_luma()
            preview = (frame.pixels, None, None, frame.time)
        pixels, changed, bbox, _ = preview
        rgb = np.repeat(pixels[:, :, None], 3, axis=2)
        mask = self.detector.mask
        rgb[mask] = (rgb[mask] // 2) + np.array([0, 0, 120], np.uint8)
        if changed is not None:
            rgb[changed] = (255, 0, 0)
        image = Image.fromarray(rgb, "RGB")
        if bbox is not None:
            x, y, w, h = bbox
            ImageDraw.Draw(image).rectangle(
                (x * self.width, y * self.height, (x + w) * self.width - 1,
                 (y + h) * self.height - 1), outline=(0, 255, 0))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        return buffer.getvalue()

    # -- the worker ------------------------------------------------------------------

    def _step(self) -> None:
        with self._lock:
            if not self.settings["enabled"]:
                self._idle("off")
                return
            if self.window is not None and not self.window.contains(dt.datetime.now()):
                self._idle("outside_hours")
                return
        started = time.thread_time()
        try:
            frame = self.owner.luma_frame((self.width, self.height))
        except Conflict as exc:  # this backend has no luma frames: say so, keep asking slowly
            with self._lock:
                self._idle("unsupported", exc.detail)
            return
        except CameraError as exc:  # busy, timed out, gone: the owner reopens; try again
            self.state, self.last_error = "camera_error", exc.detail
            return
        self._reading = True
        detect_from = time.thread_time()
        with self._lock:
            if not self.settings["enabled"]:
                return
            obs = self.detector.feed(frame.pixels)
            transitions = self.tracker.update(obs, frame.time, self._confirmed)
            self.last, self.last_frame_at = obs, frame.time
            self._preview = (frame.pixels, self.detector.changed, obs.bbox, frame.time)
            self.state, self.last_error = ("learning" if obs.learning else "running"), None
            done = time.thread_time()
            self.detect_ms = _average(self.detect_ms, (done - detect_from) * 1000)
            self.frame_ms = _average(self.frame_ms, (done - started) * 1000)
            # Under the lock: status() reads the recent events. Both calls only queue.
            for kind, data in transitions:
                self._emit(kind, data)

    def _idle(self, state: str, error: str | None = None) -> None:
        """Not detecting (off, outside hours, unsupported): end an event, let the stream go.

        Called with ``_lock`` held.
        """
        for kind, data in self.tracker.finish(time.time()):
            self._emit(kind, data)
        if self._reading:
            self._reading = False
            try:
                self.owner.end_luma()
            except CameraError as exc:
                log.warning("motion: the camera did not drop its luma stream: %s", exc.detail)
        if state != self.state:
            self.detector.reset()  # a background from before the pause is stale
        self.state, self.last_error = state, error
        self.last = None
        if hasattr(self, "worker"):
            self.worker.interval = self._interval()

    def _emit(self, kind: str, data: dict) -> None:
        """Publish one event and queue its actions; called with ``_lock`` held."""
        if self.config["require_input"] and kind == "motion.start":
            data = {**data, "input": self.config["require_input"]}
        self.recent.appendleft({"type": kind, **data})
        self.events.publish(kind, data)
        actions = self.config["on_start" if kind == "motion.start" else "on_end"]
        if actions and not self.gpio.run_actions(actions, source="motion", trigger="motion",
                                                 failed=self._action_failed):
            self.actions_dropped += 1
            log.warning("motion: the trigger queue is full; the %s actions are dropped", kind)

    def _action_failed(self, error: str) -> None:
        self.action_failures += 1
        self.last_action_error = error
        log.warning("motion action %s", error)

    def _confirmed(self) -> bool:
        name = self.config["require_input"]
        if not name:
            return True
        return self.gpio.get(name).active_within(self.config["require_window_s"])

    # -- helpers ---------------------------------------------------------------------

    def _probe(self) -> None:
        """Ask for one frame before switching on: a backend without luma frames is a 409 now.

        The stream that frame needed stays for the worker, which reads next and lets
        it go when it idles (on a Pi, dropping it now would restart the camera twice).
        """
        try:
            self.owner.luma_frame((self.width, self.height))
        except CameraError:
            pass  # a camera fault is reported by the worker, and may clear
        self._reading = True

    def _interval(self) -> float:
        if not self.settings["enabled"] or self.state in ("unsupported", "outside_hours"):
            return IDLE_INTERVAL_S
        return 1.0 / self.fps

    def _mask(self, masks: list[dict]) -> np.ndarray | None:
        return rasterise(masks, self.width, self.height) if masks else None

    def _stored(self) -> dict:
        row = self.db.conn.execute("SELECT value FROM meta WHERE key = ?", (SETTINGS_KEY,)).fetchone()
        if row is None:
            return {}
        stored = json.loads(row[0])
        return {key: value for key, value in stored.items() if key in TUNABLE}


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + COST_WEIGHT * (new - old)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
