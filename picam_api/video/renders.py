"""The render workers: queued time-lapse renders, run at low priority, a few at a time.

There is no lock file and no "render running" flag that could outlive the
process: the queue is the ``videos`` table (state ``queued``), and which
worker runs what lives only in memory. A render interrupted by a crash or a
power cut is found in state ``rendering`` at the next start; it goes back to
the queue to start again from scratch, unless it has been interrupted
``video.max_render_attempts`` times (a render that itself brings the server
down must not do so forever): then it fails with that reason.

Priority: on Linux the nice value belongs to each thread, not the process
(setpriority(2), "BUGS"), so each worker thread lowers its own with
``setpriority(PRIO_PROCESS, <its thread id>)``; ``os.nice()`` would do the same
from that thread, but says "process" where Linux means "thread". Threads that
a worker creates inherit its value, and libx264 starts its encoding threads
from the worker when the encoder opens, so the whole encode runs niced while
the time-lapse scheduler, captures and requests keep the normal priority.
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Callable

from .. import memory
from ..clock import iso
from ..errors import InsufficientStorage, NotFound
from ..workers import RESTART_DELAY_S, WorkerHealth
from .store import Video

if TYPE_CHECKING:
    from .service import VideoService

log = logging.getLogger(__name__)

# How often a running render saves its progress and checks the free-space reserve.
CHECK_EVERY_S = 1.0


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread (only) nice value ``nice``, if that is lower than its own."""
    tid = threading.get_native_id()
    try:
        if nice > os.getpriority(os.PRIO_PROCESS, tid):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:  # not Linux: a thread id is no process id there
        log.warning("could not lower the render thread's priority: %s", exc)


