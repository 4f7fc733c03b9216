"""The JSON bodies of the API's resources: one shape for the HTTP views and for events.

An event about a photo, a time-lapse or a GPIO device carries the same body that
GET on its URL returns, links included, so a client can use either.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .clock import iso

if TYPE_CHECKING:
    from .gpio.live import LiveDevice
    from .storage import Photo
    from .timelapse.jobs import Job
    from .video.store import Video

API = "/api/v1"


def photo(photo: Photo) -> dict:
    """A photo resource with its links."""
    base = f"{API}/photos/{photo.id}"
    return {
        "id": photo.id, "taken_at": photo.taken_at, "width": photo.width,
        "height": photo.height, "format": photo.format, "bytes": photo.bytes,
        "settings": photo.settings, "metadata": photo.metadata, "source": photo.source,
        "timelapse_id": photo.timelapse_id, "sequence": photo.sequence, "trigger": photo.trigger,
        "links": {"self": base, "image": f"{base}/image", "thumbnail": f"{base}/thumbnail"},
    }


def timelapse(job: Job, now: float | None = None) -> dict:
    """A time-lapse resource with its capture settings at the top level and its links.

    ``now`` (default: the real time) picks the day whose window ``active_hours.today``
    shows; the time-lapse service passes its own clock's.
    """
    base = f"{API}/timelapses/{job.id}"
    return {
        **job.settings,
        "id": job.id, "name": job.name, "state": job.state, "interval_s": job.interval_s,
        "frames": job.frames, "duration_s": job.duration_s, "end_at": job.ends_at,
        "start_at": job.start_at,
        "active_hours": _active_hours(job, time.time() if now is None else now),
        "frames_captured": job.frames_captured, "frames_missed": job.frames_missed,
        "frames_failed": job.frames_failed, "next_frame_at": job.next_frame_at,
        "started_at": job.started_at, "finished_at": job.finished_at,
        "last_error": job.last_error, "pause_reason": job.pause_reason,
        "links": {"self": base, "frames": f"{API}/photos?timelapse={job.id}",
                  "archive": f"{base}/archive.zip"},
    }


def _active_hours(job: Job, now: float) -> dict | None:
    window = job.schedule.window
    if window is None:
        return None
    today = window.today(now, job.schedule.tz)
    return {"start": job.active_start, "end": job.active_end,
            "today": {"start": iso(today[0]), "end": iso(today[1])} if today else None}


def gpio_device(device: LiveDevice) -> dict:
    """A device resource with its link."""
    return {**device.state(), "links": {"self": f"{API}/gpio/{device.name}"}}


def video(video: Video) -> dict:
    """A video resource with its links."""
    base = f"{API}/videos/{video.id}"
    return {
        "id": video.id, "state": video.state, "progress": video.progress,
        "source": video.source, "timelapse_id": video.timelapse_id, "trigger": video.trigger,
        "created_at": video.created_at, "started_at": video.started_at,
        "finished_at": video.finished_at, "frames": video.frames,
        "frames_skipped": video.frames_skipped, "duration_s": video.duration_s,
        "fps": video.fps, "width": video.width, "height": video.height, "codec": video.codec,
        "bytes": video.bytes, "last_error": video.last_error, "attempts": video.attempts,
        "options": video.options,
        "links": {"self": base, "video": f"{base}/video.mp4", "thumbnail": f"{base}/thumbnail"},
    }
