"""Server-Sent Events: the body of GET /api/v1/events, and the cap on its clients.

A client names the types it wants and, to resume, the id of the last event it
saw (``Last-Event-ID``, which browsers send on reconnect by themselves). It is
subscribed before the log is read, so nothing falls between what the log
replays and what arrives live. If the log no longer reaches back to that id, it
gets a ``reset`` event instead (its data says why, its id is the newest event),
and should fetch the state it shows afresh. A comment line every
``events.keepalive_s`` keeps proxies from closing an idle stream and lets the
server find a client that has gone, which frees its slot (every client holds a
server thread, as a live-view client does; see config._check_threads).

Under ``picam-api serve`` a client's thread writes only until the client has
caught up: then the bus's writer pushes each event to it directly
(``Subscription.hand_off``, ``long_lived.pusher``), and the thread only wakes
to write a keepalive or, when a push is refused, to take over again: it reads
what the client missed from the log and writes through the server, whose
writes wait for a slow client, drop a stalled one and end the stream of one
that has gone.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Iterator

from ..errors import TooManyStreams
from .bus import EventBus, Gap
from .types import TypeFilter

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/event-stream"
RETRY_MS = 3000  # how long a browser's EventSource waits before it reconnects
KEEPALIVE = b": keepalive\n\n"


def reset_frame(gap: Gap) -> bytes:
    data = json.dumps({"reason": f"the events after {gap.after} are no longer in the log; "
                                 "fetch the current state again", "last_event_id": gap.latest})
    return f"id: {gap.latest}\nevent: reset\ndata: {data}\n\n".encode()


class EventStreams:
    """Admits SSE clients up to ``events.max_clients`` and writes their streams."""

    def __init__(self, bus: EventBus, config: dict, retry_after: int):
        self.bus = bus
        self.max_clients = config["max_clients"]
        self.keepalive_s = config["keepalive_s"]
        self.retry_after = retry_after
        self._clients = 0
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[EventStream] = set()

    def open(self, accept: TypeFilter, last_id: int | None,
             push: Callable[[bytes], bool] | None = None) -> "EventStream":
        """A new client's stream; ``TooManyStreams`` (503) when every slot is taken.

        ``push`` is the server's (``long_lived.pusher``), if it has one."""
        with self._lock:
            if self._closed or self._clients >= self.max_clients:
                raise TooManyStreams(f"all {self.max_clients} event-stream slots are in use "
                                     "(events.max_clients); try again later",
                                     retry_after=self.retry_after)
            self._clients += 1
            stream = EventStream(self, self.bus.subscribe(accept, after=last_id), push)
            self._open.add(stream)
        return stream

    def stats(self) -> dict:
        return {"clients": self._clients, "max_clients": self.max_clients}

    def close(self) -> None:
        """End every stream and refuse new ones (on shutdown: streams never end by themselves)."""
        with self._lock:
            self._closed = True
            streams = list(self._open)
        for stream in streams:
            stream.subscription.close()

    def _release(self, stream: "EventStream") -> None:
        with self._lock:
            if stream in self._open:
                self._open.discard(stream)
                self._clients -= 1


class EventStream:
    """One client's stream; ``body()`` is the response body, ``close()`` frees the slot."""

    def __init__(self, streams: EventStreams, subscription, push: Callable[[bytes], bool] | None):
        self.streams = streams
        self.subscription = subscription
        self.push = push

    def body(self) -> Iterator[bytes]:
        subscription, keepalive = self.subscription, self.streams.keepalive_s
        try:
            yield f"retry: {RETRY_MS}\n: picam-api events\n\n".encode()
            while not subscription.closed:
                if self.push is not None and subscription.hand_off(self.push):
                    self._keep_alive()  # until a push is refused: the client is slow or gone
                    if not subscription.closed:
                        yield KEEPALIVE  # through the server, which waits for it or drops it
                    continue
                try:
                    events = subscription.get(keepalive)
                except Gap as gap:
                    yield reset_frame(gap)
                    continue
                if events:
                    yield b"".join(event.sse for event in events)  # id, event, data
                elif not subscription.closed:
                    yield KEEPALIVE
        finally:
            self.close()

    def _keep_alive(self) -> None:
        """While the writer pushes the events: a keepalive after ``keepalive_s`` without a write."""
        subscription, keepalive = self.subscription, self.streams.keepalive_s
        while subscription.handed_off(subscription.pushed_at + keepalive - time.monotonic()):
            if time.monotonic() - subscription.pushed_at >= keepalive:
                subscription.push(KEEPALIVE)

    def close(self) -> None:
        """Free the slot. Idempotent."""
        self.subscription.close()
        self.streams._release(self)
