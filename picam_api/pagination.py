"""Opaque, signed keyset cursors for paginated lists.

A cursor carries the last id of a page and the filter it was made for, signed
with a key kept in the database, so a tampered or foreign cursor is a 400 and
never reaches SQL.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

from .errors import BadRequest

MAC_BYTES = 12


def make_cursor(key: bytes, last_id: str, scope) -> str:
    payload = json.dumps([last_id, scope], separators=(",", ":")).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def open_cursor(key: bytes, cursor: str, scope) -> str:
    """The last id in ``cursor``; ``BadRequest`` if it is forged or made for another scope."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        expected = hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise ValueError("signature")
        last_id, cursor_scope = json.loads(payload)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this server issued; start from the first page") \
            from None
    if cursor_scope != scope:
        raise BadRequest("cursor belongs to a different filter; keep the same query")
    return last_id
