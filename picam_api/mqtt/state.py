"""The retained ``state/...`` payloads: camera, storage, each GPIO device, each active time-lapse."""
from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from .. import resources

if TYPE_CHECKING:
    from ..app import Services
    from ..timelapse.jobs import Job


def camera(services: Services) -> dict:
    health = services.owner.health()
    try:
        model = services.owner.capabilities.model
    except Exception:  # no camera: reported, not raised
        model = None
    return {"usable": health["ok"], "reason": health["error"], "backend": services.backend.name,
            "model": model, "last_capture_at": health["last_capture_at"]}


def storage(services: Services, low: bool | None) -> dict:
    disk = shutil.disk_usage(services.data_dir)
    stats = services.photos.stats()
    latest, _ = services.photos.list(1)
    return {"free_bytes": disk.free, "total_bytes": disk.total,
            "reserve_bytes": services.photos.reserve_bytes, "low": low,
            "photos": stats["count"], "photo_bytes": stats["bytes"],
            "last_photo_at": latest[0].taken_at if latest else None,
            "last_photo_id": latest[0].id if latest else None}


def timelapse(job: Job) -> dict:
    """The job's resource and ``progress`` (percent of its frames or of its time; None if open-ended)."""
    return {**resources.timelapse(job), "progress": progress(job)}


def progress(job: Job) -> float | None:
    if job.frames:
        taken = job.frames_captured + job.frames_missed + job.frames_failed
        return round(min(100.0, 100.0 * taken / job.frames), 1)
    end = job.schedule.end
    if end is None:
        return None
    start = job.schedule.start
    return round(min(100.0, max(0.0, 100.0 * (time.time() - start) / (end - start))), 1)
