"""Every error, mapped once to an RFC 9457 problem+json response.

Domain errors (``PicamError``), APIFlask's ``HTTPError`` (validation, auth,
``abort``) and Werkzeug's routing errors (404, 405, 413) all end here.
"""
from __future__ import annotations

import logging
import re

from apiflask import APIFlask, Schema, fields
from apiflask.exceptions import HTTPError
from flask import Response, json, request
from werkzeug.http import HTTP_STATUS_CODES

from .db import is_full
from .errors import InsufficientStorage, PicamError
from .files import FULL_ERRNOS

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"


class ProblemSchema(Schema):
    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "For validation errors: each bad field "
                                                  "and what is wrong with it."})


def problem_body(status: int, detail: str, title: str | None = None,
                 errors: dict | None = None) -> dict:
    """The RFC 9457 body, for HTTP responses and for anything else that answers like them (MQTT)."""
    title = title or HTTP_STATUS_CODES.get(status, "Error")
    body = {"type": _type(title) if status != 500 else "about:blank", "title": title,
            "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return body


def error_body(error: PicamError) -> dict:
    """The problem body of a domain error."""
    return problem_body(error.status, error.detail, error.title, error.extra.get("errors"))


def validation_body(messages) -> dict:
    """The problem body of marshmallow ``messages`` for a JSON body, as APIFlask reports them."""
    errors = _field_errors({"json": messages})
    return problem_body(422, _joined(errors), "Validation error", errors)


def problem(status: int, detail: str, title: str | None = None, headers=None,
            errors: dict | None = None) -> Response:
    body = problem_body(status, detail, title, errors)
    response = Response(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    for name, value in (headers or {}).items():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def init_app(app: APIFlask) -> None:
    app.config["HTTP_ERROR_SCHEMA"] = ProblemSchema
    app.config["VALIDATION_ERROR_SCHEMA"] = ProblemSchema

    @app.error_processor
    def _from_http_error(error: HTTPError) -> Response:
        errors = _field_errors(error.detail) if isinstance(error.detail, dict) else None
        if errors:
            detail = _joined(errors)
        elif isinstance(error.detail, str) and error.detail:
            detail = error.detail
        else:
            detail = _DETAILS.get(error.status_code, error.message)
        title = "Validation error" if errors else None
        return problem(error.status_code, detail, title, error.headers, errors)

    @app.errorhandler(PicamError)
    def _from_picam_error(error: PicamError) -> Response:
        if error.status >= 500:
            # The server's own failures (camera, disk) go to the log as well; the path
            # has no query string, where a client might have put credentials.
            log.warning("%s %s: %s", request.method, request.path, error.detail)
        return problem(error.status, error.detail, error.title, error.headers,
                       error.extra.get("errors"))

    @app.errorhandler(Exception)
    def _from_unexpected(error: Exception) -> Response:
        if _disk_full(error):
            # Written anywhere, by anyone: a full disk is the same 507 as in the store.
            return _from_picam_error(InsufficientStorage("the disk is full; nothing was changed. "
                                                         "Delete photos to make room."))
        log.exception("unhandled error")
        return problem(500, "The server failed; the error is in its log.")

    @app.spec_processor
    def _problem_media_type(spec: dict) -> dict:
        # Only problem bodies: a view may document its own JSON for a status >= 400
        # (health's 503 is the health report, not a problem).
        problem_ref = f"#/components/schemas/{ProblemSchema.__name__}"
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    schema = content.get("application/json", {}).get("schema", {})
                    if int(status) >= 400 and schema.get("$ref") == problem_ref:
                        content[MEDIA_TYPE] = content.pop("application/json")
        return spec


def _disk_full(error: BaseException) -> bool:
    return is_full(error) or (isinstance(error, OSError) and error.errno in FULL_ERRNOS)


def _joined(errors: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items())


def _field_errors(detail: dict) -> dict[str, list[str]]:
    """Flatten APIFlask's ``{location: {field: {...}: [msgs]}}`` to ``{"a.b": [msgs]}``.

    marshmallow files a schema's own errors (wrong type of a nested object, a
    body that is not an object) under ``_schema``; they belong to the field that
    holds that schema, or to ``body`` at the top.
    """
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                name = str(key)
                walk(prefix if name == "_schema" else f"{prefix}.{name}" if prefix else name, sub)
        else:
            messages = value if isinstance(value, list) else [value]
            flat.setdefault(prefix or "body", []).extend(str(m) for m in messages)

    for fields_ in detail.values():
        walk("", fields_)
    return flat


_DETAILS = {
    # Routing and parsing errors arrive with only a reason phrase; say what to fix.
    400: "The request could not be read, such as a body that is not valid JSON.",
    401: "Send valid credentials: HTTP Basic, or a bearer token from POST /api/v1/tokens.",
    403: "Your role does not allow this; it needs an operator.",
    404: "There is nothing at this URL.",
    405: "This URL does not take that method.",
    413: "The request body is too large.",
    415: "Send the body as application/json.",
}


def _type(title: str) -> str:
    return "urn:picam-api:problem:" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