class RenderWorkers:
    """``count`` threads that take queued renders and run them; see the module docstring."""

    def __init__(self, service: VideoService, count: int, nice: int, health: WorkerHealth):
        self.service = service
        self.nice = nice
        self.health = health
        self.stopping = threading.Event()
        self._wake = threading.Condition()
        self._threads = [threading.Thread(target=self._loop, name=f"picam-render-{n + 1}",
                                          daemon=True) for n in range(count)]
        for thread in self._threads:
            health.watch(thread)
        self.running: dict[str, Video] = {}  # by id, under _wake
        self._pending = False  # work may be waiting (under _wake)

    def start(self, queued: bool) -> None:
        """Start the threads; ``queued``: there are renders waiting already."""
        self._pending = queued
        for thread in self._threads:
            thread.start()

    def wake(self) -> None:
        with self._wake:
            self._pending = True
            self._wake.notify_all()

    def stop(self, timeout: float) -> None:
        """Stop taking work; a render in progress stops at its next frame and is requeued."""
        self.stopping.set()
        self.wake()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)
                if thread.is_alive():
                    log.error("%s did not stop within %.1f s", thread.name, timeout)

    def get(self, video_id: str) -> Video | None:
        with self._wake:
            return self.running.get(video_id)

    def cancel(self, video: Video) -> Video:
        """Cancel a queued or running render (under the lock a worker claims with)."""
        with self._wake:
            running = self.running.get(video.id)
            if running is not None:
                running.cancel_requested = True
                return running
            video = self.service.store.get(video.id)
            if video.state == "queued":
                video.state, video.finished_at = "cancelled", iso(time.time())
                self.service.store.save(video)
        self.service.publish("video.state", video)
        return video

    def _loop(self) -> None:
        # Idle workers wait for a wake() and touch nothing meanwhile, the database included.
        lower_thread_priority(self.nice)
        while True:
            with self._wake:
                while not self._pending and not self.stopping.is_set():
                    self._wake.wait()
                if self.stopping.is_set():
                    return
                self._pending = False
            try:
                self.service.take_completed_timelapses()
                video = self._claim()
                if video is not None:
                    self.wake()  # another worker may take the next one; this one looks again after
                    self._run(video)
                    memory.give_back()  # what the render's threads freed: see memory.py
                    self.wake()
            except Exception as exc:  # never die silently: count it, wait a little, go on
                self.health.failed(threading.current_thread().name, exc)
                self.stopping.wait(RESTART_DELAY_S)
                self.wake()

    def _claim(self) -> Video | None:
        store = self.service.store
        with self._wake:
            for video in store.in_states("queued"):
                if video.id not in self.running:
                    video.state, video.started_at = "rendering", iso(time.time())
                    video.attempts += 1
                    video.progress = 0.0
                    store.save(video)
                    self.running[video.id] = video
                    self.service.publish("video.state", video)
                    return video
        return None

    def _run(self, video: Video) -> None:
        # numpy and PyAV load with the first render, not at start-up.
        from .render import RenderCancelled
        service = self.service
        temp = service.store.temp_path(video)
        checks = _Checks(service.photos.check_space)
        try:
            result = self._render(video, temp, checks)
        except RenderCancelled:
            temp.unlink(missing_ok=True)
            if video.cancel_requested:
                self._end(video, "cancelled")
            elif checks.no_space:
                self._end(video, "failed", checks.no_space)
            else:  # the server is stopping: start again next time, not counted as a try
                video.attempts -= 1
                self._end(video, "queued")
        except Exception as exc:
            temp.unlink(missing_ok=True)
            self._end(video, "failed", _reason(exc))
        else:
            path = service.store.publish(temp, video)
            video.path = str(path.relative_to(service.store.root))
            video.frames, video.frames_skipped = result.frames, result.skipped
            video.width, video.height, video.fps = result.width, result.height, result.fps
            video.duration_s = round(result.duration_s, 6)
            video.codec, video.bytes, video.progress = "h264", path.stat().st_size, 1.0
            self._end(video, "ready")
            log.info("video %s rendered: %d frames (%d skipped), %dx%d, %d bytes", video.id,
                     result.frames, result.skipped, result.width, result.height, video.bytes)

    def _render(self, video: Video, temp, checks: _Checks):
        from .render import RenderOptions, iter_refs, render
        service = self.service
        options = video.options
        try:
            service.timelapses.get(video.timelapse_id)
        except NotFound:
            raise RuntimeError("its time-lapse was deleted") from None
        first, last = options["first_frame"], options["last_frame"]
        total, _ = service.photos.frame_span(video.timelapse_id, first, last)
        render_options = RenderOptions(
            fps=options["fps"], width=options.get("width"), height=options.get("height"),
            max_px=service.config["max_render_px"], crf=options["crf"],
            preset=service.config["preset"], deflicker=options["deflicker"],
            timestamp=options["timestamp"])
        last_save = [time.monotonic()]

        def progress(done: int, skipped: int, _total: int) -> None:
            video.frames, video.frames_skipped = done, skipped
            video.progress = round(min(1.0, (done + skipped) / max(total, 1)), 4)
            if time.monotonic() - last_save[0] >= CHECK_EVERY_S:
                last_save[0] = time.monotonic()
                service.store.save(video)

        def should_stop() -> bool:
            return self.stopping.is_set() or video.cancel_requested or checks.failed()

        def frames():
            return iter_refs(service.photos.iter_frames(video.timelapse_id, first=first, last=last),
                             service.photos.file)

        return render(frames, total, temp, render_options, progress, should_stop)

    def _end(self, video: Video, state: str, error: str | None = None) -> None:
        video.state, video.last_error = state, error
        if state != "queued":
            video.finished_at = iso(time.time())
        else:
            video.started_at, video.progress = None, 0.0
        self.service.store.save(video)
        with self._wake:
            self.running.pop(video.id, None)
        self.service.publish("video.state", video)
        if state == "ready":
            self.service.publish("video.ready", video)
        elif state == "failed":
            log.warning("video %s failed: %s", video.id, error)
            self.service.publish("video.failed", video)


class _Checks:
    """The free-space check, run at most once a second."""

    def __init__(self, check_space: Callable[[], None]):
        self.check_space = check_space
        self.no_space: str | None = None
        self._last = float("-inf")

    def failed(self) -> bool:
        now = time.monotonic()
        if now - self._last >= CHECK_EVERY_S:
            self._last = now
            try:
                self.check_space()
            except InsufficientStorage as exc:
                self.no_space = f"stopped: {exc.detail}"
        return self.no_space is not None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full; nothing was kept"
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    if not isinstance(exc, (RuntimeError, ValueError)):
        log.exception("render failed")
    return detail
