"""The trigger worker: runs input-triggered actions off gpiozero's callback threads."""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Callable

from ..workers import WorkerHealth

log = logging.getLogger(__name__)


class TriggerWorker(threading.Thread):
    """Runs queued jobs one at a time on its own thread.

    gpiozero calls input callbacks on its pin-handling threads; they only
    ``submit()``, so a slow capture never delays the next edge. The queue is
    bounded: when it is full ``submit`` refuses and the caller counts the drop.
    ``stop()`` sets the ``stopping`` Event and joins; jobs still queued are dropped.
    """

    def __init__(self, size: int = 32, health: WorkerHealth | None = None):
        super().__init__(name="picam-gpio-triggers", daemon=True)
        self.health = health or WorkerHealth()
        self.health.watch(self)
        self.stopping = threading.Event()
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(size)

    def submit(self, job: Callable[[], None]) -> bool:
        if self.stopping.is_set():
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def run(self) -> None:
        while True:
            job = self._queue.get()
            if self.stopping.is_set():
                return
            try:
                job()
            except Exception as exc:  # a job reports its own failures; this keeps the thread alive
                self.health.failed(self.name, exc)

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        # Wake a worker waiting on an empty queue; a full queue means it is busy, and
        # it will see ``stopping`` before its next job.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.error("%s did not stop within %.1f s", self.name, timeout)
