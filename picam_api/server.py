"""``picam-api serve``: one process that owns the camera and serves HTTP in the foreground.

libcamera lets one process hold a camera and GPIO lines are exclusive, so this
process builds the app once, opens nothing in a parent, forks nothing, and is
what systemd watches. In order:

1. bind the listening socket (an address in use is one line and exit 1, so
   systemd tries again; any other failure is a config error, exit 2);
2. build the app (camera, database, workers); a bad data dir or config is one
   line and exit 2;
3. listen and serve (http_server.py: waitress with deadlines and connection
   caps), tell systemd ``READY=1`` and feed its watchdog at once, since its
   clock starts now (the pings then go on from the watchdog worker, watchdog.py);
4. on SIGTERM, SIGINT or SIGHUP alike, even during 2: ``STOPPING=1``, end the live
   streams (they never end by themselves), stop accepting, answer the requests
   in flight for up to ``server.graceful_timeout_s``, shut the app down (camera,
   GPIO, database) and exit 0.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import socket
import sys

from . import memory
from .errors import ConfigError
from .watchdog import notify

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Worth a restart by systemd: the address may be free, or configured, a moment later.
_TRANSIENT_BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)


class _Stop:
    """What the stop signals do: note the signal, and wake the server if it runs."""

    def __init__(self):
        self.signal: int | None = None
        self.server = None

    def __call__(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signum
            if self.server is not None:
                self.server.stop()


def setup_logging(level: str) -> None:
    """Log plain lines to stderr, where journald picks them up under systemd."""
    logging.basicConfig(level=level, stream=sys.stderr, format=log_format())
    if logging.getLevelName(level) > logging.DEBUG:
        # waitress logs every client that hangs up mid-response at INFO: routine.
        logging.getLogger("waitress").setLevel(logging.WARNING)


def log_format() -> str:
    """The line shape of every log line.

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


def serve(config: dict) -> int:
    """Run the server until a stop signal; the exit status."""
    server_config = config["server"]
    stop = _Stop()
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        sock = _bind(server_config["host"], server_config["port"])
    except OSError as exc:
        # Exit 1, not 2: under systemd the address may be free (or configured) a
        # moment later, and the unit retries 1 but not 2.
        print(f"picam-api: {exc.strerror}; stop what listens there, or choose another "
              f"port (--port, PICAM_PORT or server.port)", file=sys.stderr)
        return 1
    _allow_files(server_config["max_connections"])
    memory.one_arena()  # before any thread starts: see memory.py

    from .app import create_app
    from .http_server import HttpServer
    try:
        app = create_app(config)
    except BaseException:
        sock.close()
        raise
    services = app.extensions["picam"]
    try:
        server = stop.server = HttpServer(app, sock, server_config)
        if stop.signal is None:
            log.info("listening on %s", server.url)
            notify("READY=1")
            if services.watchdog is not None:
                services.watchdog.wake()  # systemd's watchdog clock starts at READY=1
        else:
            server.stop()

        def on_stop() -> None:
            log.info("stopping on %s", signal.Signals(stop.signal).name)
            notify("STOPPING=1")
            services.close_streams()  # live view and events: they never end by themselves

        server.run_until_stopped(server_config["graceful_timeout_s"], on_stop)
    finally:
        services.shutdown()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A bound, not yet listening, socket for ``host`` and ``port``."""
    host = host.strip("[]")
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"server.host: cannot listen on {where}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno in _TRANSIENT_BIND_ERRORS:
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
        raise ConfigError(f"server.host, server.port: cannot listen on {where}: "
                          f"{exc.strerror}") from None
    return sock


def _allow_files(connections: int) -> None:
    """Raise the soft limit on open files to what the connection cap needs, if below.

    Each connection is a socket, and may buffer a large body or response in a temp file.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 3 * connections + 128
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))
