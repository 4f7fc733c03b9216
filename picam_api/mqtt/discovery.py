"""Home Assistant MQTT discovery: one device per node, and an entity config for each thing.

Each config is retained at ``<prefix>/<component>/<node_id>/<object_id>/config``
(HA's per-component discovery, which every HA release with MQTT discovery
reads). The device is the Pi: its identifiers carry the node id, so two nodes on
one broker are two devices. Entities: the latest photo (``camera``, from the
snapshot topic), a "Take photo" ``button``, the camera's health, disk free, the
photo count and the last photo's time, a ``switch`` per on/off output, a
``light`` with brightness per pwm output, a ``binary_sensor`` per input (with
the device class the config gives it, such as motion for a PIR), a device
trigger per input event, and a progress ``sensor`` per active time-lapse.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from .. import __version__
from .topics import Topics, safe_id

if TYPE_CHECKING:
    from ..gpio.live import LiveDevice
    from ..timelapse.jobs import Job

# value_json.value is the device's value: 0/1, or 0.0-1.0 for pwm.
ON_OFF = {"value_template": "{{ value_json.value }}", "state_on": "1", "state_off": "0"}
TRIGGER_TYPES = {"on_press": "button_short_press", "on_release": "button_short_release",
                 "on_hold": "button_long_press", "on_active": "turned_on",
                 "on_inactive": "turned_off"}


class Discovery:
    """Builds the config messages of one node."""

    def __init__(self, topics: Topics, device: dict):
        self.topics = topics
        self.device = device

    def configs(self, gpio: list[LiveDevice], jobs: list[Job]) -> dict[str, dict]:
        """Every config topic this node should have now, with its payload."""
        return dict(self._all(gpio, jobs))

    def _all(self, gpio, jobs) -> Iterator[tuple[str, dict]]:
        t = self.topics
        yield self._entity("camera", "snapshot", "Latest photo", topic=t.snapshot)
        yield self._entity("button", "take_photo", "Take photo", command_topic=t.commands + "photo",
                           payload_press="{}", icon="mdi:camera")
        yield self._entity("binary_sensor", "camera_problem", "Camera", state_topic=t.state("camera"),
                           value_template="{{ 'OFF' if value_json.usable else 'ON' }}",
                           device_class="problem", entity_category="diagnostic",
                           json_attributes_topic=t.state("camera"))
        storage = t.state("storage")
        yield self._entity("sensor", "disk_free", "Disk free", state_topic=storage,
                           value_template="{{ (value_json.free_bytes / 1048576) | round(0) }}",
                           unit_of_measurement="MiB", device_class="data_size",
                           state_class="measurement", entity_category="diagnostic")
        yield self._entity("sensor", "photos", "Photos", state_topic=storage,
                           value_template="{{ value_json.photos }}", state_class="total",
                           icon="mdi:image-multiple")
        yield self._entity("sensor", "last_photo", "Last photo", state_topic=storage,
                           value_template="{{ value_json.last_photo_at or None }}",
                           device_class="timestamp")
        for device in gpio:
            yield from self._gpio(device)
        for job in jobs:
            yield self._entity("sensor", f"timelapse_{safe_id(job.id)}",
                               f"Time-lapse {job.name or job.id} progress",
                               state_topic=t.state("timelapse", job.id),
                               value_template="{{ value_json.progress }}", unit_of_measurement="%",
                               state_class="measurement", icon="mdi:timelapse",
                               json_attributes_topic=t.state("timelapse", job.id))

    def _gpio(self, device: LiveDevice) -> Iterator[tuple[str, dict]]:
        t, kind = self.topics, device.kind
        state = t.state("gpio", device.name)
        command = t.commands + f"gpio/{device.name}"
        object_id = f"gpio_{safe_id(device.name)}"
        if kind.pwm:
            yield self._entity(
                "light", object_id, device.name, command_topic=command,
                payload_on='{"value": 1}', payload_off='{"value": 0}', on_command_type="brightness",
                brightness_command_topic=command,
                brightness_command_template='{"value": {{ (value / 255) | round(3) }}}',
                state_topic=state, state_value_template="{{ 'ON' if value_json.value > 0 else 'OFF' }}",
                brightness_state_topic=state,
                brightness_value_template="{{ (value_json.value * 255) | round(0) | int }}")
        elif not kind.is_input:
            yield self._entity("switch", object_id, device.name, command_topic=command,
                               payload_on='{"value": 1}', payload_off='{"value": 0}',
                               state_topic=state, **ON_OFF)
        else:
            extra = {"device_class": device.device_class} if getattr(device, "device_class", None) else {}
            yield self._entity("binary_sensor", object_id, device.name, state_topic=state,
                               value_template="{{ value_json.value }}", payload_on="1",
                               payload_off="0", json_attributes_topic=state, **extra)
            for event in kind.events:
                yield t.discovery("device_automation", f"{object_id}_{event}"), {
                    "automation_type": "trigger", "topic": t.event("gpio.triggered"),
                    "value_template": "{{ value_json.data.name }}:{{ value_json.data.event }}",
                    "payload": f"{device.name}:{event}", "type": TRIGGER_TYPES[event],
                    "subtype": device.name, "device": self.device}

    def _entity(self, component: str, object_id: str, name: str, **fields) -> tuple[str, dict]:
        return self.topics.discovery(component, object_id), {
            "name": name, "unique_id": f"picam_{self.topics.node}_{object_id}",
            "availability_topic": self.topics.availability, "device": self.device,
            "origin": {"name": "picam-api", "sw_version": __version__}, **fields}


def device_info(node: str, name: str, model: str | None, url: str) -> dict:
    return {"identifiers": [f"picam_{node}"], "name": name, "manufacturer": "picam-api",
            "model": model or "camera", "sw_version": __version__, "configuration_url": url}
