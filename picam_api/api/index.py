"""``/``: the web page and its files, and mjpg-streamer's ``?action=`` aliases.

The page (``picam_api/web``) is public: it holds no secret, and it signs in
through the API like any client. Clients that know only mjpg-streamer's URLs
get the live view at ``/?action=stream`` and a snapshot at ``/?action=snapshot``,
with the same auth as the API unless ``stream.aliases_require_auth`` is false
and ``server.allowed_hosts`` is set (see hosts.py: DNS rebinding).
"""
from __future__ import annotations

from pathlib import Path

from flask import request, send_from_directory

from ..auth import auth
from ..errors import InvalidInput, NotFound
from ..hosts import aliases_open
from . import root
from .camera import snapshot_response
from .common import services
from .stream import stream_response

WEB = Path(__file__).parent.parent / "web"
# Only these kinds of file are served, each with the type a browser will run under nosniff.
MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
               ".svg": "image/svg+xml"}
ACTIONS = {
    "stream": lambda: stream_response({}),
    "snapshot": lambda: snapshot_response({}),
}


@root.get("/")
@root.doc(hide=True)
def index():
    action = request.args.get("action")
    if action is None:
        return _web_file("index.html")
    view = ACTIONS.get(action)
    if view is None:
        raise InvalidInput({"action": [f"must be one of {', '.join(ACTIONS)}"]})
    if not aliases_open(services().config):
        view = auth.login_required(view)
    return view()


@root.get("/ui/<path:name>")
@root.doc(hide=True)
def web_file(name: str):
    return _web_file(name)


def _web_file(name: str):
    media_type = MEDIA_TYPES.get(Path(name).suffix)
    if media_type is None:
        raise NotFound("There is no such file of the web page.")
    # max_age=0: the browser revalidates (ETag), so an upgrade shows at once.
    return send_from_directory(WEB, name, mimetype=media_type, max_age=0)
