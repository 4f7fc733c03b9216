"""The camera owner: one backend, one lock, and the recovery rules around them."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import Callable

from ..clock import iso
from ..errors import CameraBusy, CameraError, CameraUnavailable, CaptureTimeout
from ..events import NO_EVENTS
from . import exif
from .base import CameraBackend, Capabilities, Capture, CaptureSettings, LumaFrame, VideoSettings

log = logging.getLogger(__name__)


class CameraOwner:
    """Serialises every use of the camera: snapshots, photos, time-lapse frames, streams.

    The camera is opened on first use and reopened after a timeout or a lost
    camera, so a fault that clears heals without a restart. A capture waits at
    most ``timeout`` seconds for the lock, then answers ``CameraBusy``.

    ``hooks`` are context-manager factories entered around each capture (the
    GPIO capture light uses one). A ``camera.health`` event says each time the
    camera becomes usable or unusable.
    """

    def __init__(self, backend: CameraBackend, timeout: float, retry_after: int,
                 reopen_backoff: float = 1.0, events=NO_EVENTS):
        self.backend = backend
        self.events = events
        self._usable: bool | None = None
        self.timeout = timeout
        self.retry_after = retry_after
        self.reopen_backoff = reopen_backoff
        self.hooks: list[Callable] = []
        self._lock = _StampedLock()
        self._capabilities: Capabilities | None = None
        self._is_open = False
        self._open_error: CameraError | None = None
        self._open_failed_at = float("-inf")
        self.captures = 0
        self.failures = 0
        # Reset by any good frame; the systemd watchdog reads it (watchdog.py).
        self.timeouts_in_a_row = 0
        self._timeouts = 0  # ever; a waiter compares it before and after its wait
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
        """Take one still through the backend, mapping faults to ``CameraError``s.

        The backend may take longer than ``timeout`` for a long exposure
        (``capture_timeout``); JPEGs get EXIF from the frame's metadata.
        """
        def take() -> Capture:
            bound = self.backend.capture_timeout(settings, self.timeout)
            # Counted from here: opening the camera first (under the same lock) is
            # not part of this capture's time (pi-audit F4).
            self._lock.deadline = time.monotonic() + bound
            with contextlib.ExitStack() as stack:
                for hook in self.hooks:
                    stack.enter_context(hook())
                result = self.backend.capture(settings, bound)
            taken_at = dt.datetime.now(dt.timezone.utc)
            data = result.data
            if result.format == "jpeg":
                data = exif.with_exif(data, result.metadata, self._capabilities.model, taken_at)
            return dataclasses.replace(result, data=data, taken_at=taken_at)
        return self._counted(take)

    def stream_frame(self, settings: CaptureSettings, fps: float) -> Capture:
        """The next live-view frame; counted like a capture, but without the hooks
        (a capture light would flicker at the stream's rate)."""
        return self._counted(lambda: self.backend.stream_frame(settings, fps, self.timeout))

    def end_stream(self, size: tuple[int, int]) -> None:
        """Tell the backend that nobody wants stream frames of ``size`` any more.

        A stream of that size that starts meanwhile just restarts the backend's
        streaming on its first frame.
        """
        with self._locked():
            if self._is_open:
                self._guarded(lambda: self.backend.stop_stream(size))

    def start_encoder(self, settings: VideoSettings, output, follow: bool = False):
        """Start the backend's H.264 encoder into ``output`` (see ``CameraBackend``).

        Only starting and stopping take the camera lock: the encoder then runs on
        its own thread, and captures go on beside it.
        """
        with self._locked():
            self._ensure_open()
            return self._guarded(lambda: self.backend.start_encoder(settings, output, follow))

    def stop_encoder(self, encoder) -> None:
        """Stop an encoder ``start_encoder`` returned; nothing to do once the camera closed."""
        with self._locked():
            if self._is_open:
                self._guarded(lambda: self.backend.stop_encoder(encoder))

    def luma_frame(self, size: tuple[int, int]) -> LumaFrame:
        """The next small luma frame for motion detection (see ``CameraBackend.luma_frame``).

        Faults count and reopen the camera as a capture's do, but it is not a
        capture: no hooks (a capture light would flash at the detector's rate),
        and ``captures`` and ``last_capture_at`` stay as they were.
        """
        with self._locked():
            self._ensure_open()
            return self._guarded(lambda: self.backend.luma_frame(size, self.timeout))

    def end_luma(self) -> None:
        """Motion detection stopped: the backend may drop the stream that fed it."""
        with self._locked():
            if self._is_open:
                self._guarded(self.backend.stop_luma)
    def request_keyframe(self, encoder) -> bool:
        """Ask a running encoder for a keyframe now; False if it cannot. Takes no lock:
        backends only set a flag here (see ``CameraBackend.request_keyframe``)."""
        try:
            return self.backend.request_keyframe(encoder)
        except CameraError as exc:
            log.warning("keyframe request failed: %s", exc.detail)
            return False

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
                "last_capture_at": iso(self.last_capture_at) if self.last_capture_at else None}

    def close(self) -> None:
        """Release the camera, waiting for a capture in flight to end first."""
        acquired = self._lock.acquire(timeout=self.timeout + 1)
        try:
            self._close_backend()
        finally:
            if acquired:
                self._lock.release()

    def held_for(self) -> float:
        """Seconds the call now holding the camera has run; 0.0 when it is idle.

        Every backend call is bounded by ``timeout``, so one that runs far longer
        is stuck where this process cannot end it; the systemd watchdog reads this.
        """
        since = self._lock.held_since
        return 0.0 if since is None else time.monotonic() - since

    def overdue(self) -> float:
        """Seconds the call now holding the camera has run past its own bound; 0.0 if none.

        The bound is ``timeout`` from when the lock was taken, or for a capture the
        backend's ``capture_timeout`` (a long exposure) from when the capture began.
        """
        since, deadline = self._lock.held_since, self._lock.deadline
        if since is None:
            return 0.0
        return max(0.0, time.monotonic() - max(since + self.timeout, deadline or 0.0))

    def _counted(self, take: Callable[[], Capture]) -> Capture:
        timeouts = self._timeouts
        with self._locked():
            if self._timeouts != timeouts:
                # The capture this one waited for timed out. Trying again would keep
                # the caller for a second whole timeout, and every capture queued
                # behind it for one more each: answer now, while the camera reopens.
                raise self._tagged(CameraBusy("the camera timed out on the capture before "
                                              "this one and is being reopened"))
            self._ensure_open()
            result = self._guarded(take)
            self.captures += 1
            self.timeouts_in_a_row = 0
            self.last_capture_at = time.time()
            self.last_error = None
            return result

    def _guarded(self, call: Callable):
        """Run a backend call, counting its faults and closing the camera after bad ones."""
        try:
            return call()
        except CameraError as exc:
            self.failures += 1
            self.last_error = exc.detail
            if isinstance(exc, CaptureTimeout):
                self.timeouts_in_a_row += 1
                self._timeouts += 1
            if isinstance(exc, (CaptureTimeout, CameraUnavailable)):
                log.error("camera fault, will reopen on next use: %s", exc.detail)
                self._close_backend()
                self._health(False, exc.detail)
            raise self._tagged(exc)

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
            self._health(False, exc.detail)
            raise self._tagged(exc)
        self._is_open = True
        self._open_error = None
        self._health(True, None)
        log.info("camera open: %s, sensor %dx%d", self._capabilities.model,
                 *self._capabilities.sensor_size)

    def _health(self, usable: bool, reason: str | None) -> None:
        if usable != self._usable:
            self._usable = usable
            self.events.publish("camera.health", {"usable": usable, "reason": reason,
                                                  "backend": self.backend.name})

    def _close_backend(self) -> None:
        self._is_open = False
        try:
            self.backend.close()
        except Exception:  # closing must never mask the fault that caused it
            log.exception("camera close failed")

    def _tagged(self, exc: CameraError) -> CameraError:
        exc.retry_after = self.retry_after
        return exc


class _StampedLock:
    """A lock that knows since when it is held (``CameraOwner.held_for``), and until
    when the call holding it may run (``deadline``, set by that call; None: the
    owner's timeout)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.held_since: float | None = None
        self.deadline: float | None = None

    def acquire(self, timeout: float = -1) -> bool:
        if not self._lock.acquire(timeout=timeout):
            return False
        self.deadline = None
        self.held_since = time.monotonic()
        return True

    def release(self) -> None:
        self.held_since = self.deadline = None
        self._lock.release()
