"""Time-lapse jobs as the API sees them: validation, state changes, listing, archives."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, Iterator, Mapping

from ..camera.settings import FIELDS as CAPTURE_FIELDS
from .. import resources
from ..capture import CaptureService
from ..clock import Clock, iso
from ..db import Database
from ..errors import Conflict, InvalidInput, NotFound
from ..events import NO_EVENTS
from ..ids import is_id, new_id
from ..pagination import Page, keyset_page
from ..storage import Photo, PhotoStore
from .jobs import Job, JobStore
from ..workers import WorkerHealth
from .schedule import Window
from .scheduler import Scheduler
from .sun import Location

# How far in the past start_at may be: a client's clock may lag a little.
START_SLACK_S = 60.0
# How far ahead start_at and end_at may be, and the longest duration_s: ten years.
HORIZON_S = 10 * 366 * 86400


class TimelapseService:
    """Creates and controls time-lapse jobs; one ``Scheduler`` thread runs them.

    Frames are ordinary photos tagged with the job id and a sequence number
    that is unique per job and never reused, also across restarts.
    """

    def __init__(self, db: Database, capture: CaptureService, photos: PhotoStore,
                 config: Mapping[str, Any], cursor_key: bytes, clock: Clock | None = None,
                 health: WorkerHealth | None = None, location: Location | None = None,
                 events=NO_EVENTS):
        self.capture = capture
        self.events = events
        self.photos = photos
        self.config = config
        self.clock = clock or Clock()
        self.location = location
        self._cursor_key = cursor_key
        self.store = JobStore(db, location)
        self.scheduler = Scheduler(self.store, self._take_frame, self._space_ok,
                                   config["max_consecutive_failures"], self.clock, health,
                                   events)

    def start(self) -> None:
        """Resume the jobs that were active when the service last stopped."""
        for job in self.store.active():
            window = job.schedule.window
            if window is not None and window.sun_relative and self.location is None:
                job.state, job.finished_at = "failed", iso(self.clock.time())
                job.last_error = (f"active_hours {job.active_start}-{job.active_end} follows the "
                                  "sun, and location.latitude/longitude are no longer configured")
                self.store.save(job)
                continue
            try:
                self.scheduler.add(job)
            except Exception as exc:  # a job an older release let in (year 9999, say)
                self.scheduler.health.failed(f"{self.scheduler.name} (job {job.id})", exc)
                job.state, job.finished_at = "failed", iso(self.clock.time())
                job.last_error = f"cannot be scheduled: {type(exc).__name__}: {exc}"[:300]
                self.store.save(job)
        self.scheduler.start()

    def stop(self, timeout: float) -> None:
        self.scheduler.stop(timeout)

    # -- the API's operations ------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> Job:
        """Validate a new job (raising ``InvalidInput`` naming every bad field) and start it."""
        errors: dict[str, list[str]] = {}
        now = self.clock.time()
        interval = body["interval_s"]
        if interval < self.config["min_interval_s"]:
            errors["interval_s"] = [f"must be at least {self.config['min_interval_s']:g} s"]
        bounds = [key for key in ("frames", "duration_s", "end_at") if body.get(key) is not None]
        if len(bounds) > 1:
            for key in bounds:
                errors[key] = ["give at most one of frames, duration_s and end_at"]
        # The request schema checks the fixed bounds (frames >= 1, 0 < duration_s <= ten years).
        if body.get("frames") is not None and body["frames"] > self.config["max_frames"]:
            errors["frames"] = [f"must be between 1 and {self.config['max_frames']}"]
        for key in ("start_at", "end_at"):
            # Checked before anything converts the time: at the calendar's edge an
            # offset takes it past year 9999.
            if body.get(key) and body[key].timestamp() > now + HORIZON_S:
                errors[key] = ["must be at most ten years from now"]
        start = body["start_at"].timestamp() if body.get("start_at") else now
        if start < now - START_SLACK_S:
            errors["start_at"] = ["is more than a minute in the past"]
        if body.get("end_at") and body["end_at"].timestamp() <= start:
            errors.setdefault("end_at", ["must be after start_at"])
        window = body.get("active_hours")
        if window and window["start"] == window["end"]:
            errors["active_hours"] = ["start and end must differ (leave it out for all day)"]
        elif window:
            errors.update(self._check_window(window))
        try:
            settings = self.capture.resolve(
                {key: body[key] for key in CAPTURE_FIELDS if key in body}).to_dict()
        except InvalidInput as exc:
            errors.update(exc.extra["errors"])
        if errors:
            raise InvalidInput(errors)
        job = Job(
            id=new_id(dt.datetime.fromtimestamp(now, dt.timezone.utc)), name=body.get("name"),
            state="running" if start <= now else "scheduled", interval_s=interval,
            start_at=iso(start), settings=settings, created_at=iso(now),
            frames=body.get("frames"), duration_s=body.get("duration_s"),
            end_at=iso(body["end_at"]) if body.get("end_at") else None,
            active_start=window["start"] if window else None,
            active_end=window["end"] if window else None,
            started_at=iso(now) if start <= now else None, location=self.location)
        job.next_slot = job.schedule.next_active(0)
        if job.next_slot is None:
            raise InvalidInput({"active_hours": ["no frame of this schedule falls inside the window"]})
        self.store.insert(job, self.config["max_active_jobs"])
        self.events.publish("timelapse.state", resources.timelapse(job, self.clock.time()))
        self.scheduler.add(job)
        return job

    def _check_window(self, window: Mapping[str, str]) -> dict[str, list[str]]:
        errors = {}
        for key in ("start", "end"):
            try:
                sun = Window.parse(window[key], window[key]).sun_relative
            except ValueError as exc:
                errors[f"active_hours.{key}"] = [str(exc)]
                continue
            if sun and self.location is None:
                errors[f"active_hours.{key}"] = [
                    f"{window[key]} follows the sun: set location.latitude and "
                    "location.longitude in the config first"]
        return errors

    def get(self, job_id: str) -> Job:
        return self.scheduler.job(job_id) or self.store.get(job_id)

    def list(self, limit: int, cursor: str | None) -> Page[Job]:
        """A page of jobs, newest first, with the live state of the active ones."""
        page = keyset_page(self._cursor_key, "timelapses", limit, cursor, self.store.page)
        return replace(page, items=[self.scheduler.job(job.id) or job for job in page.items])

    def count(self) -> int:
        return self.store.count()

    def set_state(self, ref: str, state: str) -> Job:
        """Pause, resume or cancel the job with id or name ``ref``.

        Setting the state a job already has is allowed and changes nothing;
        anything else out of a finished state is a ``Conflict``.
        """
        found = self.store.find_active(ref)
        job = self.scheduler.change_state(found.id, state) if found else None
        if job is None:
            current = self.store.get(ref) if is_id(ref) else None
            if current is None:
                raise NotFound(f"no active time-lapse named {ref[:80]!r}")
            raise Conflict(f"the time-lapse is {current.state}; it cannot become {state}")
        return job

    def delete(self, job_id: str, with_frames: bool) -> None:
        """Remove a finished job, and its frames too if asked."""
        job = self.get(job_id)
        if job.active:
            raise Conflict(f"the time-lapse is {job.state}; cancel it before deleting it")
        if with_frames:
            self.photos.delete_frames(job.id)
        self.store.delete(job.id)
        self.events.publish("timelapse.deleted", {"id": job.id})

    def frames(self, job_id: str) -> Iterator[Photo]:
        """The job's stored frames in sequence order (404 for an unknown job)."""
        return self.photos.iter_frames(self.get(job_id).id)

    # -- what the scheduler calls ----------------------------------------------------

    def _take_frame(self, job: Job, sequence: int) -> Photo:
        return self.capture.take_photo(
            job.settings, source="timelapse", timelapse_id=job.id, sequence=sequence,
            on_indexed=lambda conn: JobStore.record_frame(conn, job.id, sequence))

    def _space_ok(self) -> bool:
        try:
            self.photos.check_space()
        except OSError:
            return False
        return True

