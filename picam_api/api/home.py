"""GET /api/v1: the API root, where a client starts and follows links."""
from __future__ import annotations

from flask import current_app

from .. import __version__
from . import bp
from .common import errors, viewer
from .schemas import ApiRoot

# Every collection and document a client may start from, by path. A feature adds
# its line here; a path with no route in this app (a feature not built, or off)
# is left out of the answer.
LINKS = {
    "photos": "/api/v1/photos",
    "videos": "/api/v1/videos",
    "timelapses": "/api/v1/timelapses",
    "gpio": "/api/v1/gpio",
    "camera": "/api/v1/camera",
    "snapshot": "/api/v1/snapshot.jpg",
    "stream": "/api/v1/stream.mjpg",
    "stream_urls": "/api/v1/stream/urls",
    "events": "/api/v1/events",
    "webhooks": "/api/v1/webhooks",
    "motion": "/api/v1/motion",
    "tokens": "/api/v1/tokens",
    "info": "/api/v1/info",
    "health": "/api/v1/health",
    "openapi": "/openapi.json",
    "docs": "/docs",
}


@bp.get("")
@viewer
@bp.output(ApiRoot)
@bp.doc(summary="The API root: links to every collection, the spec and the docs",
        responses=errors())
def api_root():
    routes = {rule.rule for rule in current_app.url_map.iter_rules()}
    return {"name": "picam-api", "version": __version__,
            "links": {"self": "/api/v1", **{name: path for name, path in LINKS.items()
                                            if path in routes}}}
