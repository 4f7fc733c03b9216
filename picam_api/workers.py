"""Background threads owned by the app: stopped by an Event and joined."""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Worker(threading.Thread):
    """Runs ``step()`` every ``interval`` seconds, or sooner when woken.

    ``stop()`` sets the ``stopping`` Event and joins, so a worker never outlives
    the app that made it. ``step`` errors are logged and the loop goes on.
    """

    def __init__(self, name: str, step: Callable[[], None], interval: float):
        super().__init__(name=name, daemon=True)
        self.step = step
        self.interval = interval
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
            except Exception:
                log.exception("%s failed; it will run again", self.name)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.error("%s did not stop within %.1f s", self.name, timeout)
