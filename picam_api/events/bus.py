"""The event bus: typed events, a bounded log in SQLite, and in-process fan-out.

Publishers call ``publish(type, data)`` once their change is committed. It only
queues, so neither a gpiozero callback nor the scheduler's lock ever waits for
the disk. One writer thread takes what is queued, writes it to the ``events``
table in one transaction (which numbers the events: ids only grow, across
restarts too), trims the table to the newest ``events.keep`` and then hands the
events, in id order, to every subscriber. So any event a subscriber sees is
already in the log, and a client that resumes from its id finds the rest there.

Sinks run inside that transaction: the webhooks' outbox rows commit with the
events they carry, or not at all. Each subscriber has a bounded queue and is
never waited for; one that falls behind catches up from the log
(``Subscription.get``), or learns through ``Gap`` that the log no longer
reaches back far enough.

A subscriber that is caught up may instead hand its delivery to the writer
(``Subscription.hand_off``): the writer then passes the accepted events' bytes,
encoded once per event for all, to its ``push`` and wakes no one. That is how
SSE streams are fed: fifty clients cost fifty non-blocking writes on one
thread, not fifty threads woken in turn for every event. A push refused (the
client is slow or gone) ends the hand-off, and the subscriber reads those
events from the log as any subscriber behind does.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from ..clock import iso
from ..db import Database
from ..links import absolute
from ..workers import WorkerHealth
from .types import TypeFilter

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # events published but not yet written
BATCH = 500  # the most events one transaction writes, and one replay reads


@dataclass(frozen=True)
class Event:
    """One event as clients see it: ``id`` (monotonic), ``type``, ``time`` (ISO 8601 UTC), ``data``."""

    id: int
    type: str
    time: str
    data: dict
    json: str = field(repr=False, compare=False, default="")
    # The event as one text/event-stream message, encoded once for every SSE client.
    sse: bytes = field(repr=False, compare=False, default=b"")

    @classmethod
    def make(cls, id: int, type: str, time: str, data: dict) -> "Event":
        body = json.dumps({"id": id, "type": type, "time": time, "data": data},
                          separators=(",", ":"), default=str)
        return cls(id, type, time, data, body, f"id: {id}\nevent: {type}\ndata: {body}\n\n".encode())

    def to_dict(self) -> dict:
        return {"id": self.id, "type": self.type, "time": self.time, "data": self.data}


class Gap(Exception):
    """The log no longer holds every event after the subscriber's position."""

    def __init__(self, after: int, latest: int):
        super().__init__(f"events after {after} are no longer in the log")
        self.after = after
        self.latest = latest


@dataclass
class _Queued:
    type: str
    time: str
    data: dict
    key: Hashable | None
    dropped: bool = False


