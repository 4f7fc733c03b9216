"""One delivery over HTTP: the receiver's address checked, then a POST with a deadline.

The URL's host is resolved here, each address is checked against
``webhooks.allowed_networks`` and ``denied_networks``, and the connection goes
to the address that passed (so a name that resolves differently a moment later,
DNS rebinding, cannot swap it). Redirects are not followed. Only the status is
kept from the answer, never its body: the delivery log is no way to read
another host's pages.
"""
from __future__ import annotations

import base64
import http.client
import ipaddress
import re
import socket
import ssl
import threading
from urllib.parse import unquote, urlsplit

MAX_RESPONSE_BYTES = 64 * 1024


class DeliveryError(Exception):
    """A delivery that did not get a response; the message is safe to log and show."""


PORT = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"


def url_pattern(allowed_hosts: list[str]) -> str:
    """What the OpenAPI document says a receiver URL is (check_url has the last word)."""
    if not allowed_hosts:
        return "^https?://[!-\"$-~]+$"
    hosts = "|".join(re.escape(f"[{h}]" if ":" in h else h) for h in allowed_hosts)
    return f"^https?://({hosts})(:{PORT})?(/[!-\"$-~]*)?$"


def check_url(url: str, policy: "AddressPolicy") -> None:
    """ValueError(reason) unless ``url`` is an http(s) URL this policy could deliver to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if not host:
        raise ValueError("must name a host")
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("must not contain spaces or control characters")
    policy.check_host(host)
    address = _literal(host)
    if address is None:
        if not policy.allow_hostnames:
            raise ValueError("must give the receiver by IP address (webhooks.allow_hostnames "
                             "is false)")
    else:
        policy.check(address)


class AddressPolicy:
    """Which receiver addresses are allowed: the config's networks."""

    def __init__(self, config: dict):
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in config["allowed_networks"]]
        self.denied = [ipaddress.ip_network(n, strict=False) for n in config["denied_networks"]]
        self.allow_hostnames = config["allow_hostnames"]
        self.hosts = set(config["allowed_hosts"])

    def check_host(self, host: str) -> None:
        if self.hosts and host.lower() not in self.hosts:
            raise ValueError("must be at one of webhooks.allowed_hosts "
                             f"({', '.join(sorted(self.hosts))})")

    def check(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        if any(address in network for network in self.denied):
            raise ValueError(f"is an address that webhooks.denied_networks excludes ({address})")
        if not any(address in network for network in self.allowed):
            raise ValueError(f"is an address outside webhooks.allowed_networks ({address})")


class Poster:
    """POSTs one delivery; ``abort()`` from another thread ends one in flight."""

    def __init__(self, policy: AddressPolicy, timeout_s: float):
        self.policy = policy
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._aborted = False

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """The response status, or ``DeliveryError`` saying why there is none."""
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        try:
            self.policy.check_host(host)  # the config may have changed since it was made
        except ValueError as exc:
            raise DeliveryError(f"the receiver {exc}") from None
        address = self._resolve(host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if parts.username is not None:
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers = {**headers, "Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout_s, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        # Connect to the address that was checked, whatever the name resolves to now;
        # TLS still checks the certificate against the name.
        conn._create_connection = lambda _, timeout, source: socket.create_connection(
            (address, port), timeout, source)
        with self._lock:
            if self._aborted:
                raise DeliveryError("the service is stopping")
            self._conn = conn
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            return response.status
        except socket.timeout:
            raise DeliveryError(f"no answer within {self.timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise DeliveryError(f"TLS failed: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise DeliveryError(_describe(exc)) from None
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    @property
    def aborted(self) -> bool:
        return self._aborted

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _resolve(self, host: str, port: int) -> str:
        literal = _literal(host)
        if literal is not None:
            candidates = [literal]
        elif not self.policy.allow_hostnames:
            raise DeliveryError("the receiver must be given by IP address")
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise DeliveryError(f"the host name does not resolve: {exc.strerror}") from None
            candidates = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        reasons = []
        for address in candidates:
            try:
                self.policy.check(address)
            except ValueError as exc:
                reasons.append(str(exc))
                continue
            return str(address)
        raise DeliveryError("the receiver " + "; ".join(dict.fromkeys(reasons)))


def _literal(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__
