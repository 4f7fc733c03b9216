"""Stored photos: take, list, fetch, delete."""
from __future__ import annotations

from flask import Response, send_file
from werkzeug.http import http_date

from ..resources import photo as photo_body
from . import bp
from .common import errors, operator, services, viewer
from .pages import page_response
from .schemas import CaptureRequest, PhotoPage, PhotoQuery
from .schemas import Photo as PhotoSchema

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}
IMMUTABLE = "private, max-age=31536000, immutable"
IMAGE_RESPONSE = {"description": "The image", "content": {
    media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()}}


@bp.post("/photos")
@operator
@bp.input(CaptureRequest, arg_name="requested", example={"width": 640, "height": 480,
                                                            "quality": 85})
@bp.output(PhotoSchema, status_code=201, headers={"Location": {"type": "string"}})
@bp.doc(summary="Take a photo and store it", responses=errors(400, 403, 413, 415, 503, 507))
def create_photo(requested: dict):
    photo = services().capture.take_photo(requested)
    body = photo_body(photo)
    return body, 201, {"Location": body["links"]["self"]}


@bp.get("/photos")
@viewer
@bp.input(PhotoQuery, location="query", arg_name="query")
@bp.output(PhotoPage)
@bp.doc(summary="Photos, newest first, a page at a time", responses=errors(400))
def list_photos(query: dict):
    store, timelapse = services().photos, query.get("timelapse")
    page = store.list(query["limit"], query.get("cursor"), timelapse)
    return page_response("api.list_photos", page, photo_body, query,
                         lambda: store.count(timelapse), timelapse=timelapse)


@bp.get("/photos/<photo_id>")
@viewer
@bp.output(PhotoSchema)
@bp.doc(summary="One photo's metadata and links", responses=errors())
def get_photo(photo_id: str):
    photo = services().photos.get(photo_id)
    return photo_body(photo), 200, {"Last-Modified": http_date(photo.taken_at_datetime)}


@bp.delete("/photos/<photo_id>")
@operator
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a photo, its file and its thumbnail", responses=errors(403))
def delete_photo(photo_id: str):
    services().photos.delete(photo_id)
    return ""


@bp.get("/photos/<photo_id>/image")
@viewer
@bp.doc(summary="The image file (cacheable: ETag, Last-Modified, 304)",
        responses={200: IMAGE_RESPONSE, 304: "Not modified", **errors()})
def photo_image(photo_id: str):
    store = services().photos
    photo = store.get(photo_id)
    return _immutable(send_file(store.open_image(photo), mimetype=MEDIA_TYPES[photo.format],
                                etag=photo.etag, last_modified=photo.taken_at_datetime,
                                conditional=True))


@bp.get("/photos/<photo_id>/thumbnail")
@viewer
@bp.doc(summary="A small JPEG of the photo",
        responses={200: {"description": "A JPEG", "content": {"image/jpeg": IMAGE_RESPONSE[
            "content"]["image/jpeg"]}}, 304: "Not modified",
            500: "The stored image is damaged and cannot be decoded", **errors(507)})
def photo_thumbnail(photo_id: str):
    store = services().photos
    photo = store.get(photo_id)
    return _immutable(send_file(store.open_thumbnail(photo), mimetype="image/jpeg",
                                etag=f"t-{photo.etag}", last_modified=photo.taken_at_datetime,
                                conditional=True))


def _immutable(response: Response) -> Response:
    # A photo never changes once taken, so clients may keep it for a year.
    response.headers["Cache-Control"] = IMMUTABLE
    return response


