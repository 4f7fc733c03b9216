"""Motion detection: its state and tuning, and a preview for drawing masks."""
from __future__ import annotations

from flask import Response

from . import bp
from .camera import IMAGE_RESPONSE
from .common import errors, operator, services, viewer
from .schemas import Motion, MotionPatch


@bp.get("/motion")
@viewer
@bp.output(Motion)
@bp.doc(summary="Motion detection: on or off, the score now, the last events, counters, CPU cost",
        responses=errors())
def get_motion():
    return services().motion.status()


@bp.patch("/motion")
@operator
@bp.input(MotionPatch, arg_name="changes", example={"enabled": True, "sensitivity": 60,
                                                      "masks": [{"x": 0, "y": 0, "w": 1, "h": 0.1}]})
@bp.output(Motion)
@bp.doc(summary="Switch motion detection on or off and tune it",
        description="The changes are kept across restarts. Switching on with a camera backend "
                    "that has no small luma frames answers 409 saying what motion needs.",
        responses=errors(400, 403, 409, 413, 415, 422))
def patch_motion(changes: dict):
    return services().motion.update(changes)


@bp.get("/motion/preview.jpg")
@viewer
@bp.doc(summary="The detector's frame with the masks (blue), changed pixels (red) and their box "
                "(green) drawn", responses={200: IMAGE_RESPONSE, **errors(409, 503)})
def motion_preview():
    return Response(services().motion.preview_jpeg(), mimetype="image/jpeg",
                    headers={"Cache-Control": "no-store"})
