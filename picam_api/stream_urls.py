"""Signed stream URLs: short-lived, single-use tickets for an ``<img>`` that cannot send headers.

A ticket is ``{expires}.{nonce}.{mac}.{user}``; ``mac`` is an HMAC-SHA256, under a
key kept in the database, over the method (GET), the path it was issued for, the
user, the expiry and the nonce. So a ticket opens that one route, for reading,
for a few seconds, once; it reveals nothing of the user's password or token, and
a leaked one (a proxy log, the browser history) is already spent. The user's
name is in it so that the ticket dies with the user, and for the log.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading

from .clock import Clock

METHOD = "GET"
MAX_EXPIRY_DIGITS = 12


class StreamUrls:
    """Issues and checks tickets for ``GET path?ticket=...``."""

    def __init__(self, key: bytes, ttl_s: float, clock: Clock | None = None):
        self._key = key
        self.ttl_s = ttl_s
        self.clock = clock or Clock()
        self._spent: dict[str, float] = {}  # nonce -> expiry, until it expires
        self._lock = threading.Lock()

    def issue(self, user: str, path: str) -> tuple[str, float]:
        """A ticket for ``user`` to GET ``path``, and when it expires (Unix time)."""
        expires = int(self.clock.time() + self.ttl_s)
        nonce = secrets.token_urlsafe(12)
        mac = self._mac(path, user, expires, nonce).decode()
        return f"{expires}.{nonce}.{mac}.{user}", expires

    def check(self, ticket: str, method: str, path: str) -> tuple[str | None, str]:
        """The user a valid, unspent ticket for ``method path`` names (spending it), and
        "ok"; else None and why: "invalid" (forged, or for another route), "expired"
        or "spent"."""
        parts = ticket.split(".", 3)
        # A bounded number of digits: int() refuses more than 4300 with an error.
        if len(parts) != 4 or not (parts[0].isascii() and parts[0].isdecimal()
                                   and len(parts[0]) <= MAX_EXPIRY_DIGITS):
            return None, "invalid"
        expires, nonce, mac, user = int(parts[0]), parts[1], parts[2], parts[3]
        if method != METHOD \
                or not hmac.compare_digest(mac.encode(), self._mac(path, user, expires, nonce)):
            return None, "invalid"
        now = self.clock.time()
        if expires < now:
            return None, "expired"
        with self._lock:
            self._spent = {n: e for n, e in self._spent.items() if e >= now}
            if nonce in self._spent:
                return None, "spent"
            self._spent[nonce] = expires
        return user, "ok"

    def _mac(self, path: str, user: str, expires: int, nonce: str) -> bytes:
        message = f"{METHOD} {path}\n{user}\n{expires}\n{nonce}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")
