"""Rules that the config, the HTTP layer's schemas and the GPIO triggers share.

Below all three, so each takes them from here rather than from another:

- ``number``, ``boolean`` and ``choice`` check config values (and GPIO device
  options, which live in the config): one line of reason each, as ValueError;
- ``CaptureRequest`` is the capture request of POST /api/v1/photos, which a GPIO
  trigger's ``settings`` take too (``check_capture_request``), so both accept
  exactly the same; ``RUNTIME`` marks the fields whose bounds openapi.py fills
  in from this camera and this config.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from apiflask import Schema, fields
from apiflask.validators import Length, OneOf, Range
from marshmallow import ValidationError

from .camera.base import FORMATS

# Field metadata naming the runtime value that bounds the field (openapi.RULES).
RUNTIME = "x-runtime-bound"


def number(kind: type, lo: float | None = None, hi: float | None = None) -> Callable:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = kind(value)
            except ValueError:
                raise ValueError(f"must be {kind.__name__}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be {kind.__name__}")
        if kind is int and not float(value).is_integer():
            raise ValueError("must be int")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError(f"must be between {lo} and {hi}" if hi is not None
                             else f"must be at least {lo}")
        return kind(value)
    return check


def boolean(value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def choice(*choices: str) -> Callable:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return check


class StrictBoolean(fields.Boolean):
    """JSON booleans only.

    marshmallow's Boolean takes "yes", "on" and 1; even ``truthy={True}`` lets 1
    and 0 through, because ``1 in {True}`` holds in Python.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class JsonInteger(fields.Integer):
    """JSON integers: 3, and 3.0 as JSON Schema counts it; not 3.5, "3" or true."""

    def _deserialize(self, value, attr, data, **kwargs):
        # float(value) of a huge int overflows: ask a float only of floats.
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not value.is_integer())):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(int(value), attr, data, **kwargs)


def controls_field(bound: str) -> fields.Dict:
    # Values may be null here so that settings.check_control names the bad one as
    # "controls.<name>" with the camera's own rule, like any other wrong value.
    return fields.Dict(keys=fields.String(validate=Length(1, 64)),
                       values=fields.Raw(allow_none=True), validate=Length(max=32),
                       metadata={"description": "Advertised control names to values; "
                                                "see GET /api/v1/camera", RUNTIME: bound})


class CaptureRequest(Schema):
    """Capture settings; anything left out comes from the camera defaults."""

    width = JsonInteger(validate=Range(16, 20000),
                         metadata={"description": "16 up to the sensor width",
                                   RUNTIME: "sensor_width"})
    height = JsonInteger(validate=Range(16, 20000),
                          metadata={"description": "16 up to the sensor height",
                                    RUNTIME: "sensor_height"})
    format = fields.String(validate=OneOf(FORMATS))
    quality = JsonInteger(validate=Range(1, 100), metadata={"description": "JPEG quality"})
    hflip = StrictBoolean()
    vflip = StrictBoolean()
    controls = controls_field("controls")




def check_capture_request(settings: Any) -> dict:
    """``settings`` (a dict) loaded as a CaptureRequest; ValueError("field: reason") for
    the first bad field."""
    try:
        return CaptureRequest().load(settings)
    except ValidationError as exc:
        field_name, messages = next(iter(exc.normalized_messages().items()))
        raise ValueError(f"{field_name}: {_first(messages)}") from None


def _first(messages: Any) -> str:
    """The first message of a marshmallow error, however deeply nested."""
    while isinstance(messages, (list, dict)):
        messages = next(iter(messages.values() if isinstance(messages, dict) else messages))
    return str(messages)
