"""What every request must be: sent by a page of this origin, JSON, and JSON within bounds.

Cross-site request forgery. 
A browser adds some credentials by itself. Every 401 here sends
``WWW-Authenticate: Basic``, so a browser that once opened an API URL keeps the
password and sends it again to this origin, also when a page of another site
makes it post a form or a no-cors ``fetch()``. So, for POST, PUT, PATCH and DELETE:

1. **Same origin only** (``init_app``, before anything else runs): an ``Origin``
   header must be this server's own origin (the host the request was sent to)
   or one of ``server.allowed_origins``; without an ``Origin``, a
   ``Sec-Fetch-Site`` header must be ``same-origin`` or ``none``. ``same-site``
   is refused too: another port of the same host is the same site. Clients that
   are not browsers send neither header. Refused: 403.
2. **JSON only** (``check_body``, once credentials are verified, so a request
   without valid ones is a 401 first): the request says ``Content-Type:
   application/json``, whatever its body's length or framing (chunked too). A
   page of another site can send a form or ``text/plain`` without asking the
   server, but not ``application/json``: that takes a CORS preflight, which
   this service never grants. A route may take another type that needs a
   preflight as well (``accepts``: WHEP's ``application/sdp``). The one
   exception is a request with no body at all, to a route that takes none, with a credential a browser never adds by
   itself: a bearer token. Refused: 415.

JSON within bounds (``check_body`` too): nested at most ``MAX_JSON_DEPTH``
deep, and no number of more than ``MAX_NUMBER_DIGITS`` digits. Python's parser
raises RecursionError at about a thousand levels, and int() refuses more than
4300 digits; both would be a 500. Refused: 400, before anything parses the body.

``picam_api.auth`` runs ``check_body`` for every route that has auth, so every
route, present or future, inherits these rules. docs/security.md has the long form.
"""
from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import urlsplit

from apiflask import APIFlask
from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import BadRequest, CrossSiteRequest, UnsupportedMediaType

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The body types a page of another site may send without asking (the Fetch standard).
CORS_SAFELISTED = frozenset({"application/x-www-form-urlencoded", "multipart/form-data",
                             "text/plain"})
SAME_ORIGIN_SITES = ("same-origin", "none")
MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 100
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_NUMBER_DIGITS + 1},}}")
_BRACKET = re.compile(r"[\[\]{}]")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case; ValueError for anything else."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc \
            or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must be an origin such as https://ha.local:8123")
    return f"{parts.scheme}://{parts.netloc}".lower()


def init_app(app: APIFlask, allowed_origins: Iterable[str]) -> None:
    allowed = frozenset(normalize_origin(origin) for origin in allowed_origins)

    @app.before_request
    def _same_origin_only() -> None:
        if request.method in STATE_CHANGING:
            check_origin(allowed)


def check_origin(allowed: frozenset[str]) -> None:
    """Refuse a state-changing request that a page of another origin sent."""
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin.lower() in allowed or _netloc(origin) == request.host.lower():
            return
        raise CrossSiteRequest(f"a page of {origin[:100]!r} may not change anything here; "
                               "add its origin to server.allowed_origins to allow it")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in SAME_ORIGIN_SITES:
        raise CrossSiteRequest(f"a request from a {site[:20]!r} page may not change anything "
                               "here; the browser did not say which origin sent it")


def check_body() -> None:
    """Refuse a state-changing request that is not JSON (rule 2), or JSON out of bounds."""
    if request.is_json:
        if _has_body():
            check_json_bounds(_read_body())
        return
    if request.method not in STATE_CHANGING or request.mimetype in _accepted():
        return
    if _has_body():
        raise UnsupportedMediaType("send the body as application/json")
    if _takes_body():
        raise UnsupportedMediaType("send a JSON body with Content-Type: application/json "
                                   "({} for the defaults)")
    if _ambient_credentials():
        raise UnsupportedMediaType("with Basic credentials, say Content-Type: application/json "
                                   "even with no body, or sign in with a bearer token")


def check_json_bounds(raw: bytes) -> None:
    """``BadRequest`` for JSON nested too deep or with too long a number."""
    # Strings may hold anything, brackets and digits included: take them out first.
    text = _STRING.sub('""', raw.decode("utf-8", "replace"))
    if _LONG_NUMBER.search(text):
        raise BadRequest(f"a number in the body has more than {MAX_NUMBER_DIGITS} digits")
    depth = 0
    for bracket in _BRACKET.finditer(text):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"the body is nested more than {MAX_JSON_DEPTH} deep")


def _read_body() -> bytes:
    """The body, chunked or not; 413 past ``server.max_body_bytes``, as with a Content-Length."""
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        # werkzeug cuts a chunked body off at the limit without a word (and webargs
        # would then call it malformed JSON): that is a body too large.
        raise RequestEntityTooLarge()
    return data


def _has_body() -> bool:
    # A chunked body has no Content-Length; it is a body all the same.
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def accepts(*mimetypes: str):
    """Let a view take these non-JSON bodies too (WHEP's application/sdp). A page of
    another site cannot send them without a CORS preflight either, so the types a form
    or a no-cors fetch can send are never allowed."""
    allowed = frozenset(mimetypes)
    if allowed & CORS_SAFELISTED:
        raise ValueError("a CORS-safelisted body type would let pages of other sites in")

    def mark(view):
        view.picam_accepts = allowed
        return view
    return mark


def _accepted() -> frozenset[str]:
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, "picam_accepts", frozenset())


def _takes_body() -> bool:
    view = current_app.view_functions.get(request.endpoint)
    return bool(getattr(view, "_spec", {}).get("body"))


def _ambient_credentials() -> bool:
    return request.authorization is not None and request.authorization.type == "basic"


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return ""
