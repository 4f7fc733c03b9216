"""Security headers on every response: the page, its assets, the API, images, problems.

The Content-Security-Policy allows nothing but this origin and no inline script,
so an injected ``<script>`` or ``onerror=`` never runs, and the page may not be
framed (clickjacking). Images may also be ``blob:`` URLs: the page fetches photos
with its bearer token and shows them that way.

``/docs`` is APIFlask's Swagger UI page, whose initialiser is an inline script.
It gets the same policy plus that one script's SHA-256, taken from the page as
rendered at start-up, and inline styles (Swagger UI sets style attributes).
"""
from __future__ import annotations

import base64
import hashlib
import re

from apiflask import APIFlask
from flask import Response, request

BASE = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' blob: data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
FIXED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
DOCS_ENDPOINT = "openapi.docs"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _policy(**overrides: str) -> str:
    return "; ".join(f"{name} {value}" for name, value in {**BASE, **overrides}.items())


def fixed_headers() -> dict[str, str]:
    """The page policy and the fixed headers, for responses made outside Flask
    (the HTTP server's own error responses)."""
    return {"Content-Security-Policy": _policy(), **FIXED}


def init_app(app: APIFlask) -> None:
    page_policy = _policy()
    docs_policy = _policy(**{"script-src": "'self' " + " ".join(_docs_script_hashes(app)),
                            "style-src": "'self' 'unsafe-inline'"})

    @app.after_request
    def _secure(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = (
            docs_policy if request.endpoint == DOCS_ENDPOINT else page_policy)
        response.headers.update(FIXED)
        return response


def _docs_script_hashes(app: APIFlask) -> list[str]:
    if DOCS_ENDPOINT not in app.view_functions:
        return []
    with app.test_request_context(app.docs_path):
        page = app.view_functions[DOCS_ENDPOINT]()
    return [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
            for s in INLINE_SCRIPT.findall(page)]
