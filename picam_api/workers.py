"""Background threads owned by the app: stopped by an Event and joined, never dead silently.

Every long-lived thread (the time-lapse scheduler, these ``Worker``s, the GPIO
trigger worker, the stream producers) reports an unexpected exception to the
app's ``WorkerHealth``: logged with its traceback, counted, and shown in
``/api/v1/health``; then the thread goes on (``supervise`` runs its loop again).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .clock import iso

log = logging.getLogger(__name__)

# How long a thread whose loop failed waits before it runs the loop again.
RESTART_DELAY_S = 1.0


class WorkerHealth:
    """Each background thread's unexpected errors: how many, the last one, and when."""

    def __init__(self):
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._errors: dict[str, dict] = {}

    def watch(self, thread: threading.Thread) -> None:
        """Report whether ``thread`` (a long-lived one) is alive."""
        with self._lock:
            self._threads[thread.name] = thread

    def failed(self, name: str, exc: BaseException) -> None:
        """Log ``exc`` with its traceback and count it against ``name``."""
        log.error("%s met an unexpected error and goes on", name, exc_info=exc)
        with self._lock:
            record = self._errors.setdefault(name, {"restarts": 0})
            record.update(restarts=record["restarts"] + 1,
                          last_error=f"{type(exc).__name__}: {exc}"[:300],
                          last_error_at=iso(time.time()))

    def report(self) -> dict[str, dict]:
        """``{name: {alive, restarts, last_error, last_error_at}}`` for /api/v1/health."""
        with self._lock:
            names = sorted(set(self._threads) | set(self._errors))
            return {name: {"alive": self._threads[name].is_alive() if name in self._threads
                           else None,
                           "restarts": self._errors.get(name, {}).get("restarts", 0),
                           "last_error": self._errors.get(name, {}).get("last_error"),
                           "last_error_at": self._errors.get(name, {}).get("last_error_at")}
                    for name in names}


def supervise(name: str, loop: Callable[[], None], stopping: threading.Event,
              health: WorkerHealth) -> None:
    """Run ``loop()`` until it returns or ``stopping`` is set, again after each failure."""
    while not stopping.is_set():
        try:
            loop()
            return
        except Exception as exc:
            health.failed(name, exc)
            stopping.wait(RESTART_DELAY_S)


class Worker(threading.Thread):
    """Runs ``step()`` every ``interval`` seconds, or sooner when woken.

    ``stop()`` sets the ``stopping`` Event and joins, so a worker never outlives
    the app that made it. ``step`` errors go to ``health`` and the loop goes on.
    """

    def __init__(self, name: str, step: Callable[[], None], interval: float,
                 health: WorkerHealth | None = None):
        super().__init__(name=name, daemon=True)
        self.step = step
        self.interval = interval
        self.health = health or WorkerHealth()
        self.health.watch(self)
        self.stopping = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self.stopping.is_set():
                break
            try:
                self.step()
            except Exception as exc:
                self.health.failed(self.name, exc)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.error("%s did not stop within %.1f s", self.name, timeout)
