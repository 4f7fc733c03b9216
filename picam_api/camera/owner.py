"""The camera owner: one backend, one lock, and the recovery rules around them."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Callable

from ..errors import CameraBusy, CameraError, CameraUnavailable, CaptureTimeout
from .base import CameraBackend, Capabilities, Capture, CaptureSettings

log = logging.getLogger(__name__)


class CameraOwner:
    """Serialises every use of the camera: snapshots, photos, time-lapse frames, streams.

    The camera is opened on first use and reopened after a timeout or a lost
    camera, so a fault that clears heals without a restart. A capture waits at
    most ``timeout`` seconds for the lock, then answers ``CameraBusy``.

    ``hooks`` are context-manager factories entered around each capture (the
    GPIO capture light uses one).
    """

    def __init__(self, backend: CameraBackend, timeout: float, retry_after: int,
                 reopen_backoff: float = 1.0):
        self.backend = backend
        self.timeout = timeout
        self.retry_after = retry_after
        self.reopen_backoff = reopen_backoff
        self.hooks: list[Callable] = []
        self._lock = threading.Lock()
        self._capabilities: Capabilities | None = None
        self._is_open = False
        self._open_error: CameraError | None = None
        self._open_failed_at = float("-inf")
        self.captures = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_capture_at: float | None = None  # wall clock, for /info and /health

    @property
    def capabilities(self) -> Capabilities:
        """What the camera can do; opens it if it has never been opened."""
        if self._capabilities is None:
            with self._locked():
                self._ensure_open()
        return self._capabilities

    def capture(self, settings: CaptureSettings) -> Capture:
        """Take one still through the backend, mapping faults to ``CameraError``s."""
        with self._locked():
            self._ensure_open()
            try:
                with contextlib.ExitStack() as stack:
                    for hook in self.hooks:
                        stack.enter_context(hook())
                    result = self.backend.capture(settings, self.timeout)
            except CameraError as exc:
                self.failures += 1
                self.last_error = exc.detail
                if isinstance(exc, (CaptureTimeout, CameraUnavailable)):
                    log.error("camera fault, will reopen on next use: %s", exc.detail)
                    self._close_backend()
                raise self._tagged(exc)
            self.captures += 1
            self.last_capture_at = time.time()
            self.last_error = None
            return result

    def health(self) -> dict:
        """Open the camera if it can be, and report whether it is usable."""
        if self._lock.acquire(timeout=0.5):
            try:
                self._ensure_open()
            except CameraError:
                pass
            finally:
                self._lock.release()
        ok = self._is_open
        return {"ok": ok, "state": "open" if ok else "unavailable",
                "error": None if ok else (self._open_error.detail if self._open_error else self.last_error),
                "last_capture_at": self.last_capture_at}

    def close(self) -> None:
        """Release the camera, waiting for a capture in flight to end first."""
        acquired = self._lock.acquire(timeout=self.timeout + 1)
        try:
            self._close_backend()
        finally:
            if acquired:
                self._lock.release()

    @contextlib.contextmanager
    def _locked(self):
        if not self._lock.acquire(timeout=self.timeout):
            raise self._tagged(CameraBusy("another capture still holds the camera"))
        try:
            yield
        finally:
            self._lock.release()

    def _ensure_open(self) -> None:
        if self._is_open:
            return
        if time.monotonic() - self._open_failed_at < self.reopen_backoff:
            raise self._tagged(self._open_error)
        try:
            self._capabilities = self.backend.open()
        except CameraError as exc:
            self._open_error = exc
            self._open_failed_at = time.monotonic()
            log.error("camera did not open: %s", exc.detail)
            raise self._tagged(exc)
        self._is_open = True
        self._open_error = None
        log.info("camera open: %s, sensor %dx%d", self._capabilities.model,
                 *self._capabilities.sensor_size)

    def _close_backend(self) -> None:
        self._is_open = False
        try:
            self.backend.close()
        except Exception:  # closing must never mask the fault that caused it
            log.exception("camera close failed")

    def _tagged(self, exc: CameraError) -> CameraError:
        exc.retry_after = self.retry_after
        return exc
