"""WebRTC live view: POST /api/v1/stream/whep (WHEP), DELETE the session it made."""
from __future__ import annotations

from flask import Response, request, url_for

from ..auth import auth, stream_auth
from ..errors import UnsupportedMediaType
from ..request_rules import accepts
from . import bp
from .common import errors, services, viewer
from .schemas import WhepQuery

SDP = "application/sdp"


@bp.post("/stream/whep")
@accepts(SDP)
@bp.auth_required(stream_auth)
@bp.input(WhepQuery, location="query", arg_name="query")
@bp.doc(summary="Live view over WebRTC: send an SDP offer, get the answer (WHEP)",
        description="The body is the offer (`Content-Type: application/sdp`, all ICE "
                    "candidates in it); the 201 answer is the SDP answer, and its `Location` "
                    "is the session, which DELETE ends. H.264 only: every viewer gets the "
                    "packets of one encoder per size, from its next keyframe. Host "
                    "candidates only unless `stream.h264.stun_urls` is set. The URL shape "
                    "is MediaMTX's, so WHEP players and Mainsail's \"WebRTC (MediaMTX)\" "
                    "work; a player that cannot send credentials uses a ticket from POST "
                    "/api/v1/stream/urls?stream=whep. More than `stream.h264.max_peers` "
                    "viewers get 503 with Retry-After. See docs/h264.md.",
        responses={201: {"description": "The SDP answer",
                         "content": {SDP: {"schema": {"type": "string"}}}},
                   **errors(400, 415, 422, 503)})
def whep_offer(query: dict):
    if request.mimetype != SDP:
        raise UnsupportedMediaType(f"send the offer as {SDP}")
    session, answer = services().whep.offer(request.get_data(as_text=True), query.get("size"),
                                            auth.current_user.name)
    location = url_for("api.whep_session", session_id=session.id)
    return Response(answer, status=201, content_type=SDP,
                    headers={"Location": location, "Cache-Control": "no-store"})


@bp.delete("/stream/whep/<session_id>")
@viewer
@bp.output({}, status_code=204)
@bp.doc(summary="End a WebRTC session", description="Frees its viewer slot. A viewer may "
        "end its own sessions, an operator any.", responses=errors(404))
def whep_session(session_id: str):
    user = auth.current_user
    services().whep.end(session_id, None if "operator" in user.roles else user.name)
    return ""