class EventBus:
    """Numbers, stores and fans out events; see the module docstring.

    ``publish`` is safe from any thread and never blocks on I/O. ``start`` runs
    the writer; ``stop`` writes what is still queued, then joins it.
    """

    def __init__(self, db: Database, keep: int, health: WorkerHealth | None = None,
                 public_url: str = ""):
        self.db = db
        self.keep = keep
        self.public_url = public_url
        self.dropped = 0
        self._queue: list[_Queued] = []
        self._coalesced: dict[Hashable, _Queued] = {}
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # the subscribers, and the latest id they saw
        self._subscribers: set[Subscription] = set()
        self._sinks: list[Callable[[Any, list[Event]], None]] = []
        self._listeners: list[Callable[[list[Event]], None]] = []
        self._stopping = False
        self._latest = self._max_id()
        self._thread = threading.Thread(target=self._run, name="picam-events", daemon=True)
        (health or WorkerHealth()).watch(self._thread)

    # -- publishing --------------------------------------------------------------

    def publish(self, type: str, data: dict, coalesce: Hashable | None = None) -> None:
        """Queue one event. With ``coalesce``, an event of the same type and key
        still queued is replaced by this one (progress that nobody has seen yet)."""
        if self.public_url:  # for subscribers elsewhere: SSE, webhooks, MQTT
            data = absolute(data, self.public_url)
        entry = _Queued(type, iso(time.time()), data, (type, coalesce) if coalesce is not None else None)
        with self._cond:
            if self._stopping:
                return
            if entry.key is not None:
                older = self._coalesced.get(entry.key)
                if older is not None:
                    older.dropped = True
                self._coalesced[entry.key] = entry
            if len(self._queue) >= MAX_QUEUED:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("event queue full: %d event(s) dropped so far", self.dropped)
                return
            self._queue.append(entry)
            self._cond.notify()

    def add_sink(self, sink: Callable[[Any, list[Event]], None]) -> None:
        """``sink(conn, events)`` runs inside the transaction that logs ``events``."""
        self._sinks.append(sink)

    def add_listener(self, listener: Callable[[list[Event]], None]) -> None:
        """``listener(events)`` runs on the writer thread after they are committed; keep it quick."""
        self._listeners.append(listener)

    # -- reading -----------------------------------------------------------------

    def subscribe(self, accept: TypeFilter | None = None, size: int = 1000,
                  after: int | None = None) -> "Subscription":
        """A subscription to events after ``after`` (default: from now on)."""
        with self._lock:
            subscription = Subscription(self, accept or TypeFilter(), size, self._latest)
            self._subscribers.add(subscription)
        if after is not None:
            subscription.rewind(after)
        return subscription

    def since(self, after: int, limit: int = BATCH) -> list[Event]:
        """Up to ``limit`` logged events with an id above ``after``, oldest first."""
        rows = self.db.conn.execute("SELECT id, type, time, data FROM events WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [Event.make(row[0], row[1], row[2], json.loads(row[3])) for row in rows]

    def oldest_id(self) -> int | None:
        return self.db.conn.execute("SELECT min(id) FROM events").fetchone()[0]

    @property
    def latest_id(self) -> int:
        """The id of the newest event handed to subscribers (0 before the first)."""
        return self._latest

    def stats(self) -> dict:
        with self._lock:
            subscribers = len(self._subscribers)
        return {"latest_id": self._latest, "oldest_id": self.oldest_id(), "keep": self.keep,
                "queued": len(self._queue), "dropped": self.dropped, "subscribers": subscribers}

    # -- the writer --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("picam-events did not stop within %.1f s", timeout)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.close()

    def _run(self) -> None:
        # This thread's connection commits without waiting for the disk (WAL with
        # synchronous=NORMAL: a crash of the process loses nothing, a power cut at
        # most the events since the last commit of another connection, which syncs
        # them too). A time-lapse frame never queues behind an event's fsync.
        self.db.conn.execute("PRAGMA synchronous=NORMAL")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue and self._stopping:
                    return
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                for entry in batch:
                    if entry.key is not None and self._coalesced.get(entry.key) is entry:
                        del self._coalesced[entry.key]
            batch = [entry for entry in batch if not entry.dropped]
            if batch:
                try:
                    self._write(batch)
                except Exception:  # a full or broken disk: the rest of the service goes on
                    self.dropped += len(batch)
                    log.exception("could not log %d event(s); they are dropped", len(batch))

    def _write(self, batch: list[_Queued]) -> None:
        events = []
        with self.db.transaction() as conn:
            for entry in batch:
                data = json.dumps(entry.data, separators=(",", ":"), default=str)
                cursor = conn.execute("INSERT INTO events (type, time, data) VALUES (?, ?, ?)",
                                      (entry.type, entry.time, data))
                events.append(Event.make(cursor.lastrowid, entry.type, entry.time, entry.data))
            conn.execute("DELETE FROM events WHERE id <= ?", (events[-1].id - self.keep,))
            for sink in self._sinks:
                sink(conn, events)
        with self._lock:
            self._latest = events[-1].id
            subscribers = list(self._subscribers)
            for subscription in subscribers:
                subscription._offer(events)
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("an event listener failed")

    def _max_id(self) -> int:
        return self.db.conn.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence "
                                    "WHERE name = 'events'").fetchone()[0]

    def _leave(self, subscription: "Subscription") -> None:
        with self._lock:
            self._subscribers.discard(subscription)


