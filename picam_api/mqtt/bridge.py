"""The MQTT bridge: the event bus and the state out to a broker, commands in.

paho-mqtt's own thread keeps the connection: it reconnects with a backoff
doubling up to ``mqtt.reconnect_max_s``, so a broker that is down (or refuses
us) never stops the service; the log and GET /api/v1/info say what happened.
The session is persistent (a fixed client id, clean_session false) and
commands are QoS 1 and acknowledged only once they have run, so a command sent
while we were away arrives when we are back, and one that arrives twice runs
once (see commands.py).

Two threads of ours: the publisher takes events from the bus (``events/<type>``)
and keeps the retained topics current (``availability``, ``state/...``,
``snapshot``, and the Home Assistant discovery configs), publishing them all
again on each connect and whenever HA says it is back (``<prefix>/status`` =
``online``); the commander runs the commands one at a time, so a slow capture
never holds up paho's thread.
"""
from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from .. import resources
from ..clock import iso
from ..errors import ConfigError, PicamError
from ..events import Event, Gap
from . import state
from .commands import Commands
from .discovery import Discovery, device_info
from .topics import Topics, default_node_id

if TYPE_CHECKING:
    from ..app import Services

log = logging.getLogger(__name__)

class _ConnectionNoise(logging.Filter):
    """paho logs each socket error itself; the bridge says it once, in its own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("failed to receive on socket",
                                               "Client is not connected"))


PAHO_LOG = logging.getLogger("picam_api.mqtt.paho")
PAHO_LOG.addFilter(_ConnectionNoise())
DISCOVERY_KEY = "mqtt_discovery:"  # + node id: the config topics published last time
STORAGE_EVERY_S = 60.0
MAX_QUEUED_COMMANDS = 1000


class MqttBridge:
    """One node's connection to the broker; ``start()`` and ``stop()`` are the app's."""

    def __init__(self, config: dict, services: Services):
        mqtt_config = config["mqtt"]
        self.config = mqtt_config
        self.services = services
        self.node_id = mqtt_config["node_id"] or default_node_id()
        self.topics = Topics(mqtt_config["base_topic"], self.node_id,
                             mqtt_config["discovery_prefix"])
        self.qos = mqtt_config["qos"]
        self.broker = f"{mqtt_config['host']}:{mqtt_config['port']}"
        self.commands = Commands(services, config["server"]["max_body_bytes"],
                                 mqtt_config["dedupe_s"])
        self.connected = False
        self.since: str | None = None
        self.last_error: str | None = None
        self.published = 0
        self._password = self._read_password()
        self._url = mqtt_config["configuration_url"] or (
            f"http://{socket.gethostname()}:{config['server']['port']}/")
        self._resync = threading.Event()
        self._stopping = threading.Event()
        self._commands: queue.Queue = queue.Queue(MAX_QUEUED_COMMANDS)
        self._storage_low: bool | None = None
        self._announced: set[str] = set()  # the time-lapses whose sensors were published
        self._client = self._make_client()
        self._subscription = None
        self._threads = [threading.Thread(target=self._publish_loop, name="picam-mqtt-publish",
                                          daemon=True),
                         threading.Thread(target=self._command_loop, name="picam-mqtt-commands",
                                          daemon=True)]
        for thread in self._threads:
            services.worker_health.watch(thread)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._subscription = self.services.events.subscribe(size=10_000)
        for thread in self._threads:
            thread.start()
        self._client.connect_async(self.config["host"], self.config["port"],
                                   keepalive=self.config["keepalive_s"])
        self._client.loop_start()
        log.info("MQTT: connecting to %s as node %r (topics under %s/)", self.broker,
                 self.node_id, self.topics.root)

    def stop(self, timeout: float) -> None:
        """Say ``offline`` (retained) and disconnect; the broker sends no will after a clean goodbye."""
        self._stopping.set()
        if self.connected:
            info = self._client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(min(timeout, 2.0))
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        if self._subscription is not None:
            self._subscription.close()
        self._commands.put(None)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def status(self) -> dict:
        """What /api/v1/info says about MQTT."""
        return {"enabled": True, "broker": self.broker, "connected": self.connected,
                "since": self.since, "last_error": self.last_error, "node_id": self.node_id,
                "base_topic": self.topics.root, "discovery": self.config["discovery"],
                "published": self.published, "commands": self.commands.handled}

    # -- paho's callbacks (on paho's thread: quick, and never raising) -------------------

    def _make_client(self) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=config["client_id"] or f"picam-{self.node_id}",
                             clean_session=False, protocol=mqtt.MQTTv311)
        client.enable_logger(PAHO_LOG)
        client.will_set(self.topics.availability, "offline", qos=1, retain=True)
        if config["username"]:
            client.username_pw_set(config["username"], self._password)
        if config["tls"]:
            client.tls_set(ca_certs=config["ca_file"] or None)
            client.tls_insecure_set(config["tls_insecure"])
        client.reconnect_delay_set(1, int(max(1, config["reconnect_max_s"])))
        client.max_queued_messages_set(1000)
        client.manual_ack_set(True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _read_password(self) -> str | None:
        config = self.config
        if config["password"] and config["password_file"]:
            raise ConfigError("mqtt.password_file: give the password or a password file, not both")
        if not config["password_file"]:
            return config["password"] or None
        try:
            return Path(config["password_file"]).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {config['password_file']}: "
                              f"{exc.strerror}") from None

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._failed(f"the broker refused the connection: {reason_code}")
            return
        self.connected, self.since, self.last_error = True, iso(time.time()), None
        log.info("MQTT: connected to %s", self.broker)
        client.subscribe([(self.topics.commands + "#", 1), (self.topics.ha_status, 1)])
        self._resync.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._failed("cannot reach the broker")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected, self.since = False, iso(time.time())
        if was and not self._stopping.is_set():
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT: lost the connection to %s (%s); reconnecting", self.broker,
                        reason_code)

    def _failed(self, error: str) -> None:
        if error != self.last_error:  # once per cause, not at every retry
            log.error("MQTT: %s %s; the service goes on and retries", self.broker, error)
        self.connected, self.last_error = False, error

    def _on_message(self, client, userdata, message) -> None:
        topic = message.topic
        if topic.startswith(self.topics.commands) and topic != self.topics.result:
            try:
                self._commands.put_nowait(message)
                return  # acknowledged once it has run
            except queue.Full:
                log.warning("MQTT: %d commands waiting; %s dropped", MAX_QUEUED_COMMANDS, topic)
        elif topic == self.topics.ha_status and message.payload == b"online":
            log.info("MQTT: Home Assistant is online; publishing discovery and state again")
            self._resync.set()
        client.ack(message.mid, message.qos)

    # -- the commander -------------------------------------------------------------------

    def _command_loop(self) -> None:
        while True:
            message = self._commands.get()
            if message is None or self._stopping.is_set():
                return
            try:
                answer = self.commands.handle(message.topic[len(self.topics.commands):],
                                              message.payload)
                if answer is not None:
                    self._publish(self.topics.result, answer, qos=1)
            except Exception as exc:  # never let the thread die: count it, ack, go on
                self.services.worker_health.failed("picam-mqtt-commands", exc)
            self._client.ack(message.mid, message.qos)

    # -- the publisher -------------------------------------------------------------------

    def _publish_loop(self) -> None:
        last_storage = time.monotonic()
        while not self._stopping.is_set():
            if self._resync.is_set() and self.connected:
                self._resync.clear()
                self._guarded(self._publish_all)
                last_storage = time.monotonic()
            try:
                events = self._subscription.get(0.5)
            except Gap:
                self._resync.set()  # fell behind the log: the state, at least, is current again
                continue
            if events:
                self._guarded(lambda: self._publish_events(events))
            if time.monotonic() - last_storage >= STORAGE_EVERY_S and self.connected:
                self._guarded(self._publish_storage)
                last_storage = time.monotonic()

    def _guarded(self, work) -> None:
        try:
            work()
        except Exception as exc:  # a camera or disk fault while gathering state: count, go on
            self.services.worker_health.failed("picam-mqtt-publish", exc)

    def _publish_all(self) -> None:
        services = self.services
        self._publish(self.topics.availability, "online", qos=1, retain=True)
        self._publish(self.topics.state("camera"), state.camera(services), retain=True)
        self._publish_storage()
        for device in services.gpio.devices.values():
            self._publish_gpio(device)
        for job in self._active_jobs():
            self._publish(self.topics.state("timelapse", job.id),
                          state.timelapse(resources.timelapse(job)), retain=True)
        latest = services.photos.list(1).items
        if latest:
            self._publish_snapshot(latest[0].id)
        if self.config["discovery"]:
            self._publish_discovery()

    def _publish_events(self, events: list[Event]) -> None:
        storage_changed, snapshot = False, None
        for event in events:
            self._publish(self.topics.event(event.type), event.json)
            kind, data = event.type, event.data
            if kind in ("photo.created", "photo.deleted", "storage.low", "storage.ok"):
                storage_changed = True
                if kind == "storage.low" or kind == "storage.ok":
                    self._storage_low = kind == "storage.low"
                if kind == "photo.created":
                    snapshot = data["id"]
            elif kind == "gpio.changed":
                self._publish(self.topics.state("gpio", data["name"]), data, retain=True)
            elif kind == "camera.health":
                self._publish(self.topics.state("camera"), state.camera(self.services), retain=True)
            elif kind in ("timelapse.state", "timelapse.progress"):
                self._publish_timelapse(data)
        if storage_changed:
            self._publish_storage()
        if snapshot:
            self._publish_snapshot(snapshot)  # the newest of the batch only

    def _publish_timelapse(self, data: dict) -> None:
        topic = self.topics.state("timelapse", data["id"])
        active = data["state"] in ("scheduled", "running", "paused")
        # Empty once finished: no longer a state to keep.
        self._publish(topic, state.timelapse(data) if active else b"", retain=True)
        if self.config["discovery"] and active != (data["id"] in self._announced):
            self._publish_discovery()  # a new job gets its sensor, a finished one loses it

    def _publish_storage(self) -> None:
        self._publish(self.topics.state("storage"), state.storage(self.services, self._storage_low),
                      retain=True)

    def _publish_gpio(self, device) -> None:
        self._publish(self.topics.state("gpio", device.name), resources.gpio_device(device),
                      retain=True)

    def _publish_snapshot(self, photo_id: str) -> None:
        photos = self.services.photos
        try:
            photo = photos.get(photo_id)
            small = photo.format == "jpeg" and photo.bytes <= self.config["snapshot_max_bytes"]
            with (photos.open_image(photo) if small else photos.open_thumbnail(photo)) as image:
                data = image.read()
        except (PicamError, OSError):  # deleted meanwhile, or damaged: the next photo will do
            return
        self._publish(self.topics.snapshot, data, retain=True)

    def _publish_discovery(self) -> None:
        """Every config this node has now; an empty retained message for each it had before and not now."""
        services = self.services
        try:
            model = services.owner.capabilities.model
        except Exception:
            model = None
        device = device_info(self.node_id, self.config["device_name"] or f"picam {self.node_id}",
                             model, self._url)
        jobs = self._active_jobs()
        self._announced = {job.id for job in jobs}
        configs = Discovery(self.topics, device).configs(list(services.gpio.devices.values()), jobs)
        key = DISCOVERY_KEY + self.node_id
        row = services.db.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        before = set(json.loads(row[0])) if row else set()
        for topic in sorted(before - set(configs)):
            self._publish(topic, b"", qos=1, retain=True)
        for topic, payload in configs.items():
            self._publish(topic, payload, qos=1, retain=True)
        with services.db.transaction() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = excluded.value", (key, json.dumps(sorted(configs))))

    def _active_jobs(self) -> list:
        timelapses = self.services.timelapses
        return [timelapses.scheduler.job(job.id) or job for job in timelapses.store.active()]

    def _publish(self, topic: str, payload, qos: int | None = None, retain: bool = False) -> None:
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload, separators=(",", ":"), default=str)
        self._client.publish(topic, payload, qos=self.qos if qos is None else qos, retain=retain)
        self.published += 1
