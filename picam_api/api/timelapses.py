"""Time-lapse jobs: create, list, control, delete, download."""
from __future__ import annotations

from flask import Response

from .. import resources
from ..timelapse import Job
from ..timelapse.archive import zip_stream
from . import bp
from .common import errors, operator, services, viewer
from .pages import page_response
from .schemas import (PageQuery, Timelapse, TimelapseCreate, TimelapseDeleteQuery,
                      TimelapsePage, TimelapsePatch)


def job_body(job: Job) -> dict:
    """The time-lapse resource, with today's window by the time-lapse service's clock."""
    return resources.timelapse(job, services().timelapses.clock.time())


@bp.post("/timelapses")
@operator
@bp.input(TimelapseCreate, arg_name="body", example={"name": "garden", "interval_s": 10,
                                                     "frames": 360, "width": 640,
                                                     "height": 480, "quality": 85})
@bp.output(Timelapse, status_code=201, headers={"Location": {"type": "string"}})
@bp.doc(summary="Create a time-lapse job", responses=errors(400, 403, 409, 413, 415, 503))
def create_timelapse(body: dict):
    job = job_body(services().timelapses.create(body))
    return job, 201, {"Location": job["links"]["self"]}


@bp.get("/timelapses")
@viewer
@bp.input(PageQuery, location="query", arg_name="query")
@bp.output(TimelapsePage)
@bp.doc(summary="Time-lapse jobs, newest first", responses=errors(400))
def list_timelapses(query: dict):
    timelapses = services().timelapses
    return page_response("api.list_timelapses", timelapses.list(query["limit"], query.get("cursor")),
                         job_body, query, timelapses.count)


@bp.get("/timelapses/<job_id>")
@viewer
@bp.output(Timelapse)
@bp.doc(summary="One job with its state and progress", responses=errors())
def get_timelapse(job_id: str):
    return job_body(services().timelapses.get(job_id))


@bp.patch("/timelapses/<job_id>")
@operator
@bp.input(TimelapsePatch, arg_name="body", example={"state": "paused"})
@bp.output(Timelapse)
@bp.doc(summary="Pause, resume or cancel a job", responses=errors(400, 403, 409, 413, 415))
def patch_timelapse(job_id: str, body: dict):
    timelapses = services().timelapses
    timelapses.get(job_id)  # 404 before 409 for an unknown id
    return job_body(timelapses.set_state(job_id, body["state"]))


@bp.delete("/timelapses/<job_id>")
@operator
@bp.input(TimelapseDeleteQuery, location="query", arg_name="query")
@bp.output({}, status_code=204)
@bp.doc(summary="Remove a finished job (and its frames with ?frames=true)",
        responses=errors(403, 409))
def delete_timelapse(job_id: str, query: dict):
    services().timelapses.delete(job_id, query["frames"])
    return ""


@bp.get("/timelapses/<job_id>/archive.zip")
@viewer
@bp.doc(summary="All frames as a zip, in sequence order, streamed",
        responses={200: {"description": "A zip of the frames, named by sequence number",
                         "content": {"application/zip": {"schema": {"type": "string",
                                                                    "format": "binary"}}}},
                   **errors()})
def timelapse_archive(job_id: str):
    svc = services()
    frames = svc.timelapses.frames(job_id)
    return Response(zip_stream(frames, svc.photos), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="timelapse-{job_id}.zip"'})
