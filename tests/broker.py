"""A real Mosquitto for the tests: a free port, a password file, ACLs, persistence.

Users: ``picam`` and ``picam2`` (the services: their own nodes' topics and
discovery), ``ha`` (the test's Home Assistant: reads everything, sends commands
and the HA status). Nobody else gets in. ``restart()`` stops it and starts it on
the same port with the same persisted sessions and retained messages.
"""
from __future__ import annotations

import getpass
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from conftest import free_port

MOSQUITTO = Path("/usr/sbin/mosquitto")
PASSWD = Path("/usr/bin/mosquitto_passwd")
USERS = {"picam": "picam-secret-1", "picam2": "picam-secret-2", "ha": "ha-secret-1"}
ACL = """
user picam
topic readwrite picam/#
topic readwrite homeassistant/#

user picam2
topic readwrite picam/#
topic readwrite homeassistant/#

user ha
topic read #
topic write picam/+/cmd/#
topic write homeassistant/status
"""


class Broker:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.log = root / "mosquitto.log"
        passwords = root / "passwords"
        passwords.write_text("")
        for user, password in USERS.items():
            subprocess.run([str(PASSWD), "-b", str(passwords), user, password], check=True,
                           capture_output=True)
        (root / "acl").write_text(ACL)
        (root / "mosquitto.conf").write_text(
            # As root, mosquitto would switch to its own user, who cannot write here.
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {passwords}\nacl_file {root / 'acl'}\n"
            f"persistence true\npersistence_location {root}/\nautosave_interval 1\n"
            f"log_dest file {self.log}\nlog_type all\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.root / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def toml(self, user: str = "picam", node: str = "node1", **extra) -> str:
        lines = [f'host = "127.0.0.1"', f"port = {self.port}", f'username = "{user}"',
                 f'password = "{USERS[user]}"', f'node_id = "{node}"', "reconnect_max_s = 2"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
        return "[mqtt]\n" + "\n".join(lines) + "\n"

    def config(self, user: str = "picam", node: str = "node1", **extra) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "username": user,
                "password": USERS[user], "node_id": node, "reconnect_max_s": 2, **extra}


class Subscriber:
    """The test's Home Assistant: records every message it sees, retained ones too."""

    def __init__(self, broker: Broker, topics=("#",), client_id: str = "test-ha"):
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set("ha", USERS["ha"])
        self.connected = threading.Event()
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.topics = topics
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.connected.wait(10), "the test subscriber did not connect"

    def _connected(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(topic, 1) for topic in self.topics])
        self.connected.set()

    def _message(self, client, userdata, message):
        with self.lock:
            self.messages.append(message)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if mqtt.topic_matches_sub(topic, m.topic)]

    def last(self, topic: str):
        found = self.on(topic)
        return found[-1] if found else None

    def json(self, topic: str):
        message = self.last(topic)
        return json.loads(message.payload) if message and message.payload else None

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()

    def send(self, topic: str, payload, qos: int = 1) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic, data, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
