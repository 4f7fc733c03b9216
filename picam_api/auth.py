"""HTTP authentication: Basic and Bearer through Flask-HTTPAuth (via APIFlask).

Like Flask-HTTPAuth itself, the auth objects are module-level and keep no app:
the callbacks find the app's ``Accounts``, credential cache and login guard in
``current_app.extensions``.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Iterator

from apiflask import APIKeyQueryAuth, HTTPBasicAuth, HTTPTokenAuth, MultiAuth
from apiflask import HTTPError
from flask import Response, current_app, g, request

from . import request_rules
from .accounts import Accounts, User
from .errors import LoginsBusy, TooManyFailures
from .limits import Quota, SlidingWindow

log = logging.getLogger(__name__)


class _ChecksBody:
    """Runs ``request_rules.check_body`` once credentials are verified, before the view.

    Every route with auth goes through one of these schemes (MultiAuth hands
    the request to one of them), so every route inherits the rule.
    """

    def login_required(self, f=None, role=None, optional=None):
        verify = super().login_required(role=role, optional=optional)

        def decorator(view):
            @functools.wraps(view)
            def checked(*args, **kwargs):
                request_rules.check_body()
                return view(*args, **kwargs)
            return verify(checked)
        return decorator(f) if f else decorator


class _BasicAuth(_ChecksBody, HTTPBasicAuth):
    pass


class _BearerAuth(_ChecksBody, HTTPTokenAuth):
    def is_compatible_auth(self, headers) -> bool:
        # Schemes are case-insensitive (RFC 9110, 11.1), but Flask-HTTPAuth compares
        # them exactly here, so MultiAuth would hand "bearer <token>" to Basic.
        scheme = headers.get("Authorization", "").partition(" ")[0]
        return scheme.lower() == self.scheme.lower()


class _TicketAuth(_ChecksBody, APIKeyQueryAuth):
    pass


basic = _BasicAuth(realm="picam-api", description="A user name and password.")
bearer = _BearerAuth(scheme="Bearer", realm="picam-api",
                     description="A token from POST /api/v1/tokens.")
auth = MultiAuth(basic, bearer)
# The live view also takes a signed URL, for an <img>, which cannot send headers.
ticket = _TicketAuth(name="StreamTicket", param_name="ticket", description=(
    "A signed, single-use ticket from POST /api/v1/stream/urls, valid for a GET of "
    "this route only, for stream.url_ttl_s seconds."))
stream_auth = MultiAuth(basic, bearer, ticket)
# APIFlask warns when two MultiAuths share a scheme name; here they share the very
# same objects, so nothing in the OpenAPI document is overwritten.
warnings.filterwarnings("ignore", r"The auth scheme name '(Basic|Bearer)Auth' has existed")


class CredentialCache:
    """Remembers recently verified Basic credentials so the slow hash runs once.

    Keys are an HMAC of name and password under a per-process random key, never
    the plaintext. An entry stays valid only while the user's stored hash is the
    one it was verified against, so ``user passwd``/``user remove`` apply at once.
    """

    def __init__(self, ttl: float, max_entries: int = 1024):
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def check(self, accounts: Accounts, name: str, password: str) -> User | None:
        key = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            cached = self._entries.get(key)
        if cached and cached[1] > now:
            user = accounts.get_user(name)
            if user and hmac.compare_digest(user.password_hash, cached[0]):
                return user
        user = accounts.check_password(name, password)
        if user and self.ttl:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                    if len(self._entries) >= self.max_entries:
                        self._entries.clear()
                self._entries[key] = (user.password_hash, now + self.ttl)
        return user


class LoginGuard:
    """Limits password checks per client address and user name; 429 past the limit.

    Failures count per (address, user name), so a client with a wrong password
    does not lock out other users behind the same address (a NAT, or Home
    Assistant and OctoPrint on one box). Names that are no user's count per
    address too, and past ``ADDRESS_FACTOR`` times the limit that address may
    try no more of them: spraying names is bounded, and users that exist are
    never locked out by it.

    ``attempt()`` holds its (address, name) key while the password is checked, so
    the checks of one key run one after another and each failure is counted
    before the next check starts: 40 parallel tries check at most
    ``max_failures`` passwords. Bearer tokens and stream tickets are unguessable
    and never pass through here, so a locked address keeps using them.
    """

    ADDRESS_FACTOR = 3

    def __init__(self, max_failures: int, window_s: float, wait_s: float = 2.0,
                 max_keys: int = 10_000):
        self.max_failures = max_failures
        self.wait_s = wait_s
        self._failures = SlidingWindow(window_s, max_keys)
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], list] = {}  # key -> [lock, holders and waiters]
        self._tag_key = secrets.token_bytes(16)

    @contextmanager
    def attempt(self, client: str, name: str, known: bool) -> Iterator[bool]:
        """Check one password of ``name`` (``known``: a user has it) from ``client`` inside
        this block, if it yields True (see ``check``)."""
        key = (client, name[:128])
        with self._lock:
            entry = self._held.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=self.wait_s):
                raise LoginsBusy("this user's earlier logins from this client are still being "
                                 "checked; try again", retry_after=1)
            try:
                yield self.check(client, name, known)
            finally:
                entry[0].release()
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._held[key]

    def check(self, client: str, name: str, known: bool = True) -> bool:
        """Whether a password of ``name`` from ``client`` may be checked now.

        Past the limit, a user that exists gets ``TooManyFailures`` (429, with
        Retry-After); a name that is no user's gets False: a plain 401 with no
        hash, as nothing could ever log in as it.
        """
        now = time.monotonic()
        limits = [((client, name[:128]), self.max_failures)]
        if not known:
            limits.append(((client, None), self.max_failures * self.ADDRESS_FACTOR))
        with self._lock:
            for key, limit in limits:
                if self._failures.count(key, now) >= limit:
                    if not known:
                        return False
                    retry = self._failures.retry_after(key, now)
                    raise TooManyFailures(f"too many failed logins from {client}; "
                                          f"try again in {retry} s", retry_after=retry,
                                          headers=Quota(limit, 0, retry).headers())
        return True

    def failed(self, client: str, name: str, known: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures.add((client, name[:128]), now)
            if not known:
                self._failures.add((client, None), now)

    def tag(self, name: str) -> str:
        """A short name for a user name that may be a mistyped password, for the log.

        An HMAC under a per-process key: lines of one run can be matched up, and
        the tag tells nothing about what was typed.
        """
        return hmac.new(self._tag_key, name.encode(), hashlib.sha256).hexdigest()[:8]


@basic.verify_password
def _verify_password(name: str, password: str) -> User | None:
    if not name and not password:
        return None  # no credentials: a plain 401, not a failed login
    services = current_app.extensions["picam"]
    client = request.remote_addr or "?"
    guard = services.login_guard
    known = services.accounts.get_user(name) is not None
    with guard.attempt(client, name, known) as allowed:
        if not allowed:
            return None  # a name sprayed past the limit: refused unhashed, and not logged again
        user = services.credential_cache.check(services.accounts, name, password)
        if user is None:
            guard.failed(client, name, known)
    if user is None:
        # A user name that is no user may be a password typed in the wrong field.
        who = f"user {name!r}" if known else f"an unknown user (tag {guard.tag(name)})"
        log.warning("failed Basic login for %s from %s", who, client)
    return user


@bearer.verify_token
def _verify_token(token: str) -> User | None:
    return _check_secret(token, "bearer token", lambda services: services.accounts.check_token(token))


TICKET_REFUSED = {
    "invalid": "the stream ticket is not valid for this URL",
    "expired": "the stream ticket has expired (a ticket lasts stream.url_ttl_s seconds)",
    "spent": "the stream ticket is spent (a ticket opens the stream once)",
    "no user": "the stream ticket's user no longer exists",
}


@ticket.verify_token
def _verify_ticket(value: str) -> User | None:
    def check(services) -> User | None:
        # The path as url_for() made it when the ticket was issued, mount point included.
        name, verdict = services.stream_urls.check(value, request.method,
                                                   request.script_root + request.path)
        user = services.accounts.get_user(name) if name else None  # gone with its user
        if user is None:
            g.picam_ticket_refused = TICKET_REFUSED[verdict if name is None else "no user"]
        return user
    return _check_secret(value, "stream ticket", check)


@ticket.error_processor
def _ticket_refused(error) -> Response:
    """A refused ticket's 401 says why, so a client knows to ask for a new one."""
    reason = g.pop("picam_ticket_refused", None)
    detail = f"{reason}; ask POST /api/v1/stream/urls for a new one" if reason else None
    return current_app.error_callback(HTTPError(error.status_code, detail=detail))


def _check_secret(secret: str, what: str, check) -> User | None:
    """A bearer token or ticket: 256 random bits or a MAC, so never rate-limited."""
    services = current_app.extensions["picam"]
    user = check(services) if secret else None
    if user is None and secret:
        log.warning("rejected %s from %s", what, request.remote_addr or "?")
    return user


@basic.get_user_roles
@bearer.get_user_roles
def _roles(user: User) -> list[str]:
    return user.roles


@ticket.get_user_roles
def _ticket_roles(user: User) -> list[str]:
    return ["viewer"]  # a ticket only ever reads, whoever asked for it
