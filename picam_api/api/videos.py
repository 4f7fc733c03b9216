"""Videos: render a time-lapse, record a clip, list, cancel, delete, play."""
from __future__ import annotations

import datetime as dt

from flask import request, send_file

from ..resources import video as video_body
from ..video import Video
from . import bp
from .common import errors, operator, services, viewer
from .pages import page_response
from .photos import IMMUTABLE
from .schemas import Video as VideoSchema
from .schemas import VideoCreate, VideoPage, VideoPatch, VideoQuery

MP4 = {"description": "The MP4 (H.264, yuv420p, index first); Range requests give 206",
       "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}}


@bp.post("/videos")
@operator
@bp.input(VideoCreate, arg_name="body", example={"timelapse": "20260101T070000000000Z-0a1b2c3d",
                                                 "fps": 25, "width": 1920})
@bp.output(VideoSchema, status_code=202, headers={"Location": {"type": "string"}})
@bp.doc(summary="Render a time-lapse or record a clip",
        description="With `timelapse`, queue a render of its frames (the frames so far, if it "
                    "is still running); with `duration_s`, record a clip from the camera, "
                    "starting `video.preroll_s` before now. Poll the Location for the state.",
        responses=errors(400, 403, 404, 409, 413, 415, 503, 507))
def create_video(body: dict):
    video = video_body(services().videos.create(body))
    return video, 202, {"Location": video["links"]["self"]}


@bp.get("/videos")
@viewer
@bp.input(VideoQuery, location="query", arg_name="query")
@bp.output(VideoPage)
@bp.doc(summary="Videos, newest first, a page at a time", responses=errors(400))
def list_videos(query: dict):
    videos, timelapse, source = services().videos, query.get("timelapse"), query.get("source")
    page = videos.list(query["limit"], query.get("cursor"), timelapse, source)
    return page_response("api.list_videos", page, video_body, query,
                         lambda: videos.store.count_matching(timelapse, source),
                         timelapse=timelapse, source=source)


@bp.get("/videos/<video_id>")
@viewer
@bp.output(VideoSchema)
@bp.doc(summary="One video: state, progress and links", responses=errors())
def get_video(video_id: str):
    return video_body(services().videos.get(video_id))


@bp.patch("/videos/<video_id>")
@operator
@bp.input(VideoPatch, arg_name="body", example={"state": "cancelled"})
@bp.output(VideoSchema)
@bp.doc(summary="Cancel a queued, rendering or recording video (nothing of it is kept)",
        responses=errors(400, 403, 409, 413, 415))
def patch_video(video_id: str, body: dict):
    return video_body(services().videos.cancel(video_id))


@bp.delete("/videos/<video_id>")
@operator
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a finished video and its file", responses=errors(403, 409))
def delete_video(video_id: str):
    services().videos.delete(video_id)
    return ""


@bp.get("/videos/<video_id>/video.mp4")
@viewer
@bp.doc(summary="The MP4 (ETag, Last-Modified, Range: 206, 416)",
        responses={200: MP4, 206: MP4, 304: "Not modified", 416: "Range not satisfiable",
                   **errors(409)})
def video_file(video_id: str):
    videos = services().videos
    video = videos.get(video_id)
    path = videos.file(video)
    if request.range is not None and len(request.range.ranges) > 1:
        # Werkzeug answers a multi-range request 416; RFC 9110 lets a server ignore the
        # Range header instead and send it all (no player asks for several at once).
        request.environ.pop("HTTP_RANGE")
    response = send_file(path, mimetype="video/mp4", etag=f"v-{video.id}-{video.bytes}",
                         last_modified=_finished(video), conditional=True)
    response.headers["Cache-Control"] = IMMUTABLE
    return response


@bp.get("/videos/<video_id>/thumbnail")
@viewer
@bp.doc(summary="A JPEG of the video's first frame",
        responses={200: {"description": "A JPEG", "content": {"image/jpeg": {
            "schema": {"type": "string", "format": "binary"}}}}, 304: "Not modified",
            **errors(409, 507)})
def video_thumbnail(video_id: str):
    videos = services().videos
    video = videos.get(video_id)
    response = send_file(videos.thumbnail(video), mimetype="image/jpeg",
                         etag=f"vt-{video.id}", last_modified=_finished(video), conditional=True)
    response.headers["Cache-Control"] = IMMUTABLE
    return response


def _finished(video: Video) -> dt.datetime:
    return dt.datetime.fromisoformat(video.finished_at or video.created_at)
