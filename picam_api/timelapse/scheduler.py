"""The one scheduler thread that runs every time-lapse job.

It keeps a heap of ``(due, version, job id)`` on the monotonic clock, anchored
to wall time once when it is built, so a job's slots keep their wall-clock
schedule across restarts but a clock step while running cannot shift them.
Each frame is captured on a thread of its own, so a slow capture delays only
itself; a job has at most one capture in flight. A slot that cannot start
within half an interval of its due time is skipped and counted as missed: the
schedule never shifts and never bursts to catch up.

The thread cannot die silently: it waits at most ``MAX_WAIT_S`` at a time
(``Event.wait`` overflows on a far-future due time), a job whose step raises is
counted in ``WorkerHealth``, tried again ``CRASH_RETRY_S`` later and failed after
``MAX_CRASHES`` in a row, and anything else restarts the loop (``supervise``).
A state that cannot be saved (a full disk) stays in memory and is saved with
the job's next change.
"""
from __future__ import annotations

import collections
import heapq
import logging
import sqlite3
import threading
from typing import Callable

from .. import resources
from ..clock import Clock, iso
from ..errors import InsufficientStorage, PicamError
from ..events import NO_EVENTS
from ..workers import WorkerHealth, supervise
from .jobs import Job, JobStore

log = logging.getLogger(__name__)

# How often jobs paused for storage check whether space is back.
STORAGE_POLL_S = 2.0
# The longest single wait: the loop looks again at least this often.
MAX_WAIT_S = 60.0
# A job whose step raises is tried again this much later, and fails after MAX_CRASHES.
CRASH_RETRY_S = 1.0
MAX_CRASHES = 3


