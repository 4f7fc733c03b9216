"""Request and response schemas: the OpenAPI document is built from these."""
from __future__ import annotations

from apiflask import Schema, fields
from apiflask.validators import Length, OneOf, Range

from ..camera.base import FORMATS



def _bool() -> fields.Boolean:
    # JSON booleans only: marshmallow would also take "yes", 1 and "on".
    return fields.Boolean(truthy={True}, falsy={False})


class CaptureRequest(Schema):
    """Capture settings; anything left out comes from the camera defaults."""

    width = fields.Integer(strict=True, validate=Range(16, 20000),
                           metadata={"description": "16 up to the sensor width"})
    height = fields.Integer(strict=True, validate=Range(16, 20000),
                            metadata={"description": "16 up to the sensor height"})
    format = fields.String(validate=OneOf(FORMATS))
    quality = fields.Integer(strict=True, validate=Range(1, 100),
                             metadata={"description": "JPEG quality"})
    hflip = _bool()
    vflip = _bool()
    controls = fields.Dict(keys=fields.String(validate=Length(1, 64)), values=fields.Raw(),
                           validate=Length(max=32),
                           metadata={"description": "Advertised control names to values; "
                                                    "see GET /api/v1/camera"})


class SnapshotQuery(Schema):
    width = fields.Integer(validate=Range(16, 20000))
    height = fields.Integer(validate=Range(16, 20000))
    quality = fields.Integer(validate=Range(1, 100))


class Settings(Schema):
    width = fields.Integer()
    height = fields.Integer()
    format = fields.String()
    quality = fields.Integer()
    hflip = fields.Boolean()
    vflip = fields.Boolean()
    controls = fields.Dict()


class Camera(Schema):
    backend = fields.String(metadata={"description": "mock or picamera2"})
    defaults = fields.Nested(Settings)
    capabilities = fields.Dict(metadata={"description": "model, sensor_size, formats, "
                                                        "even_sizes, controls {name: {min, max, default}}"})


class PhotoLinks(Schema):
    self = fields.String()
    image = fields.String()
    thumbnail = fields.String()


class Photo(Schema):
    id = fields.String()
    taken_at = fields.String(metadata={"description": "ISO 8601 UTC with microseconds"})
    width = fields.Integer()
    height = fields.Integer()
    format = fields.String()
    bytes = fields.Integer()
    settings = fields.Nested(Settings)
    metadata = fields.Dict()
    source = fields.String(metadata={"description": "api, timelapse or gpio"})
    timelapse_id = fields.String(allow_none=True)
    sequence = fields.Integer(allow_none=True)
    trigger = fields.String(allow_none=True)
    links = fields.Nested(PhotoLinks)


class PhotoPage(Schema):
    items = fields.List(fields.Nested(Photo))
    next = fields.String(allow_none=True, metadata={"description": "URL of the next page, or null"})


class PhotoQuery(Schema):
    limit = fields.Integer(load_default=50, validate=Range(1, 500))
    cursor = fields.String(validate=Length(1, 512))
    timelapse = fields.String(validate=Length(1, 64),
                              metadata={"description": "Only frames of this time-lapse"})


class Token(Schema):
    token = fields.String()
    expires_at = fields.String()
    user = fields.String()
    role = fields.String()


class Health(Schema):
    status = fields.String(metadata={"description": "ok, or unavailable (503)"})
    camera = fields.Dict()
    version = fields.String()


class Info(Schema):
    version = fields.String()
    backend = fields.String()
    camera = fields.Dict()
    storage = fields.Dict()
    uptime_s = fields.Float()
    counts = fields.Dict()
