"""Webhook signatures, and the secrets they are made with.

``X-Picam-Signature: t=UNIX,v1=HEX``: HEX is the HMAC-SHA256, under the
webhook's secret, of ``"{t}.{body}"``. A receiver recomputes it over the raw
body, compares in constant time, and refuses a ``t`` too far from its clock,
so a captured delivery cannot be replayed later (``verify`` does all three).

No secret is stored. Each one is derived: HMAC-SHA256, under a 256-bit key kept
in ``<data dir>/webhook-key`` (mode 0600, outside the database), of the
webhook's id and a random salt kept in its row. A copy of the database
therefore reveals no secret, and a new salt (rotating) makes a new one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from ..files import atomic_write

HEADER = "X-Picam-Signature"
TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Picam-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = TOLERANCE_S,
           now: float | None = None) -> bool:
    """What a receiver does: the signature is right and ``t`` is within ``tolerance_s``."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class SecretKeeper:
    """Derives each webhook's secret from the key file; see the module docstring."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            atomic_write(path, secrets.token_bytes(32), mode=0o600)
        os.chmod(path, 0o600)
        self._key = path.read_bytes()

    @staticmethod
    def new_salt() -> str:
        return secrets.token_hex(16)

    def secret(self, webhook_id: str, salt: str) -> str:
        mac = hmac.new(self._key, f"picam-webhook\0{webhook_id}\0{salt}".encode(), hashlib.sha256)
        return "whsec_" + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")