class Scheduler(threading.Thread):
    """Runs the frames of all active jobs. Every method is safe from any thread.

    ``take_frame(job, sequence)`` captures and stores one frame (raising
    ``PicamError`` on failure); ``space_ok()`` says whether storing is possible.
    """

    def __init__(self, store: JobStore, take_frame: Callable[[Job, int], object],
                 space_ok: Callable[[], bool], max_failures: int, clock: Clock | None = None,
                 health: WorkerHealth | None = None, events=NO_EVENTS):
        super().__init__(name="picam-timelapse", daemon=True)
        self.health = health or WorkerHealth()
        self.health.watch(self)
        self._crashes: collections.Counter = collections.Counter()
        self.store = store
        self.events = events
        self.take_frame = take_frame
        self.space_ok = space_ok
        self.max_failures = max_failures
        self.clock = clock or Clock()
        # Wall minus monotonic, fixed once: the anchor between the two clocks.
        self._offset = self.clock.time() - self.clock.monotonic()
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._versions: collections.Counter = collections.Counter()
        self._heap: list[tuple[float, int, str]] = []
        self._busy: set[str] = set()
        self._captures: set[threading.Thread] = set()
        self._last_space_check = float("-inf")
        # Start lateness of recent frames, seconds: (job id, slot, late).
        self.lateness: collections.deque = collections.deque(maxlen=100_000)
        # Called with each job that finishes, under the lock: they must only hand off.
        self.finished_listeners: list[Callable[[Job], None]] = []

    # -- called by the service -----------------------------------------------

    def add(self, job: Job) -> None:
        """Take over an active job: skip what fell in the past, then schedule it."""
        with self._lock:
            self._jobs[job.id] = job
            if job.state in ("scheduled", "running"):
                self._skip_to_now(job)
            self._reschedule(job)

    def job(self, job_id: str) -> Job | None:
        """The live job object (with its in-memory progress), if the scheduler has it."""
        return self._jobs.get(job_id)

    def change_state(self, job_id: str, state: str) -> Job | None:
        """Pause, resume or cancel a job; None if it is no longer active."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if state == "cancelled":
                self._finish(job, "cancelled")
            elif state == "paused" and job.state != "paused":
                self._pause(job, "user")
            elif state == "running" and job.state == "paused":
                self._resume(job)
            return job

    def run(self) -> None:
        supervise(self.name, self._loop, self.stopping, self.health)

    def _loop(self) -> None:
        with self._lock:
            # After a restart, a job popped from the heap when the loop failed is back.
            for job in list(self._jobs.values()):
                self._reschedule(job)
        while not self.stopping.is_set():
            with self._lock:
                now = self.clock.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, version, job_id = heapq.heappop(self._heap)
                    job = self._jobs.get(job_id)
                    if job is not None and version == self._versions[job_id]:
                        self._step_safely(job, now)
                timeout = self._heap[0][0] - now if self._heap else MAX_WAIT_S
                if any(j.pause_reason == "storage" for j in self._jobs.values()):
                    self._resume_if_space()
                    timeout = min(timeout, STORAGE_POLL_S)
            self._wake.wait(min(timeout, MAX_WAIT_S))
            self._wake.clear()

    def _step_safely(self, job: Job, now: float) -> None:
        try:
            self._step(job, now)
        except Exception as exc:
            self.health.failed(f"{self.name} (job {job.id})", exc)
            self._crashes[job.id] += 1
            if self._crashes[job.id] >= MAX_CRASHES:
                job.last_error = f"internal error: {type(exc).__name__}: {exc}"[:300]
                self._finish(job, "failed")
            else:
                self._push(job, now + CRASH_RETRY_S)
        else:
            self._crashes.pop(job.id, None)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling, let frames in flight finish (or give up on them), save, join."""
        self.stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        for thread in list(self._captures):
            thread.join(timeout)
            if thread.is_alive():
                log.error("a time-lapse capture did not finish within %.1f s; abandoned", timeout)
        with self._lock:
            for job in self._jobs.values():
                self._save(job)

    # -- the engine (under the lock) -------------------------------------------

    def _step(self, job: Job, now: float) -> None:
        if job.state not in ("scheduled", "running"):
            return
        left = self._slots_left(job)
        if job.next_slot is None or (left is not None and left <= 0):
            if job.id not in self._busy:  # else the capture's end finishes the job
                self._finish(job, "completed")
            return
        slot = job.next_slot
        due = self._mono(job.schedule.time_of(slot))
        grace = job.interval_s / 2
        if now - due > grace:
            self._skip_to_now(job)
            self._save_and_reschedule(job)
            self._publish(job, "progress")
            return
        if job.id in self._busy:
            # The previous frame is still being taken; this one may start until
            # the grace runs out (the capture's end also wakes the job).
            self._push(job, due + grace + 1e-3)
            return
        started = job.state == "scheduled"
        if started:
            job.state, job.started_at = "running", iso(self.clock.time())
            log.info("time-lapse %s started", job.id)
        job.next_slot = job.schedule.next_active(slot + 1)
        self.lateness.append((job.id, slot, now - due))
        self._busy.add(job.id)
        thread = threading.Thread(target=self._capture_reporting, args=(job, job.next_sequence),
                                  name=f"picam-frame-{job.id}", daemon=True)
        self._captures.add(thread)
        thread.start()
        self._save_and_reschedule(job)
        if started:
            self._publish(job, "state")

    def _capture_reporting(self, job: Job, sequence: int) -> None:
        try:
            self._capture(job, sequence)
        except Exception as exc:  # a frame's own failures are counted in _capture
            self.health.failed(threading.current_thread().name, exc)

    def _capture(self, job: Job, sequence: int) -> None:
        try:
            self.take_frame(job, sequence)
        except InsufficientStorage as exc:
            with self._lock:
                job.last_error = exc.detail
                if job.state in ("scheduled", "running"):
                    self._pause(job, "storage")
        except Exception as exc:
            detail = exc.detail if isinstance(exc, PicamError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, PicamError):
                log.exception("time-lapse %s frame failed unexpectedly", job.id)
            with self._lock:
                job.frames_failed += 1
                job.consecutive_failures += 1
                job.last_error = detail
                log.warning("time-lapse %s frame failed (%d in a row): %s", job.id,
                            job.consecutive_failures, detail)
                if job.consecutive_failures >= self.max_failures and job.active:
                    self._finish(job, "failed")
        else:
            with self._lock:
                job.frames_captured += 1
                job.next_sequence = sequence + 1
                job.consecutive_failures = 0
        finally:
            with self._lock:
                self._busy.discard(job.id)
                self._captures.discard(threading.current_thread())
                finished = job.state == "running" and job.done
                if not finished:
                    self._save_and_reschedule(job)
                self._publish(job, "progress")
                if finished:
                    self._finish(job, "completed")
            self._wake.set()

    def _skip_to_now(self, job: Job) -> None:
        """Count the slots whose start window has passed as missed; move to the next one."""
        if job.next_slot is None:
            return
        now = self.clock.time()
        first_startable = job.schedule.slot_at_or_after(now - job.interval_s / 2)
        if first_startable <= job.next_slot:
            return
        missed = job.schedule.count_active(job.next_slot, first_startable)
        left = self._slots_left(job)
        if left is not None:
            # A frame-count job ends after its frames; slots past that are not its own.
            missed = min(missed, max(0, left))
        job.frames_missed += missed
        job.next_slot = job.schedule.next_active(first_startable)
        if missed:
            log.warning("time-lapse %s missed %d frame(s)", job.id, missed)

    def _slots_left(self, job: Job) -> int | None:
        """Frames a frame-count job has still to take (captured, missed or failed)."""
        if job.frames is None:
            return None
        return (job.frames - job.frames_captured - job.frames_missed - job.frames_failed
                - (job.id in self._busy))

    def _pause(self, job: Job, reason: str) -> None:
        job.state, job.pause_reason = "paused", reason
        self._save_and_reschedule(job)
        self._publish(job, "state")
        log.info("time-lapse %s paused (%s)", job.id, reason)

    def _resume(self, job: Job) -> None:
        """Go on from the next slot after now; slots passed while paused are not missed."""
        job.next_slot = job.schedule.next_active(job.schedule.slot_at_or_after(self.clock.time()))
        job.state = "running" if job.started_at else "scheduled"
        job.pause_reason = None
        self._save_and_reschedule(job)
        self._publish(job, "state")
        log.info("time-lapse %s resumed", job.id)

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished_at, job.pause_reason = state, iso(self.clock.time()), None
        self._save_and_reschedule(job)
        self._jobs.pop(job.id, None)
        self._publish(job, "state")
        log.info("time-lapse %s %s: %d captured, %d missed, %d failed", job.id, state,
                 job.frames_captured, job.frames_missed, job.frames_failed)
        for listener in self.finished_listeners:
            try:
                listener(job)
            except Exception:  # a listener's fault must not stop the scheduler
                log.exception("a time-lapse finish listener failed")

    def _resume_if_space(self) -> None:
        now = self.clock.monotonic()
        if now - self._last_space_check < STORAGE_POLL_S:
            return
        self._last_space_check = now
        if self.space_ok():
            for job in [j for j in self._jobs.values() if j.pause_reason == "storage"]:
                log.info("time-lapse %s: storage is back", job.id)
                self._resume(job)

    def _publish(self, job: Job, what: str) -> None:
        """After the save: a state change, or one frame's progress (coalesced per job)."""
        self.events.publish(f"timelapse.{what}", resources.timelapse(job, self.clock.time()),
                            coalesce=job.id if what == "progress" else None)

    def _save_and_reschedule(self, job: Job) -> None:
        self._save(job)
        self._reschedule(job)

    def _save(self, job: Job) -> None:
        try:
            self.store.save(job)
        except (PicamError, sqlite3.Error) as exc:
            detail = exc.detail if isinstance(exc, PicamError) else str(exc)
            log.warning("time-lapse %s: state not saved (%s); it is saved with its next "
                        "change", job.id, detail)

    def _reschedule(self, job: Job) -> None:
        self._versions[job.id] += 1  # older heap entries of this job are now stale
        if job.state in ("scheduled", "running"):
            when = self._mono(job.schedule.time_of(job.next_slot)) if job.next_slot is not None \
                else self.clock.monotonic()
            self._push(job, when)

    def _push(self, job: Job, when: float) -> None:
        heapq.heappush(self._heap, (when, self._versions[job.id], job.id))
        self._wake.set()

    def _mono(self, wall: float) -> float:
        return wall - self._offset
