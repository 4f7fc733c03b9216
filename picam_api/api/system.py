"""Health and info."""
from __future__ import annotations

import shutil
import time

from .. import __version__
from ..auth import auth
from ..errors import PicamError
from . import bp
from .common import errors, services, viewer
from .schemas import Health, Info


@bp.get("/health")
@bp.output(Health)
@bp.doc(summary="Liveness", responses={503: {
    "description": "The camera or the database is unusable: the same report, with the reason",
    "content": {"application/json": {"schema": Health}}}})
def health():
    svc = services()
    camera = svc.owner.health()
    try:
        svc.db.check()
        database = {"ok": True, "error": None}
    except PicamError as exc:
        database = {"ok": False, "error": exc.detail}
    ok = camera["ok"] and database["ok"]
    return ({"status": "ok" if ok else "unavailable", "camera": camera, "database": database,
             "workers": svc.worker_health.report(), "version": __version__},
            200 if ok else 503)


@bp.get("/info")
@viewer
@bp.output(Info)
@bp.doc(summary="Version, camera, storage and uptime", responses=errors())
def info():
    svc = services()
    disk = shutil.disk_usage(svc.data_dir)
    camera = {"backend": svc.backend.name, "open": svc.owner.health()["ok"],
              "captures": svc.owner.captures, "failures": svc.owner.failures,
              "last_error": svc.owner.last_error}
    try:
        caps = svc.owner.capabilities
        camera.update(model=caps.model, sensor_size=list(caps.sensor_size))
    except Exception:  # a missing camera is reported, not raised, here
        camera.update(model=None, sensor_size=None)
    stats = svc.photos.stats()
    storage = {"free_bytes": disk.free, "total_bytes": disk.total,
               "reserve_bytes": svc.photos.reserve_bytes, "recovery": svc.recovery}
    if "operator" in auth.current_user.roles:
        storage["data_dir"] = str(svc.data_dir)  # where the files are: not a viewer's business
    video_stats = svc.videos.store.stats()
    return {
        "version": __version__,
        "backend": svc.backend.name,
        "camera": camera,
        "storage": storage,
        "uptime_s": round(time.time() - svc.started_at, 3),
        "counts": {"photos": stats["count"], "photo_bytes": stats["bytes"],
                   "videos": video_stats["count"], "video_bytes": video_stats["bytes"]},
        "gpio": svc.gpio.info(),
        "stream": svc.streams.stats(),
        "video": svc.videos.info(),
        "events": {**svc.events.stats(), "sse": svc.event_streams.stats()},
        "webhooks": {"count": len(svc.webhooks.list()), "max": svc.config["webhooks"]["max_webhooks"]},
        "mqtt": svc.mqtt.status() if svc.mqtt else {"enabled": False},
    }
