"""Events: one bus that every service publishes into, and its readers (SSE, webhooks, MQTT)."""
from .bus import NO_EVENTS, Event, EventBus, Gap, Subscription
from .types import TYPES, TypeFilter, parse_filter

__all__ = ["NO_EVENTS", "TYPES", "Event", "EventBus", "Gap", "Subscription", "TypeFilter",
           "parse_filter"]
