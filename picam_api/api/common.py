"""Helpers the view modules share: role decorators, documented errors, services."""
from __future__ import annotations

import functools

from flask import current_app, request

from ..app import Services
from ..auth import auth
from ..errors import UnsupportedMediaType
from . import bp

BODY_METHODS = ("POST", "PUT", "PATCH")
ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    403: "Needs the operator role",
    404: "Not found",
    409: "Wrong state for this action",
    413: "Request body too large",
    415: "Body is not application/json",
    422: "Validation error: `errors` names each bad field",
    429: "Too many failed logins; see Retry-After",
    503: "Camera unavailable or busy; see Retry-After",
    507: "Below the free-space reserve, or disk full",
}


def viewer(view):
    """Any signed-in user."""
    return bp.auth_required(auth)(view)


def operator(view):
    """Operators only; a request body must be JSON (checked after auth, so 401 comes first)."""
    return bp.auth_required(auth, roles=["operator"])(_json_only(view))


def _json_only(view):
    @functools.wraps(view)
    def checked(*args, **kwargs):
        # webargs reads a non-JSON body as empty, which would quietly use defaults.
        if request.method in BODY_METHODS and request.content_length and not request.is_json:
            raise UnsupportedMediaType("send the body as application/json")
        return view(*args, **kwargs)
    return checked


def errors(*codes: int) -> dict:
    """OpenAPI responses for the error statuses a view can return (auth adds 401)."""
    return {code: ERROR_DESCRIPTIONS[code] for code in (*codes, 429)}


def services() -> Services:
    return current_app.extensions["picam"]
