"""The JSON bodies of the API's resources: one shape for the HTTP views and for events.

An event about a photo, a time-lapse or a GPIO device carries the same body that
GET on its URL returns, links included, so a client can use either.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .gpio.live import LiveDevice
    from .storage import Photo
    from .timelapse.jobs import Job

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


def timelapse(job: Job) -> dict:
    """A time-lapse resource with its capture settings at the top level and its links."""
    base = f"{API}/timelapses/{job.id}"
    return {
        **job.settings,
        "id": job.id, "name": job.name, "state": job.state, "interval_s": job.interval_s,
        "frames": job.frames, "duration_s": job.duration_s, "end_at": job.ends_at,
        "start_at": job.start_at,
        "active_hours": {"start": job.active_start, "end": job.active_end}
        if job.active_start else None,
        "frames_captured": job.frames_captured, "frames_missed": job.frames_missed,
        "frames_failed": job.frames_failed, "next_frame_at": job.next_frame_at,
        "started_at": job.started_at, "finished_at": job.finished_at,
        "last_error": job.last_error, "pause_reason": job.pause_reason,
        "links": {"self": base, "frames": f"{API}/photos?timelapse={job.id}",
                  "archive": f"{base}/archive.zip"},
    }


def gpio_device(device: LiveDevice) -> dict:
    """A device resource with its link."""
    return {**device.state(), "links": {"self": f"{API}/gpio/{device.name}"}}
