"""The camera: its defaults and capabilities, and snapshots that store nothing."""
from __future__ import annotations

from flask import Response

from . import bp
from .common import errors, operator, services, viewer
from .schemas import Camera, CameraPatch, SnapshotQuery

IMAGE_RESPONSE = {"description": "A JPEG", "content": {"image/jpeg": {"schema": {
    "type": "string", "format": "binary"}}}}


def _camera_body() -> dict:
    svc = services()
    return {"backend": svc.backend.name, "defaults": svc.capture.defaults(),
            "capabilities": svc.owner.capabilities.to_dict()}


@bp.get("/camera")
@viewer
@bp.output(Camera)
@bp.doc(summary="Capture defaults and what the camera can do", responses=errors(503))
def get_camera():
    return _camera_body()


@bp.patch("/camera")
@operator
@bp.input(CameraPatch, arg_name="changes", example={"quality": 80, "hflip": True,
                                                      "controls": {"Brightness": 0.1}})
@bp.output(Camera)
@bp.doc(summary="Change the capture defaults", responses=errors(400, 403, 413, 415, 503))
def patch_camera(changes: dict):
    services().capture.update_defaults(changes)
    return _camera_body()


@bp.get("/snapshot.jpg")
@viewer
@bp.input(SnapshotQuery, location="query", arg_name="query")
@bp.doc(summary="Capture now and return a JPEG; nothing is stored",
        responses={200: IMAGE_RESPONSE, **errors(503)})
def snapshot(query: dict):
    return snapshot_response(query)


def snapshot_response(query: dict) -> Response:
    """A JPEG captured now for ``query``; the mjpg-streamer alias serves it too."""
    capture = services().capture.snapshot({**query, "format": "jpeg"})
    return Response(capture.data, mimetype="image/jpeg",
                    headers={"Cache-Control": "no-store"})
