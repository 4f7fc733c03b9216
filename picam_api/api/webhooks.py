"""Webhooks: create, list, change, delete, and each one's delivery log (operators only)."""
from __future__ import annotations


from ..clock import iso
from ..webhooks.store import Delivery, Webhook
from . import bp
from .common import errors, operator, services
from .pages import page_response
from .schemas import (DeliveryPage, PageQuery, WebhookCreate, WebhookPage, WebhookPatch,
                      WebhookWithSecret)
from .schemas import Webhook as WebhookSchema


def webhook_body(hook: Webhook) -> dict:
    """A webhook resource, never with its secret."""
    base = f"{bp.url_prefix}/webhooks/{hook.id}"
    return {"id": hook.id, "url": hook.url, "types": list(hook.types), "snapshot": hook.snapshot,
            "enabled": hook.enabled, "description": hook.description,
            "created_at": hook.created_at, "updated_at": hook.updated_at,
            "deliveries": services().webhooks.stats(hook.id),
            "links": {"self": base, "deliveries": f"{base}/deliveries"}}


def delivery_body(delivery: Delivery) -> dict:
    return {"id": delivery.id, "event_id": delivery.event_id, "event_type": delivery.event_type,
            "state": delivery.state, "attempts": delivery.attempts,
            "created_at": delivery.created_at, "last_attempt_at": delivery.last_attempt_at,
            "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
            "finished_at": delivery.finished_at, "response_code": delivery.response_code,
            "last_error": delivery.last_error}


@bp.post("/webhooks")
@operator
@bp.input(WebhookCreate, arg_name="body", example={"url": "https://receiver.example/picam",
                                                   "types": ["photo.created", "gpio.*"],
                                                   "snapshot": True})
@bp.output(WebhookWithSecret, status_code=201, headers={"Location": {"type": "string"}})
@bp.doc(summary="Create a webhook; the answer holds its secret, shown this once",
        responses=errors(400, 403, 409, 413, 415, 422))
def create_webhook(body: dict):
    hook, secret = services().webhooks.create(body)
    created = {**webhook_body(hook), "secret": secret}
    return created, 201, {"Location": created["links"]["self"]}


@bp.get("/webhooks")
@operator
@bp.output(WebhookPage)
@bp.doc(summary="Every webhook (without secrets)", responses=errors(403))
def list_webhooks():
    return {"items": [webhook_body(hook) for hook in services().webhooks.list()], "next": None}


@bp.get("/webhooks/<webhook_id>")
@operator
@bp.output(WebhookSchema)
@bp.doc(summary="One webhook, with its delivery counts", responses=errors(403, 404))
def get_webhook(webhook_id: str):
    return webhook_body(services().webhooks.get(webhook_id))


@bp.patch("/webhooks/<webhook_id>")
@operator
@bp.input(WebhookPatch, arg_name="changes", example={"enabled": False})
@bp.output(WebhookWithSecret)
@bp.doc(summary="Change a webhook; rotate_secret makes a new secret, returned this once",
        description="A disabled webhook keeps what is pending and takes no new events.",
        responses=errors(400, 403, 404, 413, 415, 422))
def patch_webhook(webhook_id: str, changes: dict):
    hook, secret = services().webhooks.update(webhook_id, changes)
    body = webhook_body(hook)
    return {**body, "secret": secret} if secret else body


@bp.delete("/webhooks/<webhook_id>")
@operator
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a webhook, its pending deliveries and its log", responses=errors(403, 404))
def delete_webhook(webhook_id: str):
    services().webhooks.delete(webhook_id)
    return ""


@bp.get("/webhooks/<webhook_id>/deliveries")
@operator
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(DeliveryPage)
@bp.doc(summary="A webhook's deliveries, newest first: state, attempts, response code, error",
        responses=errors(400, 403, 404))
def list_deliveries(webhook_id: str, query: dict):
    webhooks = services().webhooks
    page = webhooks.deliveries(webhook_id, query["limit"], query.get("cursor"))
    return page_response("api.list_deliveries", page, delivery_body, query,
                         lambda: webhooks.count_deliveries(webhook_id), webhook_id=webhook_id)
