"""Clips from the camera: one recording at a time, with an optional pre-roll.

A clip is the camera's H.264 encoder (``CameraOwner.start_encoder``) written
into an MP4 by the backend's ``file_output``: under a temp name, renamed into
place once the file is finished and synced. A kill during a recording leaves
only the temp file, which the next start removes: there is a playable clip or
none.

Pre-roll (``video.preroll_s`` > 0): the encoder runs all the time at the
``[video]`` size into the backend's ``circular_output``, a delay line of the
last N seconds. A clip opens its file on the ring, so it starts with the
frames of N seconds ago (from the keyframe there), and is closed N seconds
after its end: it covers [t - N, t + duration]. The ring's memory is bounded
by the seconds and by ``video.preroll_max_mb``, and ``/api/v1/info`` reports
it. If the camera fails, the pre-roll keeper starts the encoder again.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..camera import CameraOwner, VideoSettings
from ..errors import CameraError, Conflict, InsufficientStorage
from ..workers import WorkerHealth, supervise

if TYPE_CHECKING:
    from .service import VideoService
    from .store import Video

log = logging.getLogger(__name__)

POLL_S = 0.1
SPACE_EVERY_S = 0.5


class Recorder:
    """Records clips; keeps the pre-roll ring running when it is configured."""

    def __init__(self, service: VideoService, owner: CameraOwner, config: dict,
                 health: WorkerHealth):
        self.service = service
        self.health = health
        self.owner = owner
        self.config = config
        self.preroll_s = config["preroll_s"]
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._recording: Video | None = None
        # One long-lived thread records every clip (its database connection is its own).
        self._requests: queue.Queue = queue.Queue(1)
        self._thread = threading.Thread(target=self._serve, name="picam-recorder", daemon=True)
        self._ring = None
        self._ring_encoder = None
        self._ring_error: str | None = None
        self._keeper = threading.Thread(target=self._keep_preroll, name="picam-preroll",
                                        daemon=True)
        health.watch(self._thread)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if self.preroll_s > 0:
            self.health.watch(self._keeper)
            self._keeper.start()

    def stop(self, timeout: float) -> None:
        """End a recording in progress (kept, shorter), then the pre-roll encoder."""
        with self._lock:
            self.stopping.set()
            if self._recording is None:
                self._requests.put_nowait(None)  # wake the idle recorder thread
        if self._thread.is_alive():
            self._thread.join(timeout + self.preroll_s)
            if self._thread.is_alive():
                log.error("%s did not stop within %.1f s", self._thread.name, timeout)
        if self._keeper.is_alive():
            self._keeper.join(timeout)
        self._stop_ring()

    # -- recording -------------------------------------------------------------------

    def settings(self, width: int | None, height: int | None, fps: float | None) -> VideoSettings:
        """The encoder settings for a clip; with pre-roll, only the ring's own are possible."""
        settings = self._settings(width, height, fps)
        if self.preroll_s > 0 and settings != self._settings(None, None, None):
            config = self.config
            raise Conflict(f"pre-roll runs at {config['width']}x{config['height']} "
                           f"{config['fps']:g} fps (the [video] settings), so clips are recorded "
                           f"at that size and rate; leave width, height and fps out")
        return settings

    def _settings(self, width: int | None, height: int | None, fps: float | None) -> VideoSettings:
        config = self.config
        return VideoSettings(width=width or config["width"], height=height or config["height"],
                             fps=fps or config["fps"], bitrate=config["bitrate"],
                             keyframe_s=config["keyframe_s"], **self.service.capture_flips())

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._recording is not None

    def current(self, video_id: str) -> Video | None:
        with self._lock:
            recording = self._recording
        return recording if recording is not None and recording.id == video_id else None

    def record(self, video: Video, settings: VideoSettings, duration_s: float) -> None:
        """Start recording ``video`` (state ``recording``, already stored) in the background."""
        with self._lock:
            if self._recording is not None:
                raise Conflict(f"video {self._recording.id} is being recorded; one recording "
                               "at a time (cancel it, or wait for it to end)")
            if self.stopping.is_set():
                raise Conflict("the server is stopping")
            self._recording = video
            self._requests.put_nowait((video, settings, duration_s))

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            self._record(*request)
            if self.stopping.is_set():
                return

    def _record(self, video: Video, settings: VideoSettings, duration_s: float) -> None:
        store = self.service.store
        temp = store.temp_path(video)
        state, error = "failed", None
        try:
            error, output = self._capture(video, settings, duration_s, temp)
            if video.cancel_requested:
                state, error = "cancelled", None
            elif error is None:
                path = store.publish(temp, video)
                video.path = str(path.relative_to(store.root))
                video.frames, video.duration_s = output.frames, round(output.duration_s, 6)
                video.fps = round(output.frames / output.duration_s, 3) if output.duration_s else None
                video.width, video.height, video.codec = settings.width, settings.height, "h264"
                video.bytes, video.progress = path.stat().st_size, 1.0
                if self.stopping.is_set():
                    video.last_error = "ended early: the server was stopping"
                state = "ready"
        except Exception as exc:  # the thread must not die with the recording unfinished
            self.health.failed(f"{self._thread.name} (video {video.id})", exc)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if state != "ready":
                temp.unlink(missing_ok=True)
            # Free the recorder before the end is seen: whoever sees it may record next.
            with self._lock:
                self._recording = None
            self.service.finish(video, state, error)

    def _capture(self, video: Video, settings: VideoSettings, duration_s: float,
                 temp: Path) -> tuple[str | None, object]:
        """Run the encoder into ``temp`` for the clip's time; return (error or None, output)."""
        backend = self.owner.backend
        output = backend.file_output(str(temp))
        ring = self._ring if self.preroll_s > 0 else None
        # The clip is as long as its frames' timestamps say, not the wall clock: a
        # camera that lags (a loaded machine) still gives every frame of it.
        length = duration_s + (self.preroll_s if ring is not None else 0.0)
        if ring is not None:
            ring.open_output(output)
            encoder = None
        else:
            try:
                encoder = self.owner.start_encoder(settings, output)
            except CameraError as exc:
                return exc.detail, output
        error = self._wait(video, output, length)
        try:
            if ring is not None:
                ring.close_output()
            else:
                self.owner.stop_encoder(encoder)
        except (CameraError, RuntimeError) as exc:
            error = error or f"stopping the encoder failed: {exc}"
        if error is None and output.error is not None:
            error = f"writing the clip failed: {output.error}"
        if error is None and not output.frames:
            error = "the camera sent no frames"
        return error, output

    def _wait(self, video: Video, output, length: float) -> str | None:
        """Until the frames span ``length`` seconds, a cancel or a stop; an error if the
        frames stop or space runs out."""
        frames, last_frame = 0, time.monotonic()
        last_space = float("-inf")
        stall = self.owner.timeout
        while output.duration_s < length:
            now = time.monotonic()
            if video.cancel_requested or self.stopping.is_set():
                return None
            if output.error is not None:
                return f"writing the clip failed: {output.error}"
            if output.frames != frames:
                frames, last_frame = output.frames, now
            elif now - last_frame > stall:
                return f"the camera sent no frames for {stall:g} s"
            if now - last_space >= SPACE_EVERY_S:
                last_space = now
                try:
                    self.service.photos.check_space()
                except InsufficientStorage as exc:
                    return f"stopped: {exc.detail}"
            video.progress = round(min(output.duration_s / length, 1.0), 3)
            self.stopping.wait(POLL_S)
        return None

    # -- pre-roll ----------------------------------------------------------------------

    def preroll_stats(self) -> dict | None:
        if self.preroll_s <= 0:
            return None
        ring = self._ring
        stats = ring.stats() if ring is not None else {"seconds": self.preroll_s, "frames": 0,
                                                       "bytes": 0}
        return {**stats, "running": ring is not None, "error": self._ring_error}

    def _keep_preroll(self) -> None:
        supervise(self._keeper.name, self._keep_ring, self.stopping, self.health)

    def _keep_ring(self) -> None:
        """Keep the ring's encoder running; start it again when its frames stop."""
        seen, seen_at = -1, time.monotonic()
        while not self.stopping.is_set():
            ring = self._ring
            if ring is None:
                self._start_ring()
                seen, seen_at = -1, time.monotonic()
            elif ring.frames_in != seen:
                seen, seen_at = ring.frames_in, time.monotonic()
            elif time.monotonic() - seen_at > self.owner.timeout and not self.busy:
                log.warning("pre-roll: no frames from the camera for %g s; restarting the encoder",
                            self.owner.timeout)
                self._stop_ring()
                continue
            self.stopping.wait(float(self.owner.retry_after) if self._ring is None else 0.5)

    def _start_ring(self) -> None:
        ring = self.owner.backend.circular_output(self.preroll_s,
                                                  self.config["preroll_max_mb"] * 2**20)
        try:  # the encoder starts its output, as picamera2's does
            settings = self._settings(None, None, None)
            encoder = self.owner.start_encoder(settings, ring)
        except CameraError as exc:
            self._ring_error = exc.detail
            log.warning("pre-roll cannot start: %s", exc.detail)
            return
        self._ring, self._ring_encoder, self._ring_error = ring, encoder, None
        log.info("pre-roll: keeping the last %g s at %dx%d %g fps", self.preroll_s,
                 settings.width, settings.height, settings.fps)

    def _stop_ring(self) -> None:
        encoder, ring = self._ring_encoder, self._ring
        self._ring = self._ring_encoder = None
        if encoder is not None:
            try:
                self.owner.stop_encoder(encoder)
            except CameraError as exc:
                log.warning("pre-roll: stopping the encoder failed: %s", exc.detail)
        if ring is not None and ring.recording:
            ring.stop()

