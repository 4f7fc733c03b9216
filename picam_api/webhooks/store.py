"""The ``webhooks`` and ``deliveries`` tables: the webhooks, and their outbox and log."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from ..db import Database

DELIVERY_COLUMNS = ("seq, id, webhook_id, event_id, event_type, event, body, state, attempts, "
                    "next_attempt_at, created_at, last_attempt_at, finished_at, response_code, "
                    "last_error")


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    types: tuple[str, ...]
    snapshot: bool
    enabled: bool
    description: str | None
    salt: str
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row) -> "Webhook":
        values = dict(row)
        values.update(types=tuple(json.loads(values["types"])), snapshot=bool(values["snapshot"]),
                      enabled=bool(values["enabled"]))
        return cls(**values)


@dataclass(frozen=True)
class Delivery:
    seq: int
    id: str
    webhook_id: str
    event_id: int
    event_type: str
    event: str | None
    body: bytes | None
    state: str
    attempts: int
    next_attempt_at: float
    created_at: str
    last_attempt_at: str | None
    finished_at: str | None
    response_code: int | None
    last_error: str | None


class WebhookStore:
    """Reads and writes both tables; each method is one transaction or one query."""

    def __init__(self, db: Database):
        self.db = db

    def all(self) -> list[Webhook]:
        rows = self.db.conn.execute("SELECT * FROM webhooks ORDER BY id").fetchall()
        return [Webhook.from_row(row) for row in rows]

    def count(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM webhooks").fetchone()[0]

    def insert(self, hook: Webhook) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO webhooks (id, url, types, snapshot, enabled, description, "
                         "salt, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (hook.id, hook.url, json.dumps(hook.types), hook.snapshot, hook.enabled,
                          hook.description, hook.salt, hook.created_at, hook.updated_at))

    def update(self, hook: Webhook) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE webhooks SET url = ?, types = ?, snapshot = ?, enabled = ?, "
                         "description = ?, salt = ?, updated_at = ? WHERE id = ?",
                         (hook.url, json.dumps(hook.types), hook.snapshot, hook.enabled,
                          hook.description, hook.salt, hook.updated_at, hook.id))

    def delete(self, webhook_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM deliveries WHERE webhook_id = ?", (webhook_id,))
            conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))

    # -- the outbox ----------------------------------------------------------------

    @staticmethod
    def pending_count(conn: sqlite3.Connection, webhook_id: str) -> int:
        return conn.execute("SELECT count(*) FROM deliveries WHERE webhook_id = ? AND "
                            "state = 'pending'", (webhook_id,)).fetchone()[0]

    @staticmethod
    def enqueue(conn: sqlite3.Connection, delivery_id: str, webhook_id: str, event_id: int,
                event_type: str, event: str, state: str, now: float, created_at: str,
                error: str | None = None) -> None:
        conn.execute("INSERT INTO deliveries (id, webhook_id, event_id, event_type, event, state, "
                     "next_attempt_at, created_at, finished_at, last_error) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (delivery_id, webhook_id, event_id, event_type,
                      event if state == "pending" else None, state, now, created_at,
                      created_at if state != "pending" else None, error))

    def next_pending(self, webhook_id: str) -> Delivery | None:
        """The oldest undelivered delivery: deliveries go out in order, one at a time."""
        row = self.db.conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE webhook_id = ? AND state = 'pending' "
            f"ORDER BY seq LIMIT 1", (webhook_id,)).fetchone()
        return Delivery(*row) if row else None

    def attempted(self, seq: int, state: str, attempts: int, next_attempt_at: float,
                  attempted_at: str, response_code: int | None, error: str | None,
                  keep: int, webhook_id: str, body: bytes) -> None:
        """Record one attempt: a pending delivery keeps the ``body`` it was sent, a finished
        one drops it (and its event), and the log keeps ``keep`` finished ones."""
        finished = attempted_at if state != "pending" else None
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?, "
                "last_attempt_at = ?, finished_at = ?, response_code = ?, last_error = ?, "
                "body = CASE WHEN ? = 'pending' THEN ? END, "
                "event = CASE WHEN ? = 'pending' THEN event END WHERE seq = ?",
                (state, attempts, next_attempt_at, attempted_at, finished, response_code, error,
                 state, body, state, seq))
            if state != "pending":
                conn.execute(
                    "DELETE FROM deliveries WHERE webhook_id = ? AND state != 'pending' AND seq <= "
                    "(SELECT seq FROM deliveries WHERE webhook_id = ? AND state != 'pending' "
                    "ORDER BY seq DESC LIMIT 1 OFFSET ?)", (webhook_id, webhook_id, keep))

    def deliveries(self, webhook_id: str, edge: int | None, backwards: bool,
                   limit: int) -> list[Delivery]:
        """At most ``limit`` deliveries before ``edge`` (by seq), newest first, or
        (``backwards``) after it, oldest first: ``pagination.keyset_page``'s fetch."""
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE webhook_id = ?"
        args: tuple = (webhook_id,)
        if edge is not None:
            sql += " AND seq > ?" if backwards else " AND seq < ?"
            args += (edge,)
        rows = self.db.conn.execute(sql + f" ORDER BY seq {'ASC' if backwards else 'DESC'} "
                                          f"LIMIT ?", (*args, limit)).fetchall()
        return [Delivery(*row) for row in rows]

    def count_deliveries(self, webhook_id: str) -> int:
        return self.db.conn.execute("SELECT count(*) FROM deliveries WHERE webhook_id = ?",
                                    (webhook_id,)).fetchone()[0]

    def stats(self, webhook_id: str) -> dict[str, int]:
        counts = dict(self.db.conn.execute(
            "SELECT state, count(*) FROM deliveries WHERE webhook_id = ? GROUP BY state",
            (webhook_id,)).fetchall())
        return {state: counts.get(state, 0) for state in ("pending", "delivered", "failed", "dropped")}
