"""The retained ``state/...`` payloads: camera, storage, each GPIO device, each active time-lapse."""
from __future__ import annotations

import datetime as dt
import shutil
import time
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from ..app import Services


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
    latest = services.photos.list(1).items
    return {"free_bytes": disk.free, "total_bytes": disk.total,
            "reserve_bytes": services.photos.reserve_bytes, "low": low,
            "photos": stats["count"], "photo_bytes": stats["bytes"],
            "last_photo_at": latest[0].taken_at if latest else None,
            "last_photo_id": latest[0].id if latest else None}


def timelapse(resource: dict) -> dict:
    """A time-lapse's resource and its ``progress``: percent of its frames, or of its
    time; None for one without an end."""
    return {**resource, "progress": progress(resource)}


def progress(job: dict) -> float | None:
    if job["frames"]:
        taken = job["frames_captured"] + job["frames_missed"] + job["frames_failed"]
        return round(min(100.0, 100.0 * taken / job["frames"]), 1)
    start = dt.datetime.fromisoformat(job["start_at"]).timestamp()
    if job["end_at"]:
        end = dt.datetime.fromisoformat(job["end_at"]).timestamp()
    elif job["duration_s"]:
        end = start + job["duration_s"]
    else:
        return None
    now = dt.datetime.fromisoformat(job["finished_at"]).timestamp() if job["finished_at"] else time.time()
    return round(min(100.0, max(0.0, 100.0 * (now - start) / (end - start))), 1)
