"""The application factory and the per-app services it wires together."""
from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Mapping

import flask_swagger_ui
from apiflask import APIFlask
from flask import send_from_directory

from . import __version__, datadir, headers, hosts, openapi, problems, request_rules
from .accounts import Accounts
from .auth import CredentialCache, LoginGuard
from .camera import CameraOwner, make_backend
from .capture import CaptureService
from .config import from_mapping, load_config
from .db import Database
from .events import EventBus
from .events.sse import EventStreams
from .files import SpaceReserve
from .gpio import GpioService
from .passwords import Hasher
from .retention import enforce as enforce_retention
from .storage import PhotoStore
from .storage_watch import StorageWatch
from .stream_urls import StreamUrls
from .streaming import StreamHub
from .timelapse import TimelapseService
from .timelapse.sun import Location
from .video import VideoService
from .watchdog import Watchdog, ping_interval
from .webhooks import WebhookService
from .workers import Worker, WorkerHealth

log = logging.getLogger(__name__)


class Services:
    """Everything one app instance owns; ``app.extensions["picam"]``.

    Built by ``create_app``; ``shutdown()`` stops the workers, closes the camera
    and the database, and is safe to call twice.
    """

    def __init__(self, config: dict):
        self.config = config
        self.started_at = time.time()
        self.worker_health = WorkerHealth()
        self.data_dir = datadir.prepare(Path(config["storage"]["data_dir"]))
        self.db = Database(self.data_dir / "picam.db", SpaceReserve(self.data_dir))
        self.db.migrate()
        self.db.reserve.ensure()
        self.events = EventBus(self.db, config["events"]["keep"], self.worker_health)
        auth = config["auth"]
        self.accounts = Accounts(self.db, auth["token_ttl_s"],
                                 Hasher(auth["max_concurrent_hashes"]),
                                 auth["max_tokens_per_user"], auth["tokens_per_minute"])
        self.credential_cache = CredentialCache(auth["credential_cache_s"])
        self.login_guard = LoginGuard(auth["max_failures"], auth["failure_window_s"])
        camera = config["camera"]
        self.backend = make_backend(config)
        self.owner = CameraOwner(self.backend, camera["capture_timeout_s"], camera["retry_after_s"],
                                 events=self.events)
        storage = config["storage"]
        cursor_key = self._secret("cursor_key")
        self.photos = PhotoStore(self.db, self.data_dir, storage["reserve_mb"] * 2**20,
                                 storage["thumbnail_px"], cursor_key, self.events)
        self.recovery = self.photos.recover()
        self.capture = CaptureService(self.owner, self.photos, self.db)
        self.streams = StreamHub(self.owner, self.capture, config, self.worker_health)
        self.stream_urls = StreamUrls(self._secret("stream_url_key"), config["stream"]["url_ttl_s"])
        self.timelapses = TimelapseService(self.db, self.capture, self.photos, config["timelapse"],
                                           cursor_key, health=self.worker_health,
                                           location=Location.from_config(config["location"]),
                                           events=self.events)
        self.videos = VideoService(self.db, self.data_dir, self.photos, self.timelapses,
                                   self.capture, self.owner, config, cursor_key,
                                   health=self.worker_health, events=self.events)
        self.gpio = GpioService(config["gpio"], owner=self.owner, capture=self.capture,
                                timelapses=self.timelapses, videos=self.videos,
                                events=self.events, health=self.worker_health,
                                light=camera["light"])
        self.event_streams = EventStreams(self.events, config["events"], camera["retry_after_s"])
        self.webhooks = WebhookService(self.db, self.events, self.photos, config["webhooks"],
                                       self.data_dir, cursor_key, self.worker_health)
        self.mqtt = None
        if config["mqtt"]["host"]:
            from .mqtt import MqttBridge  # paho is imported only when MQTT is configured
            self.mqtt = MqttBridge(config, self)
        self.workers: list[Worker] = []
        watch = StorageWatch(self.data_dir, config["events"]["storage_low_mb"] * 2**20,
                             self.photos.reserve_bytes, self.events)
        self.workers.append(Worker("picam-storage-watch", watch.tick,
                                   config["events"]["storage_check_s"], self.worker_health))
        if storage["max_photos"] or storage["max_bytes"] or storage["max_videos"]:
            self.retention = Worker(
                "picam-retention",
                lambda: enforce_retention(self.photos, self.videos.store, storage["max_photos"],
                                          storage["max_videos"], storage["max_bytes"]),
                storage["retention_interval_s"], self.worker_health)
            self.workers.append(self.retention)
        else:
            self.retention = None
        interval = ping_interval()
        self.watchdog: Worker | None = None
        if interval:  # under systemd with WatchdogSec=; the server wakes it at READY=1
            self.watchdog = Worker("picam-watchdog", Watchdog(self.owner).tick, interval,
                                   self.worker_health)
            self.workers.append(self.watchdog)
        self._stopped = False

    def start(self) -> None:
        self.events.start()
        self.webhooks.start()
        self.timelapses.start()
        self.videos.start()
        self.gpio.start()
        for worker in self.workers:
            worker.start()
        if self.mqtt is not None:
            self.mqtt.start()

    def close_streams(self) -> None:
        """End every live-view and event stream now (they never end by themselves)."""
        self.streams.close()
        self.event_streams.close()

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        timeout = self.config["server"]["graceful_timeout_s"]
        if self.mqtt is not None:
            self.mqtt.stop(timeout)
        self.webhooks.stop(timeout)
        self.timelapses.stop(timeout)
        self.videos.stop(timeout)
        for worker in self.workers:
            worker.stop(timeout)
        self.gpio.shutdown(timeout)
        self.streams.shutdown(timeout)
        self.accounts.hasher.close()
        self.event_streams.close()
        # Last: what the others published while stopping is still logged (and
        # queued for the webhooks, which deliver it after the next start).
        self.events.stop(timeout)
        self.owner.close()
        self.db.close()
        log.info("picam-api stopped")

    def _secret(self, name: str) -> bytes:
        """A random key made once and kept in the database (survives restarts)."""
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                         (name, secrets.token_hex(32)))
            return bytes.fromhex(conn.execute("SELECT value FROM meta WHERE key = ?",
                                              (name,)).fetchone()[0])


