"""``picam-api serve``: gunicorn with one gthread worker that owns the camera.

libcamera lets one process hold a camera and GPIO lines are exclusive, so there
is exactly one worker, the app (and camera) is built inside it after the fork,
and it is shut down when the worker exits. Threads serve concurrent requests.
"""
from __future__ import annotations

import logging
import math
import sys

from gunicorn.app.base import BaseApplication

from .errors import PicamError

log = logging.getLogger(__name__)


class Server(BaseApplication):
    """A gunicorn application for one picam-api config."""

    def __init__(self, config: dict):
        self.picam_config = config
        super().__init__()

    def load_config(self) -> None:
        server = self.picam_config["server"]
        settings = {
            "bind": [f"{_bracketed(server['host'])}:{server['port']}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": server["threads"],
            # Never build the app in the arbiter: the camera must open after fork.
            "preload_app": False,
            "graceful_timeout": math.ceil(server["graceful_timeout_s"]),
            "keepalive": 5,
            "errorlog": "-",
            "loglevel": self.picam_config["log"]["level"].lower(),
            "proc_name": "picam-api",
            "worker_exit": _worker_exit,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app
        try:
            return create_app(self.picam_config)
        except PicamError as exc:
            log.error("%s", exc.detail)
            # gunicorn's "worker failed to boot" code: the arbiter stops, no respawn loop.
            sys.exit(3)


def _worker_exit(server, worker) -> None:
    app = getattr(worker, "wsgi", None)
    if app is not None and "picam" in getattr(app, "extensions", {}):
        app.extensions["picam"].shutdown()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(config: dict) -> int:
    Server(config).run()
    return 0