class Subscription:
    """Events of the accepted types after ``cursor``, in id order; see ``get``."""

    def __init__(self, bus: EventBus, accept: TypeFilter, size: int, cursor: int):
        self.bus = bus
        self.accept = accept
        self.size = size
        self.cursor = cursor  # the newest event id this subscriber has been given
        self.closed = False
        self._events: collections.deque[Event] = collections.deque()
        self._behind = False  # some events are only in the log: read them there
        self._cond = threading.Condition()
        self._push: Callable[[bytes], bool] | None = None  # while the writer delivers
        self.pushed_at = 0.0  # time.monotonic() of the last push taken

    def rewind(self, after: int) -> None:
        """Start again after event ``after``, reading the log first."""
        with self._cond:
            self.cursor = after
            self._behind = True

    def get(self, timeout: float) -> list[Event]:
        """The next events (at most ``BATCH``), or [] after ``timeout`` s or once closed.

        Raises ``Gap`` if events after the cursor have left the log; the cursor
        then moves to the newest event, so the next call goes on from there.
        """
        with self._cond:
            if not self._behind:
                self._cond.wait_for(lambda: self._events or self._behind or self.closed, timeout)
            if self.closed:
                return []
            behind, self._behind = self._behind, False
            # Queued events that are also in the log are skipped by their id.
            events = [] if behind else [event for event in self._events if event.id > self.cursor]
            self._events.clear()
        if behind:
            return self._catch_up()
        if events:
            self.cursor = events[-1].id
        return [event for event in events if self.accept(event.type)]

    def hand_off(self, push: Callable[[bytes], bool]) -> bool:
        """Have the writer deliver from now on: for each batch it calls ``push`` with the
        SSE bytes of the accepted events (``Event.sse``), on its own thread, in id order.

        Only a subscriber with nothing left to ``get`` is handed off (True); otherwise
        (False) it goes on with ``get``. ``push`` must not wait; it returns False
        when it took nothing, which ends the hand-off: those events are read from
        the log by the next ``get``. ``handed_off`` waits for that end.
        """
        with self.bus._lock, self._cond:  # the writer offers under both: none slips by
            if self.closed or self._behind or self._events or self.cursor != self.bus._latest:
                return False
            self._push = push
            self.pushed_at = time.monotonic()
            return True

    def handed_off(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s; True while the writer still delivers."""
        with self._cond:
            self._cond.wait_for(lambda: self._push is None, timeout)
            return self._push is not None

    def push(self, data: bytes) -> bool:
        """While handed off: pass ``data`` (a comment, say) to ``push`` between events.
        False, and the hand-off ends, if it is refused."""
        with self._cond:
            return self._push is not None and self._pushed(data)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._push = None
            self._cond.notify_all()
        self.bus._leave(self)

    def _catch_up(self) -> list[Event]:
        latest = self.bus.latest_id
        if self.cursor > latest or (self.cursor < latest and
                                    (self.bus.oldest_id() or latest + 1) > self.cursor + 1):
            after, self.cursor = self.cursor, latest
            raise Gap(after, latest)
        events = self.bus.since(self.cursor)
        if len(events) == BATCH:
            with self._cond:
                self._behind = True  # more to read there
        if events:
            self.cursor = events[-1].id
        return [event for event in events if self.accept(event.type)]

    def _pushed(self, data: bytes) -> bool:
        """Under ``_cond``, handed off: push ``data``; a refusal ends the hand-off."""
        if self._push(data):
            self.pushed_at = time.monotonic()
            return True
        self._push = None
        self._cond.notify_all()
        return False

    def _offer(self, events: list[Event]) -> None:
        """From the writer: push or queue ``events``, or fall back to the log."""
        with self._cond:
            if self.closed or self._behind:
                return
            if self._push is not None:
                data = b"".join(event.sse for event in events if self.accept(event.type))
                if data and not self._pushed(data):
                    self._behind = True  # these events are in the log: get reads them there
                    return
                self.cursor = events[-1].id
                return
            if len(self._events) + len(events) > self.size:
                self._behind = True
                self._events.clear()
            else:
                self._events.extend(events)
            self._cond.notify_all()


class NoEvents:
    """A bus that drops everything: the default of services built without one (tests, tools)."""

    def publish(self, type: str, data: dict, coalesce: Hashable | None = None) -> None:
        pass


NO_EVENTS = NoEvents()
