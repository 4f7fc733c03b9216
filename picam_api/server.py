"""``picam-api serve``: gunicorn with one gthread worker that owns the camera.

libcamera lets one process hold a camera and GPIO lines are exclusive, so there
is exactly one worker, the app (and camera) is built inside it after the fork,
and it is shut down when the worker exits. Threads serve concurrent requests.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys

from gunicorn import glogging
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
            # gunicorn's most (default 4094): a request within the API's own limits (a
            # 512-character cursor, percent-encoded) must reach the app, which answers
            # a bad one with a problem; gunicorn's own 414 is an HTML page.
            "limit_request_line": 8190,
            "errorlog": "-",
            "logger_class": _GunicornLogger,
            "loglevel": self.picam_config["log"]["level"].lower(),
            "proc_name": "picam-api",
            "post_worker_init": _post_worker_init,
            "worker_exit": _worker_exit,
        }
        if "control_socket_disable" in self.cfg.settings:
            # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR or ~/.gunicorn,
            # one path shared by every instance of the user, through which the worker
            # count can be changed; there must stay exactly one worker.
            settings["control_socket_disable"] = True
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


def setup_logging(level: str) -> None:
    """Log plain lines to stderr, where journald picks them up under systemd."""
    logging.basicConfig(level=level, stream=sys.stderr, format=log_format())


def log_format() -> str:
    """The line shape of the app's log and of gunicorn's own.

    journald stamps every line itself, so when stderr is the journal stream that
    systemd names in $JOURNAL_STREAM ("device:inode"), a second timestamp is left out.
    """
    stamp = "" if _stderr_is_journal() else "%(asctime)s "
    return f"{stamp}%(levelname)s %(name)s: %(message)s"


def _stderr_is_journal() -> bool:
    try:
        device, inode = (int(n) for n in os.environ.get("JOURNAL_STREAM", "").split(":"))
        stat = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


class _GunicornLogger(glogging.Logger):
    """gunicorn's logger, writing its lines in ``log_format()``."""

    datefmt = None  # logging's default, as in the app's lines

    def __init__(self, cfg):
        self.error_fmt = log_format()
        super().__init__(cfg)


def _post_worker_init(worker) -> None:
    # On SIGTERM gunicorn waits for requests in flight for the whole grace period,
    # then kills the worker before it closes the camera; live streams never end
    # by themselves, so end them first.
    graceful_exit = signal.getsignal(signal.SIGTERM)

    def end_streams_then_exit(signum, frame):
        services = _services(worker)
        if services is not None:
            services.streams.close()
        graceful_exit(signum, frame)

    signal.signal(signal.SIGTERM, end_streams_then_exit)


def _worker_exit(server, worker) -> None:
    services = _services(worker)
    if services is not None:
        services.shutdown()


def _services(worker):
    app = getattr(worker, "wsgi", None)
    return getattr(app, "extensions", {}).get("picam")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def serve(config: dict) -> int:
    Server(config).run()
    return 0
