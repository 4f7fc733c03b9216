"""Opaque, signed keyset cursors for paginated lists, and the page they lead to.

A cursor carries an id at the edge of a page, which way to go from it, and the
filter it was made for, signed with a key kept in the database, so a tampered
or foreign cursor is a 400 and never reaches SQL.

``keyset_page`` is the one paging rule every list uses, newest first by id: a
store gives it a ``fetch(edge, backwards, n)`` that reads at most ``n`` rows
older than ``edge`` (newest first) or, going backwards, newer than it (oldest
first), and gets a ``Page`` with the cursors of the next and previous pages.
Both directions are one index range scan, so a page costs the same however
deep it is.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .errors import BadRequest

MAC_BYTES = 12
PREV = "prev"
T = TypeVar("T")


def make_cursor(key: bytes, last_id: str, scope, backwards: bool = False) -> str:
    fields = [last_id, scope, PREV] if backwards else [last_id, scope]
    payload = json.dumps(fields, separators=(",", ":")).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def open_keyset(key: bytes, cursor: str, scope) -> tuple[str, bool]:
    """The edge id in ``cursor`` and whether it goes backwards; ``BadRequest`` if it
    is forged or made for another scope."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        expected = hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise ValueError("signature")
        edge, cursor_scope, *direction = json.loads(payload)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this server issued; start from the first page") \
            from None
    if cursor_scope != scope:
        raise BadRequest("cursor belongs to a different filter; keep the same query")
    return edge, direction == [PREV]


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the cursors of its neighbours (None at either end)."""

    items: list[T]
    next: str | None
    prev: str | None


def keyset_page(key: bytes, scope, limit: int, cursor: str | None,
                fetch: Callable[[str | None, bool, int], list[T]],
                id_of: Callable[[T], str] = lambda item: item.id) -> Page[T]:
    """The page ``cursor`` names (the first page without one); see the module docstring."""
    edge, backwards = open_keyset(key, cursor, scope) if cursor else (None, False)
    rows = fetch(edge, backwards, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        if not more:
            # Back at the newest: that is the first page, full however many were added.
            return keyset_page(key, scope, limit, None, fetch, id_of)
        rows.reverse()
    if not rows:
        return Page([], None, None)
    return Page(rows,
                make_cursor(key, id_of(rows[-1]), scope) if more or backwards else None,
                make_cursor(key, id_of(rows[0]), scope, backwards=True) if edge else None)
