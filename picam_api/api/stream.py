"""Live view: GET /api/v1/stream.mjpg, MJPEG as ``multipart/x-mixed-replace``."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, request, url_for

from ..auth import auth, stream_auth
from ..clock import iso
from ..long_lived import hold_open
from ..streaming import BOUNDARY, CONTENT_TYPE
from . import bp
from .common import errors, services, viewer
from .schemas import StreamQuery, StreamUrl

MJPEG_RESPONSE = {
    "description": f"An endless `{CONTENT_TYPE}` body. Each part has `Content-Type: "
                   "image/jpeg` and `Content-Length` headers and one JPEG.",
    "content": {"multipart/x-mixed-replace": {"schema": {"type": "string", "format": "binary"}}},
}


@bp.get("/stream.mjpg")
@bp.auth_required(stream_auth)
@bp.input(StreamQuery, location="query", arg_name="query")
@bp.doc(summary="Live view as MJPEG (browsers, ffmpeg, VLC, Home Assistant, OctoPrint)",
        description="Every client gets the newest frame; a slow one skips frames. "
                    "`X-Framerate` gives the frames per second sent (MJPEG has no timing: "
                    "ffmpeg and OpenCV assume 25 unless told; see docs/integrations.md). "
                    "Clients beyond `stream.max_clients` get 503 with Retry-After. The same stream "
                    f"is at `/?action=stream` for mjpg-streamer clients. Boundary: `{BOUNDARY}`.",
        responses={200: MJPEG_RESPONSE, **errors(422, 503)})
def stream(query: dict):
    return stream_response(query)


@bp.post("/stream/urls")
@viewer
@bp.output(StreamUrl, status_code=201)
@bp.doc(summary="A signed live-view URL, for an <img> that cannot send credentials",
        description="The URL carries a `ticket`: valid once, for `stream.url_ttl_s` seconds, "
                    "for a GET of the stream only, never for anything else. It is signed "
                    "by the server and holds no password or token. Add `size` and `fps` "
                    "to it as to any stream URL.",
        responses=errors())
def create_stream_url():
    path = url_for("api.stream")
    ticket, expires = services().stream_urls.issue(auth.current_user.name, path)
    return {"url": f"{path}?{urlencode({'ticket': ticket})}", "expires_at": iso(expires)}


def stream_response(query: dict) -> Response:
    """The MJPEG response for ``size`` and ``fps`` in ``query``; the alias serves it too."""
    subscription = services().streams.subscribe(query.get("size"), query.get("fps"))
    # About one frame buffered: a viewer that pauses resumes at the live picture, and
    # one that stops reading is dropped (long_lived.py).
    hold_open(request.environ, subscription.part_bytes())
    # MJPEG carries no timing, and ffmpeg and OpenCV assume 25 fps; a reader that
    # honours X-Framerate (or a person choosing ffmpeg's -r) can know the real rate.
    response = Response(subscription.parts(), content_type=CONTENT_TYPE,
                        headers={"Cache-Control": "no-store",
                                 "X-Framerate": f"{subscription.fps:g}"})
    # A body the server never started (the client left first) never runs the
    # generator's own clean-up, so closing the response frees the slot too.
    response.call_on_close(subscription.close)
    return response
