"""The MQTT topic names, all under ``<base_topic>/<node_id>/``, and Home Assistant's."""
from __future__ import annotations

import hashlib
import re
import socket

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def default_node_id() -> str:
    """This host's name, made into what Home Assistant accepts in a discovery topic."""
    return safe_id(socket.gethostname().split(".")[0]) or "picam"


def safe_id(name: str) -> str:
    """``name`` in [A-Za-z0-9_-]; a name that had to change gets a short hash, so two
    names that read alike ("a.b" and "a_b") stay apart."""
    cleaned = _UNSAFE.sub("_", name)[:48]
    if cleaned == name:
        return name
    return f"{cleaned}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


class Topics:
    """Every topic one node uses."""

    def __init__(self, base: str, node: str, discovery_prefix: str):
        self.node = node
        self.root = f"{base}/{node}"
        self.prefix = discovery_prefix
        self.availability = f"{self.root}/availability"
        self.snapshot = f"{self.root}/snapshot"
        self.commands = f"{self.root}/cmd/"
        self.result = f"{self.root}/cmd/result"
        self.ha_status = f"{discovery_prefix}/status"

    def state(self, *parts: str) -> str:
        return "/".join((self.root, "state", *parts))

    def event(self, event_type: str) -> str:
        return f"{self.root}/events/{event_type}"

    def discovery(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node}/{object_id}/config"
