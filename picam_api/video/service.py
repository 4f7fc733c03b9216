"""Videos as the API sees them: every MP4 the service makes, rendered or recorded."""
from __future__ import annotations

import datetime as dt
import io
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from .. import resources
from ..camera import CameraOwner
from ..capture import CaptureService
from ..clock import Clock, iso
from ..db import Database
from ..errors import Conflict, InvalidInput, NotFound
from ..events import NO_EVENTS
from ..ids import new_id
from ..pagination import Page
from ..storage import PhotoStore, _write
from ..timelapse import TimelapseService
from ..workers import WorkerHealth
from .recorder import Recorder
from .renders import RenderWorkers
from .store import Video, VideoStore

log = logging.getLogger(__name__)

RENDER_FIELDS = ("fps", "width", "height", "first_frame", "last_frame", "deflicker",
                 "timestamp", "crf")
CLIP_FIELDS = ("duration_s", "width", "height", "fps")


class VideoService:
    """Renders time-lapses into MP4s and records clips; ``/api/v1/videos`` is its face.

    Renders queue in the ``videos`` table and run on ``RenderWorkers`` (low
    priority, ``video.max_concurrent_renders`` at a time); clips are recorded
    by the ``Recorder``, one at a time. It publishes video.created, video.state,
    video.ready and video.failed with the video's resource, once each change is stored.
    """

    def __init__(self, db: Database, data_dir: Path, photos: PhotoStore,
                 timelapses: TimelapseService, capture: CaptureService, owner: CameraOwner,
                 config: Mapping[str, Any], cursor_key: bytes, clock: Clock | None = None,
                 health: WorkerHealth | None = None, events=NO_EVENTS):
        self.config = config["video"]
        self.thumbnail_px = config["storage"]["thumbnail_px"]
        self.store = VideoStore(db, data_dir, cursor_key)
        self.photos = photos
        self.timelapses = timelapses
        self.capture = capture
        self.clock = clock or Clock()
        self.events = events
        health = health or WorkerHealth()
        self.workers = RenderWorkers(self, self.config["max_concurrent_renders"],
                                     self.config["render_nice"], health)
        self.recorder = Recorder(self, owner, self.config, health)
        self._completed: list[str] = []
        self._completed_lock = threading.Lock()
        if config["timelapse"]["render_on_complete"]:
            timelapses.scheduler.finished_listeners.append(self._timelapse_finished)

    def start(self) -> None:
        """Recover what a stop interrupted, then start the workers."""
        self.recover()
        self.workers.start(queued=self.store.count("queued") > 0)
        self.recorder.start()

    def stop(self, timeout: float) -> None:
        self.recorder.stop(timeout)
        self.workers.stop(timeout)

    def recover(self) -> None:
        """Renders interrupted by a crash go back to the queue (until they have been
        interrupted ``max_render_attempts`` times); interrupted recordings failed."""
        limit = self.config["max_render_attempts"]
        for video in self.store.recover():
            if video.state == "recording":
                video.state, video.last_error = "failed", (
                    "the server stopped during the recording; nothing was kept")
            elif video.state == "rendering" and video.attempts >= limit:
                video.state, video.last_error = "failed", (
                    f"the server stopped during this render {video.attempts} time(s) "
                    "(video.max_render_attempts); not trying again")
            elif video.state == "rendering":
                video.state, video.started_at, video.progress = "queued", None, 0.0
                log.warning("video %s: the render was interrupted; it starts again", video.id)
            else:
                continue
            if video.state == "failed":
                video.finished_at = iso(self.clock.time())
                log.warning("video %s failed: %s", video.id, video.last_error)
            self.store.save(video)

    # -- the API's operations -----------------------------------------------------------

    def create(self, body: Mapping[str, Any], trigger: str | None = None) -> Video:
        """Queue a render (``timelapse`` in the body) or start a clip (``duration_s``)."""
        if body.get("timelapse") is not None:
            wrong = [key for key in body if key not in (*RENDER_FIELDS, "timelapse")]
            if wrong:
                raise InvalidInput({key: ["applies to clips only, not to a time-lapse render"]
                                    for key in wrong})
            return self._queue_render(body)
        if body.get("duration_s") is None:
            raise InvalidInput({"timelapse": ["give a time-lapse to render, or duration_s to "
                                              "record a clip"]})
        wrong = [key for key in body if key not in CLIP_FIELDS]
        if wrong:
            raise InvalidInput({key: ["applies to time-lapse renders only, not to a clip"]
                                for key in wrong})
        return self.record(body, trigger)

    def record(self, body: Mapping[str, Any], trigger: str | None = None) -> Video:
        """Start recording a clip of ``duration_s`` (GPIO triggers and the API)."""
        duration = body["duration_s"]
        errors: dict[str, list[str]] = {}
        if duration > self.config["max_duration_s"]:
            errors["duration_s"] = [f"must be at most {self.config['max_duration_s']:g} s "
                                    "(video.max_duration_s)"]
        max_w, max_h = self.config["max_clip_size"]
        for key, limit in (("width", max_w), ("height", max_h)):
            value = body.get(key)
            if value is not None and value > limit:
                errors[key] = [f"must be at most {limit} (video.max_clip_size)"]
        if body.get("fps") is not None and body["fps"] > self.config["max_fps"]:
            errors["fps"] = [f"must be at most {self.config['max_fps']:g} (video.max_fps)"]
        if errors:
            raise InvalidInput(errors)
        # No camera: a 503 now (the capture defaults need it), not a failed clip later.
        settings = self.recorder.settings(body.get("width"), body.get("height"), body.get("fps"))
        if self.recorder.busy:
            raise Conflict("a clip is being recorded; one recording at a time")
        self.photos.check_space()
        now = self.clock.time()
        video = Video(id=new_id(dt.datetime.fromtimestamp(now, dt.timezone.utc)),
                      state="recording", source="clip", trigger=trigger, created_at=iso(now),
                      started_at=iso(now),
                      options={"duration_s": duration, "width": settings.width,
                               "height": settings.height, "fps": settings.fps,
                               "preroll_s": self.recorder.preroll_s})
        self.store.insert(video)
        try:
            self.recorder.record(video, settings, duration)
        except BaseException:
            self.store.delete(video)
            raise
        self.publish("video.created", video)
        return video

    def _queue_render(self, body: Mapping[str, Any]) -> Video:
        errors: dict[str, list[str]] = {}
        job = self.timelapses.get(body["timelapse"])  # an unknown id is a 404
        first = body.get("first_frame") or 1
        last = body.get("last_frame")
        if last is not None and last < first:
            errors["last_frame"] = ["must not be before first_frame"]
        count, highest = self.photos.frame_span(job.id, first, last)
        if not errors and not count:
            errors["first_frame" if body.get("first_frame") else "timelapse"] = [
                "the time-lapse has no frames in that range"]
        if errors:
            raise InvalidInput(errors)
        limit = self.config["max_queued_renders"]
        if self.store.count("queued", "rendering") >= limit:
            raise Conflict(f"{limit} renders are queued or running (video.max_queued_renders); "
                           "wait for one to finish or cancel one")
        self.photos.check_space()
        now = self.clock.time()
        options = {"fps": body.get("fps") or self.config["render_fps"],
                   "width": body.get("width"), "height": body.get("height"),
                   # A render of a running job takes the frames so far.
                   "first_frame": first, "last_frame": last if last is not None else highest,
                   "deflicker": body.get("deflicker") or 0,
                   "timestamp": bool(body.get("timestamp")),
                   "crf": body.get("crf") if body.get("crf") is not None else self.config["crf"]}
        video = Video(id=new_id(dt.datetime.fromtimestamp(now, dt.timezone.utc)), state="queued",
                      source="timelapse", timelapse_id=job.id, options=options,
                      created_at=iso(now))
        self.store.insert(video)
        self.publish("video.created", video)
        self.workers.wake()
        return video

    def get(self, video_id: str) -> Video:
        """The video, as its worker sees it right now while it runs."""
        return (self.workers.get(video_id) or self.recorder.current(video_id)
                or self.store.get(video_id))

    def list(self, limit: int, cursor: str | None = None, timelapse: str | None = None,
             source: str | None = None) -> Page[Video]:
        """A page of videos, newest first, with the live state of those in progress."""
        page = self.store.list(limit, cursor, timelapse, source)
        return Page([self.workers.get(v.id) or self.recorder.current(v.id) or v
                     for v in page.items], page.next, page.prev)

    def cancel(self, video_id: str) -> Video:
        """Stop a queued, rendering or recording video and keep nothing of it.

        Cancelling a cancelled video changes nothing; a finished one is a ``Conflict``.
        """
        video = self.get(video_id)
        if video.state == "cancelled":
            return video
        if not video.active:
            raise Conflict(f"the video is {video.state}; only a queued, rendering or recording "
                           "video can be cancelled")
        if video.state == "recording":
            video.cancel_requested = True
            return video
        return self.workers.cancel(video)

    def delete(self, video_id: str) -> None:
        video = self.get(video_id)
        if video.active:
            raise Conflict(f"the video is {video.state}; cancel it before deleting it")
        self.store.delete(video)

    def file(self, video: Video) -> Path:
        if video.state != "ready":
            raise Conflict(f"the video is {video.state}; its file exists once it is ready")
        return self.store.file(video)

    def thumbnail(self, video: Video) -> Path:
        """A JPEG of the video's first frame, made on first request and kept."""
        path = self.store.thumbnail_path(video)
        if not path.exists():
            _write(path, first_frame_jpeg(self.file(video), self.thumbnail_px))
            try:
                self.store.get(video.id)
            except NotFound:  # deleted meanwhile: its delete may have run already
                path.unlink(missing_ok=True)
                raise
        return path

    def info(self) -> dict:
        """For /api/v1/info: what is rendering and recording, and the pre-roll's memory."""
        return {"queued": self.store.count("queued"), "rendering": self.store.count("rendering"),
                "recording": self.recorder.busy, "preroll": self.recorder.preroll_stats()}

    # -- what the workers and the recorder call -----------------------------------------

    def finish(self, video: Video, state: str, error: str | None = None) -> None:
        """Store a recording's end and publish it."""
        video.state, video.finished_at = state, iso(self.clock.time())
        if error is not None:
            video.last_error = error
        self.store.save(video)
        self.publish("video.state", video)
        if state in ("ready", "failed"):
            if state == "failed":
                log.warning("video %s failed: %s", video.id, error)
            self.publish(f"video.{state}", video)

    def publish(self, event: str, video: Video) -> None:
        self.events.publish(event, resources.video(video))

    def capture_flips(self) -> dict[str, bool]:
        """Clips are flipped as photos are: the capture defaults' hflip and vflip
        (``CameraError`` when there is no camera to ask)."""
        defaults = self.capture.defaults()
        return {"hflip": defaults["hflip"], "vflip": defaults["vflip"]}

    def _timelapse_finished(self, job) -> None:
        # Under the scheduler's lock: only note it; a render worker queues the render.
        if job.state == "completed":
            with self._completed_lock:
                self._completed.append(job.id)
            self.workers.wake()

    def take_completed_timelapses(self) -> None:
        """Queue a render of each time-lapse that completed (``timelapse.render_on_complete``)."""
        with self._completed_lock:
            jobs, self._completed = self._completed, []
        for job_id in jobs:
            try:
                self._queue_render({"timelapse": job_id})
            except (InvalidInput, Conflict, NotFound, OSError) as exc:
                log.warning("time-lapse %s completed but was not rendered: %s", job_id,
                            getattr(exc, "detail", exc))


def first_frame_jpeg(path: Path, size: int) -> bytes:
    """The first frame of an MP4, as a JPEG of at most ``size`` pixels a side."""
    import av
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        image = frame.to_image()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()

