"""Helpers the view modules share: role decorators, documented errors, services."""
from __future__ import annotations

from flask import current_app

from ..auth import auth
from . import bp
from .responses import precondition

ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    403: "Needs the operator role, or sent by a page of another site",
    404: "Not found",
    409: "Wrong state for this action",
    412: "If-Match does not match the resource's ETag: it changed since it was read",
    413: "Request body too large",
    415: "Body is not application/json",
    422: "Validation error: `errors` names each bad field",
    429: "Too many failed logins or new tokens; see Retry-After",
    503: "Camera unavailable or busy, or too many logins at once; see Retry-After",
    507: "Below the free-space reserve, or disk full",
}


def viewer(view):
    """Any signed-in user."""
    return bp.auth_required(auth)(view)


def operator(view):
    """Operators only. Like every route with auth, it takes JSON only (see
    picam_api.request_rules); a write with If-Match is checked first (responses.py)."""
    return bp.auth_required(auth, roles=["operator"])(precondition(view))


def errors(*codes: int) -> dict:
    """OpenAPI responses for the error statuses a view can return (auth adds 401)."""
    return {code: ERROR_DESCRIPTIONS[code] for code in (*codes, 429)}


def services():
    """This app's ``Services`` (app.py), which the composition root put in its extensions.

    Looked up, not imported: the blueprints stay independent of the factory.
    """
    return current_app.extensions["picam"]
