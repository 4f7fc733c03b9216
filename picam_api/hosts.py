"""The Host check: a request must name this machine, else 421 (DNS rebinding).

A page on another site can point a name it controls at this machine's LAN
address (DNS rebinding) and then read the service as its own origin: a browser
sends that name as ``Host``. So only these ``Host`` values are served:

- this machine's host name, its first label and ``<first label>.local`` (mDNS),
  read at each request; ``localhost`` and loopback addresses;
- the address the connection came in on: an IP address is never a rebinding
  name (a page can reach it only as an origin of its own);
- no ``Host`` at all (HTTP/1.0; browsers always send one);
- and what ``server.allowed_hosts`` adds (empty by default): names, IP addresses,
  ``*.example.org`` for every name under a domain, or ``"*"`` for any ``Host``
  (no check at all).

Anything else answers 421 problem+json before auth, on every route.

The mjpg-streamer aliases open without credentials (``stream.aliases_require_auth
= false``) only where ``server.allowed_hosts`` is set: whoever opens them says by
which names the camera is reached.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
from typing import Any, Mapping

from apiflask import APIFlask
from flask import request

from .errors import MisdirectedRequest

log = logging.getLogger(__name__)

_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def check_allowed_hosts(value: Any) -> list[str]:
    """The config check of ``server.allowed_hosts``: entries, lower-cased."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of host names or addresses")
    hosts = []
    for entry in value:
        host = entry.strip().lower().rstrip(".")
        bare = host[2:] if host.startswith("*.") else host
        if host != "*" and _ip(bare.strip("[]")) is None and not _NAME.fullmatch(bare):
            raise ValueError(f"{entry!r} is not a host name, '*.domain', an IP address or '*' "
                             "(give no port or scheme)")
        hosts.append(host.strip("[]"))
    return hosts


def aliases_open(config: Mapping) -> bool:
    """Whether ``/?action=...`` is served without credentials."""
    return not config["stream"]["aliases_require_auth"] and bool(config["server"]["allowed_hosts"])


class HostCheck:
    """Decides whether a ``Host`` value names this server."""

    def __init__(self, allowed: list[str]):
        self.any = "*" in allowed
        self.names = {host for host in allowed if not host.startswith("*.")}
        self.addresses = {address for host in self.names if (address := _ip(host))}
        self.suffixes = tuple(host[1:] for host in allowed if host.startswith("*."))

    def allows(self, host_header: str | None, local_address: str | None = None) -> bool:
        """``local_address``: this end of the connection, when the server knows it."""
        if self.any or not host_header:
            return True
        host = _host_of(host_header)
        if host is None:
            return False
        address = _ip(host)
        if address is not None:
            return (address.is_loopback or address in self.addresses
                    or address == _ip(local_address or ""))
        if host == "localhost":
            return True
        return host in self.names or host in machine_names() or host.endswith(self.suffixes)


def machine_names() -> set[str]:
    """This machine's host name, its first label and ``<first label>.local``."""
    name = socket.gethostname().lower().rstrip(".")
    short = name.split(".")[0]
    return {name, short, f"{short}.local"}


def init_app(app: APIFlask, config: Mapping) -> None:
    check = HostCheck(config["server"]["allowed_hosts"])
    if not config["stream"]["aliases_require_auth"] and not aliases_open(config):
        log.warning("stream.aliases_require_auth = false is ignored: /?action=stream and "
                    "/?action=snapshot still need credentials until server.allowed_hosts "
                    "names the hosts this camera is reached by (DNS rebinding)")

    @app.before_request
    def _check_host():
        environ = request.environ
        host = environ.get("HTTP_HOST")
        if not check.allows(host, environ.get("SERVER_ADDR")):
            raise MisdirectedRequest(
                f"This server does not answer for the host {host[:100]!r}; name it in "
                "server.allowed_hosts to allow it.")


def _host_of(header: str) -> str | None:
    """The host of a ``Host`` value, lower-cased, without port or brackets; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):
        host, bracket, rest = header[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        return host if _ip(host) is not None else None
    host, _, port = header.partition(":")
    if (port and not port.isdigit()) or ":" in port:
        return None
    host = host.rstrip(".")
    return host if _NAME.fullmatch(host) else None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, IPv4-mapped IPv6 as IPv4; None if ``text`` is not one."""
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address
