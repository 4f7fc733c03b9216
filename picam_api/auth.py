"""HTTP authentication: Basic and Bearer through Flask-HTTPAuth (via APIFlask).

Like Flask-HTTPAuth itself, the auth objects are module-level and keep no app:
the callbacks find the app's ``Accounts``, credential cache and login guard in
``current_app.extensions``.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import secrets
import threading
import time
import warnings

from apiflask import APIKeyQueryAuth, HTTPBasicAuth, HTTPTokenAuth, MultiAuth
from flask import current_app, request

from .accounts import Accounts, User
from .errors import TooManyFailures

log = logging.getLogger(__name__)


class _BearerAuth(HTTPTokenAuth):
    def is_compatible_auth(self, headers) -> bool:
        # Schemes are case-insensitive (RFC 9110, 11.1), but Flask-HTTPAuth compares
        # them exactly here, so MultiAuth would hand "bearer <token>" to Basic.
        scheme = headers.get("Authorization", "").partition(" ")[0]
        return scheme.lower() == self.scheme.lower()


basic = HTTPBasicAuth(realm="picam-api", description="A user name and password.")
bearer = _BearerAuth(scheme="Bearer", realm="picam-api",
                     description="A token from POST /api/v1/tokens.")
auth = MultiAuth(basic, bearer)
# The live view also takes a signed URL, for an <img>, which cannot send headers.
ticket = APIKeyQueryAuth(name="StreamTicket", param_name="ticket", description=(
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
    """Counts failed logins per client address and refuses with 429 past a limit."""

    def __init__(self, max_failures: int, window_s: float, max_clients: int = 10_000):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._recent(client, now)
            if len(recent) >= self.max_failures:
                retry = max(1, int(recent[0] + self.window_s - now) + 1)
                raise TooManyFailures(f"too many failed logins from {client}; "
                                      f"try again in {retry} s", retry_after=retry)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                for other in list(self._failures):
                    self._recent(other, now)
                if len(self._failures) >= self.max_clients:
                    # Still full of recent failures (from many addresses): forget the
                    # client that failed first rather than grow without bound.
                    del self._failures[next(iter(self._failures))]
            self._failures.setdefault(client, collections.deque()).append(now)

    def _recent(self, client: str, now: float) -> collections.deque:
        recent = self._failures.get(client, collections.deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            self._failures.pop(client, None)
        return recent


@basic.verify_password
def _verify_password(name: str, password: str) -> User | None:
    services = current_app.extensions["picam"]
    client = request.remote_addr or "?"
    services.login_guard.check(client)
    if not name and not password:
        return None  # no credentials: a plain 401, not a failed login
    user = services.credential_cache.check(services.accounts, name, password)
    if user is None:
        services.login_guard.failed(client)
        log.warning("failed Basic login for user %r from %s", name[:64], client)
    return user


@bearer.verify_token
def _verify_token(token: str) -> User | None:
    return _check_secret(token, "bearer token", lambda services: services.accounts.check_token(token))


@ticket.verify_token
def _verify_ticket(value: str) -> User | None:
    def check(services) -> User | None:
        # The path as url_for() made it when the ticket was issued, mount point included.
        name = services.stream_urls.check(value, request.method, request.script_root + request.path)
        return services.accounts.get_user(name) if name else None  # gone with its user
    return _check_secret(value, "stream ticket", check)


def _check_secret(secret: str, what: str, check) -> User | None:
    """A bearer token or ticket, counted like a password by the login guard."""
    services = current_app.extensions["picam"]
    client = request.remote_addr or "?"
    services.login_guard.check(client)
    user = check(services) if secret else None
    if user is None and secret:
        services.login_guard.failed(client)
        log.warning("rejected %s from %s", what, client)
    return user


@basic.get_user_roles
@bearer.get_user_roles
def _roles(user: User) -> list[str]:
    return user.roles


@ticket.get_user_roles
def _ticket_roles(user: User) -> list[str]:
    return ["viewer"]  # a ticket only ever reads, whoever asked for it
