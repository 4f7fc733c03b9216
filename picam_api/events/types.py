"""The event types, and the ``types`` filters that SSE clients and webhooks choose with.

A new publisher adds its types to ``TYPES`` (one line each) and calls
``services.events.publish(type, data)``; a filter naming a type that is not here
is refused, so a typo is a 422 and not a stream that stays silent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput

TYPES: dict[str, str] = {
    "photo.created": "a photo was stored (its resource, as GET /api/v1/photos/{id})",
    "photo.deleted": "a photo was deleted: {id, timelapse_id, reason: api|timelapse|retention}",
    "timelapse.state": "a time-lapse was created or changed state (its resource)",
    "timelapse.progress": "a time-lapse frame was captured, failed or missed (its resource)",
    "timelapse.deleted": "a finished time-lapse was deleted: {id}",
    "gpio.changed": "a GPIO device changed value (its resource, as GET /api/v1/gpio/{name})",
    "gpio.triggered": "an input's event fired: {name, event, result: fired|suppressed|dropped|none}",
    "camera.health": "the camera became usable or unusable: {usable, reason, backend}",
    "video.created": "a render was queued or a clip started (its resource, as GET /api/v1/videos/{id})",
    "video.state": "a video changed state or progress (its resource)",
    "video.ready": "a video is ready to play (its resource)",
    "video.failed": "a render or a clip failed; last_error says why (its resource)",
    "storage.low": "free space in the data dir fell below events.storage_low_mb",
    "storage.ok": "free space in the data dir is back above events.storage_low_mb",
}
MAX_PATTERNS = 32
_PATTERN = re.compile(r"\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?")


@dataclass(frozen=True)
class TypeFilter:
    """Event types to keep: exact names and ``family.*`` prefixes; empty keeps all."""

    patterns: tuple[str, ...] = ()

    def __call__(self, event_type: str) -> bool:
        if not self.patterns:
            return True
        for pattern in self.patterns:
            if pattern == "*" or pattern == event_type or (
                    pattern.endswith(".*") and event_type.startswith(pattern[:-1])):
                return True
        return False


def parse_filter(patterns: list[str] | str | None, field: str = "types") -> TypeFilter:
    """A ``TypeFilter`` from a list (or a comma-separated string) of patterns.

    Each must name a known type, a known family (``photo.*``) or everything
    (``*``); anything else is an ``InvalidInput`` naming ``field``.
    """
    if patterns is None:
        return TypeFilter()
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",")] if patterns.strip() else []
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput({field: [f"at most {MAX_PATTERNS} types"]})
    bad = [p for p in patterns if not _known(p)]
    if bad:
        raise InvalidInput({field: [f"unknown event type {bad[0][:64]!r}; known types: "
                                    f"{', '.join(TYPES)} (or a family such as photo.*, or *)"]})
    return TypeFilter(tuple(dict.fromkeys(patterns)))


def _known(pattern: str) -> bool:
    if not isinstance(pattern, str) or len(pattern) > 64 or not _PATTERN.fullmatch(pattern):
        return False
    if pattern == "*" or pattern in TYPES:
        return True
    return pattern.endswith(".*") and any(t.startswith(pattern[:-1]) for t in TYPES)
