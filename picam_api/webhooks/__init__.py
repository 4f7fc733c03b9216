"""Signed webhooks with an outbox in SQLite."""
from .service import WebhookService
from .signing import signature, verify

__all__ = ["WebhookService", "signature", "verify"]
