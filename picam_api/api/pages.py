"""Lists as the API sends them: one page, links to its neighbours, and a Link header.

Every list view ends in ``page_response``. The body is ``{"items", "next",
"links": {"self", "first", "next", "prev"}}``, plus ``count`` when the query says
``count=true`` (schemas.PageQuery and schemas.ListPage, which a list's own
schemas subclass); the same first, next and prev links go in an RFC 8288 ``Link``
header, for clients that page without reading the body. The URLs are relative,
made by ``url_for`` with the list's own filters and ``limit`` (public_urls.py
makes them absolute when ``server.public_url`` is set).
"""
from __future__ import annotations

from typing import Any, Callable

from flask import url_for

from ..pagination import Page

LINK_RELATIONS = ("first", "prev", "next")


def page_response(endpoint: str, page: Page, body: Callable[[Any], dict], query: dict,
                  count: Callable[[], int], **filters) -> tuple[dict, int, dict]:
    """The view's return value for ``page``: each item made by ``body``; ``filters``
    (None values left out) go into every link."""
    args = {key: value for key, value in filters.items() if value is not None}
    args["limit"] = query["limit"]

    def link(cursor: str | None) -> str:
        return url_for(endpoint, **args, **({"cursor": cursor} if cursor else {}))

    links = {"self": link(query.get("cursor")), "first": link(None),
             "next": link(page.next) if page.next else None,
             "prev": link(page.prev) if page.prev else None}
    result = {"items": [body(item) for item in page.items], "next": links["next"],
              "links": links}
    if query.get("count"):
        result["count"] = count()
    header = ", ".join(f'<{links[rel]}>; rel="{rel}"' for rel in LINK_RELATIONS if links[rel])
    return result, 200, {"Link": header}
