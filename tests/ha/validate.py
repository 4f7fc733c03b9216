"""Check discovery messages with Home Assistant's own code (run by tests/test_mqtt.py in .venv-ha).

Reads ``[[topic, payload-text], ...]`` as JSON on stdin and prints one JSON
object: topic -> null when HA accepts the message, else the reason. Each
message goes the way HA's MQTT discovery takes it: the topic through its
``TOPIC_MATCHER``, the payload through its abbreviation expansion and ``~``
replacement, then the platform's ``DISCOVERY_SCHEMA`` (device triggers: the
trigger schema). Those schemas drop unknown keys silently, so a key HA drops is
reported too: it would be a typo HA never reads.
"""
import asyncio
import importlib
import json
import logging
import sys
import tempfile

logging.disable(logging.CRITICAL)

import voluptuous as vol  # noqa: E402
from homeassistant import core  # noqa: E402
from homeassistant.components.mqtt import discovery  # noqa: E402
from homeassistant.core import HomeAssistant  # noqa: E402


def check(prefix: str, topic: str, text: str) -> str | None:
    match = discovery.TOPIC_MATCHER.match(topic.replace(f"{prefix}/", "", 1))
    if not match:
        return "the topic is not a discovery topic HA accepts"
    component = match.group("component")
    payload = json.loads(text)
    discovery._replace_all_abbreviations(payload)
    if "~" in payload:
        discovery._replace_topic_base(payload)
    if component == "device_automation":
        schema = importlib.import_module("homeassistant.components.mqtt.device_trigger").TRIGGER_DISCOVERY_SCHEMA
    else:
        schema = importlib.import_module(f"homeassistant.components.mqtt.{component}").DISCOVERY_SCHEMA
    try:
        validated = schema(dict(payload))
    except vol.Invalid as exc:
        return f"invalid: {exc}"
    dropped = sorted(set(payload) - set(validated))
    return f"HA ignores {dropped}" if dropped else None


async def main() -> None:
    # HA validates discovery in its event loop with its instance current: templates
    # are checked against it there.
    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        core._hass.hass = hass
        request = json.load(sys.stdin)
        print(json.dumps({topic: check(request["prefix"], topic, text)
                          for topic, text in request["messages"]}))


if __name__ == "__main__":
    asyncio.run(main())