def create_app(config: Mapping | None = None) -> APIFlask:
    """Build the app.

    ``config`` is a nested mapping over the built-in defaults (tests, embedding);
    without it the config comes from the file and environment, as DESIGN.md says.
    """
    config = load_config() if config is None else from_mapping(config)
    app = APIFlask(__name__, title="picam-api", version=__version__,
                   spec_path="/openapi.json", docs_path="/docs", docs_ui="swagger-ui",
                   spec_plugins=[openapi.JsonSchemaRules()],
                   # No /static/<path> route: it would serve whatever lands in
                   # picam_api/static to anyone. Public files have routes of their own.
                   static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=config["server"]["max_body_bytes"],
        # Keep /docs working with no internet: Swagger UI comes from the package.
        SWAGGER_UI_CSS="/docs/assets/swagger-ui.css",
        SWAGGER_UI_BUNDLE_JS="/docs/assets/swagger-ui-bundle.js",
        SWAGGER_UI_STANDALONE_PRESET_JS="/docs/assets/swagger-ui-standalone-preset.js",
        DOCS_FAVICON="/docs/assets/favicon-32x32.png",
        # No badge fetched from validator.swagger.io: offline, and the CSP allows no other host.
        SWAGGER_UI_CONFIG={"validatorUrl": None},
        AUTO_SERVERS=False,
        INFO={"description": "Photos, time-lapses, GPIO and live view for a Raspberry Pi "
                             "camera. Every route but health and the docs needs Basic or "
                             "Bearer credentials (the live view also takes a signed URL); "
                             "operator actions need the operator role."},
    )
    # An id like "..%2f" must be a 404, not a redirect to a merged path.
    app.url_map.merge_slashes = False
    problems.init_app(app)
    headers.init_app(app)
    # The Host check first: a request for another name gets 421, whatever else is wrong.
    hosts.init_app(app, config)
    request_rules.init_app(app, config["server"]["allowed_origins"])

    services = Services(config)
    app.extensions["picam"] = services
    openapi.init_app(app, services.owner, config)
    password = services.accounts.ensure_admin(services.data_dir,
                                              os.environ.get("PICAM_ADMIN_PASSWORD"))
    if password:
        # The password itself stays out of the log, which journald keeps for long.
        log.warning("created user 'admin'; its password is in %s (mode 0600); change it "
                    "with 'picam-api user passwd admin'",
                    services.data_dir / "initial-admin-password")

    assets = Path(flask_swagger_ui.__file__).parent / "dist"

    @app.get("/docs/assets/<path:name>")
    @app.doc(hide=True)
    def docs_asset(name: str):
        return send_from_directory(assets, name, max_age=86400)

    from .api import bp, responses, root
    responses.init_app(app, config["server"]["public_url"])
    app.register_blueprint(bp)
    app.register_blueprint(root)
    services.start()
    return app

