"""Relative links made absolute under ``server.public_url``.

Resources carry relative links (``/api/v1/...``): they survive a proxy that
rewrites the host. Behind one that does not, or for a client elsewhere (a
webhook receiver, an MQTT subscriber), ``server.public_url`` is set and every
link in a response, an event or a delivery is prefixed with it.
"""
from __future__ import annotations

from typing import Any

# Keys outside a ``links`` object that hold a URL: page links and stream URLs.
URL_KEYS = frozenset({"next", "prev", "first", "url"})


def absolute(node: Any, base: str, in_links: bool = False) -> Any:
    """``node`` (JSON) with each link that starts with "/" prefixed by ``base``."""
    if isinstance(node, dict):
        return {key: (base + value if isinstance(value, str) and value.startswith("/")
                      and (in_links or key in URL_KEYS) else
                      absolute(value, base, key == "links"))
                for key, value in node.items()}
    if isinstance(node, list):
        return [absolute(value, base) for value in node]
    return node
