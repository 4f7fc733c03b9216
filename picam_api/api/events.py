"""GET /api/v1/events: the event bus as Server-Sent Events."""
from __future__ import annotations

from flask import Response, request

from ..errors import InvalidInput
from ..events import TYPES, parse_filter
from ..events.sse import CONTENT_TYPE
from ..long_lived import hold_open, pusher
from . import bp
from .common import errors, services, viewer
from .schemas import EventQuery

# Events are small: a kernel buffer of this much holds many of them.
BUFFER_BYTES = 64 * 1024
SSE_RESPONSE = {
    "description": "An endless `text/event-stream`. Each event has `id:` (its number), `event:` "
                   "(its type) and `data:` (the event as JSON: `id`, `type`, `time`, `data`). "
                   "Comment lines keep the connection alive. An `event: reset` means the log "
                   "no longer reaches back to the id asked for: fetch the state again.",
    "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
}


@bp.get("/events")
@viewer
@bp.input(EventQuery, location="query", arg_name="query")
@bp.doc(summary="Live events (Server-Sent Events), resumable with Last-Event-ID",
        description="Types: " + ", ".join(f"`{name}` ({what})" for name, what in TYPES.items())
                    + ". Clients beyond `events.max_clients` get 503 with Retry-After.",
        responses={200: SSE_RESPONSE, **errors(422, 503)})
def events(query: dict):
    accept = parse_filter(query.get("types"))
    last_id = _last_event_id(query)
    stream = services().event_streams.open(accept, last_id, pusher(request.environ))
    # A client that stops reading is dropped, and its slot freed (long_lived.py).
    hold_open(request.environ, BUFFER_BYTES)
    response = Response(stream.body(), content_type=CONTENT_TYPE,
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    # A body the server never started (the client left first) never runs the
    # generator's own clean-up, so closing the response frees the slot too.
    response.call_on_close(stream.close)
    return response


def _last_event_id(query: dict) -> int | None:
    header = request.headers.get("Last-Event-ID")
    if header is None:
        return query.get("last_event_id")
    if not (header.isascii() and header.isdecimal() and len(header) <= 18):
        raise InvalidInput({"Last-Event-ID": ["must be the id of an event, a whole number"]})
    return int(header)
