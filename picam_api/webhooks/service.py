"""Webhooks: their settings, the outbox the event bus fills, and the threads that deliver.

Each event a webhook wants becomes a row in ``deliveries`` inside the very
transaction that logs the event (an event-bus sink), so deliveries survive a
restart and none is made twice. Every webhook has one sender thread, which
takes its oldest pending delivery and tries it until it is delivered or has
had ``webhooks.max_attempts`` tries, waiting ``backoff_s * 2^n`` (at most
``max_backoff_s``, with jitter) between them: so a webhook's deliveries arrive
in order, one at a time, and a slow or dead receiver delays only its own.
Publishing never waits for a delivery: capture goes on whatever the receivers do.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .. import __version__
from ..clock import iso
from ..db import Database
from ..errors import Conflict, InvalidInput, NotFound, PicamError
from ..events import EventBus, TypeFilter, parse_filter
from ..ids import is_id, new_id
from ..pagination import Page, keyset_page
from ..workers import WorkerHealth
from .http import AddressPolicy, DeliveryError, Poster, check_url
from .signing import HEADER, SecretKeeper, signature
from .store import Delivery, Webhook, WebhookStore

log = logging.getLogger(__name__)

MAX_URL = 2048
MAX_DESCRIPTION = 200
IDLE_S = 60.0  # a sender with nothing to do looks again this often anyway


class WebhookService:
    """Creates, changes and deletes webhooks, and delivers their events."""

    def __init__(self, db: Database, bus: EventBus, photos, config: Mapping[str, Any],
                 data_dir: Path, cursor_key: bytes, health: WorkerHealth | None = None):
        self.store = WebhookStore(db)
        self.health = health or WorkerHealth()
        self.photos = photos
        self.config = config
        self.policy = AddressPolicy(config)
        self.keeper = SecretKeeper(data_dir / "webhook-key")
        self._cursor_key = cursor_key
        self._lock = threading.Lock()
        self._hooks: dict[str, Webhook] = {hook.id: hook for hook in self.store.all()}
        self._filters: dict[str, TypeFilter] = {}
        self._senders: dict[str, Sender] = {}
        self._started = False
        bus.add_sink(self._enqueue)
        bus.add_listener(self._wake)

    def start(self) -> None:
        with self._lock:
            self._started = True
            for hook in self._hooks.values():
                self._start_sender(hook.id)

    def stop(self, timeout: float) -> None:
        with self._lock:
            self._started = False
            senders, self._senders = list(self._senders.values()), {}
        for sender in senders:
            sender.stop()
        for sender in senders:
            sender.join(timeout)
            if sender.is_alive():
                log.error("%s did not stop within %.1f s", sender.name, timeout)

    # -- the API's operations ------------------------------------------------------

    def create(self, body: Mapping[str, Any]) -> tuple[Webhook, str]:
        """A new webhook and its secret: the only time the secret is handed out."""
        fields = self._checked(body, required=True)
        if self.store.count() >= self.config["max_webhooks"]:
            raise Conflict(f"there are {self.config['max_webhooks']} webhooks, the most allowed "
                           "(webhooks.max_webhooks); delete one first")
        now = iso(time.time())
        hook = Webhook(id=new_id(dt.datetime.now(dt.timezone.utc)), url=fields["url"],
                       types=fields["types"], snapshot=fields.get("snapshot", False),
                       enabled=fields.get("enabled", True),
                       description=fields.get("description"), salt=self.keeper.new_salt(),
                       created_at=now, updated_at=now)
        self.store.insert(hook)
        with self._lock:
            self._hooks[hook.id] = hook
            self._start_sender(hook.id)
        log.info("webhook %s created for %s", hook.id, _host(hook.url))
        return hook, self.keeper.secret(hook.id, hook.salt)

    def list(self) -> list[Webhook]:
        with self._lock:
            return sorted(self._hooks.values(), key=lambda hook: hook.id)

    def get(self, webhook_id: str) -> Webhook:
        with self._lock:
            hook = self._hooks.get(webhook_id) if is_id(webhook_id) else None
        if hook is None:
            raise NotFound("there is no webhook with that id; see GET /api/v1/webhooks")
        return hook

    def update(self, webhook_id: str, changes: Mapping[str, Any]) -> tuple[Webhook, str | None]:
        """Change a webhook; with ``rotate_secret``, it gets (and this returns) a new secret."""
        hook = self.get(webhook_id)
        fields = self._checked(changes, required=False)
        salt = self.keeper.new_salt() if changes.get("rotate_secret") else hook.salt
        hook = Webhook(**{**hook.__dict__, **fields, "salt": salt,
                          "updated_at": iso(time.time())})
        self.store.update(hook)
        with self._lock:
            self._hooks[hook.id] = hook
            self._filters.pop(hook.id, None)
        self._wake_one(hook.id)
        return hook, self.keeper.secret(hook.id, salt) if changes.get("rotate_secret") else None

    def delete(self, webhook_id: str) -> None:
        """Remove a webhook, its pending deliveries and its log."""
        hook = self.get(webhook_id)
        with self._lock:
            self._hooks.pop(hook.id, None)
            self._filters.pop(hook.id, None)
            sender = self._senders.pop(hook.id, None)
        if sender is not None:
            sender.stop()
            sender.join(self.config["timeout_s"] + 1)
        self.store.delete(hook.id)
        log.info("webhook %s deleted", hook.id)

    def deliveries(self, webhook_id: str, limit: int, cursor: str | None) -> Page[Delivery]:
        """A page of a webhook's deliveries, newest first."""
        hook = self.get(webhook_id)

        def fetch(edge: str | None, backwards: bool, n: int) -> list[Delivery]:
            return self.store.deliveries(hook.id, int(edge) if edge else None, backwards, n)
        return keyset_page(self._cursor_key, f"deliveries:{hook.id}", limit, cursor, fetch,
                           lambda delivery: str(delivery.seq))

    def count_deliveries(self, webhook_id: str) -> int:
        return self.store.count_deliveries(webhook_id)

    def stats(self, webhook_id: str) -> dict[str, int]:
        return self.store.stats(webhook_id)

    def _checked(self, body: Mapping[str, Any], required: bool) -> dict:
        errors: dict[str, list[str]] = {}
        fields = {key: body[key] for key in ("url", "types", "snapshot", "enabled", "description")
                  if key in body}
        if "url" in fields:
            try:
                if len(fields["url"]) > MAX_URL:
                    raise ValueError(f"must be at most {MAX_URL} characters")
                check_url(fields["url"], self.policy)
            except ValueError as exc:
                errors["url"] = [str(exc)]
        if "types" in fields:
            try:
                fields["types"] = parse_filter(fields["types"]).patterns
            except InvalidInput as exc:
                errors.update(exc.extra["errors"])
        if required:
            for key in ("url", "types"):
                if key not in fields and key not in errors:
                    errors[key] = ["Missing data for required field."]
        if errors:
            raise InvalidInput(errors)
        return fields

    # -- the outbox ----------------------------------------------------------------

    def _enqueue(self, conn, events) -> None:
        """The event-bus sink: one delivery per event per enabled webhook that wants it."""
        with self._lock:
            hooks = [hook for hook in self._hooks.values() if hook.enabled]
            filters = {hook.id: self._filter(hook) for hook in hooks}
        now, created = time.time(), iso(time.time())
        for hook in hooks:
            wanted = [event for event in events if filters[hook.id](event.type)]
            if not wanted:
                continue
            room = self.config["max_pending"] - WebhookStore.pending_count(conn, hook.id)
            for event in wanted:
                delivery_id = new_id(dt.datetime.now(dt.timezone.utc))
                if room > 0:
                    room -= 1
                    WebhookStore.enqueue(conn, delivery_id, hook.id, event.id, event.type,
                                         event.json, "pending", now, created)
                else:
                    WebhookStore.enqueue(conn, delivery_id, hook.id, event.id, event.type,
                                         event.json, "dropped", now, created,
                                         f"{self.config['max_pending']} deliveries were already "
                                         "pending (webhooks.max_pending)")
                    log.warning("webhook %s: event %d dropped, its outbox is full", hook.id,
                                event.id)

    def _filter(self, hook: Webhook) -> TypeFilter:
        if hook.id not in self._filters:
            self._filters[hook.id] = TypeFilter(hook.types)
        return self._filters[hook.id]

    def _wake(self, events) -> None:
        with self._lock:
            senders = list(self._senders.values())
        for sender in senders:
            sender.wake.set()

    def _wake_one(self, webhook_id: str) -> None:
        with self._lock:
            sender = self._senders.get(webhook_id)
        if sender is not None:
            sender.wake.set()

    def _start_sender(self, webhook_id: str) -> None:
        """Under the lock: a sender for the webhook, once the service runs."""
        if self._started and webhook_id not in self._senders:
            sender = Sender(self, webhook_id)
            self._senders[webhook_id] = sender
            sender.start()

    # -- one attempt (on the webhook's sender thread) --------------------------------

    def attempt(self, hook: Webhook, delivery: Delivery, poster: Poster) -> None:
        # Made once, at the first attempt, and kept for the retries (the same bytes each time).
        body = delivery.body if delivery.body is not None else self._body(hook, delivery)
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": f"picam-api/{__version__}",
                   "X-Picam-Event": delivery.event_type, "X-Picam-Delivery": delivery.id,
                   HEADER: signature(self.keeper.secret(hook.id, hook.salt), stamp, body)}
        code, error = None, None
        try:
            code = poster.post(hook.url, body, headers)
            if not 200 <= code < 300:
                error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        except DeliveryError as exc:
            if poster.aborted:
                return  # stopping: not the receiver's failure, so not an attempt
            error = str(exc)
        attempts = delivery.attempts + 1
        if error is None:
            state, next_at = "delivered", time.time()
        elif attempts >= self.config["max_attempts"]:
            state, next_at = "failed", time.time()
            log.warning("webhook %s: delivery %s to %s failed for good after %d attempts: %s",
                        hook.id, delivery.id, _host(hook.url), attempts, error)
        else:
            state, next_at = "pending", time.time() + self._backoff(attempts)
            log.info("webhook %s: delivery %s to %s failed (attempt %d of %d): %s", hook.id,
                     delivery.id, _host(hook.url), attempts, self.config["max_attempts"], error)
        self.store.attempted(delivery.seq, state, attempts, next_at, iso(time.time()), code,
                             error, self.config["keep_deliveries"], hook.id, body)

    def _backoff(self, attempts: int) -> float:
        """Exponential, capped, with "equal jitter": half fixed, half random."""
        delay = min(self.config["backoff_s"] * 2 ** (attempts - 1), self.config["max_backoff_s"])
        return delay / 2 + random.uniform(0, delay / 2)

    def _body(self, hook: Webhook, delivery: Delivery) -> bytes:
        """The event as JSON, with the photo's thumbnail if the webhook wants it; bounded."""
        event = json.loads(delivery.event)
        if hook.snapshot and delivery.event_type == "photo.created":
            event["snapshot"] = self._snapshot(event["data"]["id"])
        limit = self.config["max_body_bytes"]
        body = _json(event)
        if len(body) > limit and event.get("snapshot"):
            event["snapshot"] = None
            event["snapshot_omitted"] = f"larger than webhooks.max_body_bytes ({limit})"
            body = _json(event)
        if len(body) > limit:
            event["data"] = None
            event["data_omitted"] = f"larger than webhooks.max_body_bytes ({limit})"
            body = _json(event)
        return body

    def _snapshot(self, photo_id: str) -> dict | None:
        try:
            with self.photos.open_thumbnail(self.photos.get(photo_id)) as thumbnail:
                data = thumbnail.read()
        except (PicamError, OSError):
            return None  # deleted meanwhile, or its file is damaged
        return {"content_type": "image/jpeg", "encoding": "base64",
                "data": base64.b64encode(data).decode()}


class Sender(threading.Thread):
    """Delivers one webhook's outbox, oldest first, one delivery at a time."""

    def __init__(self, service: WebhookService, webhook_id: str):
        super().__init__(name=f"picam-webhook-{webhook_id}", daemon=True)
        self.service = service
        self.webhook_id = webhook_id
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.poster = Poster(service.policy, service.config["timeout_s"])

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                delay = self._step()
            except Exception as exc:  # the database or a bug: counted, and tried again later
                self.service.health.failed(self.name, exc)
                delay = IDLE_S
            if delay:
                self.wake.wait(delay)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.poster.abort()

    def _step(self) -> float:
        """Try the next delivery if it is due; else how long to wait."""
        service = self.service
        with service._lock:
            hook = service._hooks.get(self.webhook_id)
        if hook is None or not hook.enabled:
            return IDLE_S
        delivery = service.store.next_pending(hook.id)
        if delivery is None:
            return IDLE_S
        wait = delivery.next_attempt_at - time.time()
        if wait > 0:
            return min(wait, IDLE_S)
        service.attempt(hook, delivery, self.poster)
        return 0.0


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _host(url: str) -> str:
    """What the log may say about a URL: its host, never its path, query or password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
