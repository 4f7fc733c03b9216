"""What every API response gets on its way out, and what a conditional write checks first.

One after-request step (``init_app``), for every route under /api/v1, present or future:

- **ETag** on every 200 JSON answer to GET, HEAD and PATCH: a hash of the body,
  so it changes exactly when the representation does, whatever the resource
  (a photo, a job, the camera, a device, a list). With ``Cache-Control: private,
  no-cache``, so a browser keeps it and asks again with ``If-None-Match``.
- **Absolute URLs** when ``server.public_url`` is set (behind a proxy, or for
  clients that need them): ``Location``, ``Link``, and in JSON bodies every value
  of a ``links`` object and of ``next``, ``prev``, ``first`` and ``url`` that is a
  path. Without it they stay relative. The ETag is taken before, so it does
  not depend on the setting.
- **304** for a GET or HEAD whose ``If-None-Match`` (or ``If-Modified-Since``,
  where a view set ``Last-Modified``) matches.
- **No Content-Type on a 204**, which has no content.

``precondition`` runs inside the ``operator`` decorator (common.py), after auth,
so every PATCH, PUT and DELETE inherits it: with ``If-Match``, the resource's
current ETag (from the GET view of the same URL) must match, or the answer is
412 and nothing is applied. Writes that carry If-Match run one at a time, from
that check to their answer, so two clients cannot both pass it with the same
tag (a lost update). A write without If-Match is unconditional, as in HTTP.
"""
from __future__ import annotations

import functools
import hashlib
import json
import threading
from typing import Any

from flask import Response, current_app, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ..errors import PreconditionFailed

TAGGED = ("GET", "HEAD", "PATCH")
CONDITIONAL_WRITES = ("PATCH", "PUT", "DELETE")
URL_KEYS = frozenset({"next", "prev", "first", "url"})
_LOCK_KEY = "picam.conditional_writes"


def init_app(app, public_url: str) -> None:
    app.extensions[_LOCK_KEY] = threading.Lock()

    @app.after_request
    def _finish(response: Response) -> Response:
        if response.status_code == 204:
            del response.headers["Content-Type"]
        if request.blueprint != "api":
            return response
        tagged = (request.method in TAGGED and response.status_code == 200
                  and response.is_json and not response.is_streamed)
        if tagged:
            response.set_etag(tag_of(response))
            response.headers.setdefault("Cache-Control", "private, no-cache")
        if public_url:
            _absolute(response, public_url)
        if tagged and request.method != "PATCH":
            response.make_conditional(request)
        return response


def tag_of(response: Response) -> str:
    return hashlib.blake2b(response.get_data(), digest_size=16).hexdigest()


def precondition(view):
    """Check ``If-Match`` before a write; see the module docstring."""
    @functools.wraps(view)
    def checked(*args, **kwargs):
        if request.method not in CONDITIONAL_WRITES or "If-Match" not in request.headers:
            return view(*args, **kwargs)
        with current_app.extensions[_LOCK_KEY]:
            current = _current_tag()
            if not request.if_match.contains(current):
                raise PreconditionFailed(
                    "the resource changed since you read it (If-Match does not match its "
                    f'ETag, now "{current}"); nothing was changed: read it again, then retry')
            return view(*args, **kwargs)
    return checked


def _current_tag() -> str:
    """The ETag a GET of this URL would have now (a 404 if there is nothing there)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, args = adapter.match(request.path, method="GET")
    except (NotFound, MethodNotAllowed):
        raise PreconditionFailed("this resource has no representation to compare "
                                 "If-Match with; send the request without it") from None
    return tag_of(current_app.make_response(current_app.view_functions[endpoint](**args)))


def _absolute(response: Response, base: str) -> None:
    for name in ("Location", "Content-Location"):
        if response.headers.get(name, "").startswith("/"):
            response.headers[name] = base + response.headers[name]
    if "Link" in response.headers:
        response.headers["Link"] = response.headers["Link"].replace("</", f"<{base}/")
    if response.is_json and not response.is_streamed:
        body = response.get_json()
        response.set_data(json.dumps(_absolute_body(body, base), separators=(",", ":")))


def _absolute_body(node: Any, base: str, in_links: bool = False) -> Any:
    if isinstance(node, dict):
        return {key: (base + value if isinstance(value, str) and value.startswith("/")
                      and (in_links or key in URL_KEYS) else
                      _absolute_body(value, base, key == "links"))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_absolute_body(value, base) for value in node]
    return node
