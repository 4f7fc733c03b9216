"""``/``: for now only mjpg-streamer's ``?action=stream`` and ``?action=snapshot``.

Clients that know only mjpg-streamer's URLs get the live view and a snapshot
here, with the same auth as the API unless ``stream.aliases_require_auth`` is
false. A bare ``/`` is 404 until there is a page to serve.
"""
from __future__ import annotations

from flask import request

from ..auth import auth
from ..errors import InvalidInput, NotFound
from . import root
from .camera import snapshot_response
from .common import services
from .stream import stream_response

ACTIONS = {
    "stream": lambda: stream_response({}),
    "snapshot": lambda: snapshot_response({}),
}


@root.get("/")
@root.doc(hide=True)
def index():
    action = request.args.get("action")
    if action is None:
        raise NotFound("There is nothing at / yet: the API is under /api/v1, its docs at /docs.")
    view = ACTIONS.get(action)
    if view is None:
        raise InvalidInput({"action": [f"must be one of {', '.join(ACTIONS)}"]})
    if services().config["stream"]["aliases_require_auth"]:
        view = auth.login_required(view)
    return view()
