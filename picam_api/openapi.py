"""The OpenAPI document says exactly what the API accepts.

Clients and fuzzers (schemathesis in the tests) generate requests from it, so a
rule the server enforces but the document leaves out looks like a server that
refuses valid input. Three things close that gap:

- ``JsonSchemaRules``, an apispec plugin, writes what apispec leaves out or gets
  wrong for marshmallow: exclusive ``Range`` bounds, ``Length`` on a ``Dict``
  (a count of properties, not a string length), the key rule of a ``Dict``, and
  schema-wide rules a schema class declares in ``Meta.json_schema``.
- Fields whose bounds depend on this camera or this config carry a ``RUNTIME``
  marker in their metadata; ``init_app``'s spec processor fills them in: the
  sensor size, the advertised controls, ``timelapse.min_interval_s`` and so on.
- A request body with required fields is marked required (APIFlask never does).
- Statuses that every route inherits rather than declares are documented on
  each: from auth (429, 503) and, on state-changing routes, from
  ``request_rules`` (400, 403, 415) and a full disk (507).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

import marshmallow
from apiflask import APIFlask
from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls

from .camera.settings import control_schema
from .errors import CameraError
from .request_rules import STATE_CHANGING
from .rules import RUNTIME

if TYPE_CHECKING:
    from .camera import CameraOwner

log = logging.getLogger(__name__)



class JsonSchemaRules(BasePlugin):
    """Fixes apispec's marshmallow conversion for the rules this API's schemas use."""

    def init_spec(self, spec: APISpec) -> None:
        # APIFlask lists its MarshmallowPlugin first, so its converter exists by now.
        for plugin in spec.plugins:
            if isinstance(plugin, MarshmallowPlugin):
                plugin.converter.add_attribute_function(_field_rules)

    def schema_helper(self, name: str, definition: dict, **kwargs: Any) -> dict | None:
        schema = kwargs.get("schema")
        meta = getattr(resolve_schema_cls(schema), "Meta", None) if schema is not None else None
        return getattr(meta, "json_schema", None)


def _field_rules(self, field: marshmallow.fields.Field, ret: dict, **kwargs: Any) -> dict:
    """An apispec attribute function (bound to its converter, hence ``self``).

    OpenAPI 3.1 (JSON Schema 2020-12) spells an exclusive bound as a number of its
    own; apispec writes ``min_inclusive=False`` as an inclusive ``minimum``.
    """
    extra: dict = {}
    for validator in field.validators:
        if isinstance(validator, marshmallow.validate.Range):
            if validator.min is not None and not validator.min_inclusive:
                ret.pop("minimum", None)
                extra["exclusiveMinimum"] = validator.min
            if validator.max is not None and not validator.max_inclusive:
                ret.pop("maximum", None)
                extra["exclusiveMaximum"] = validator.max
    if isinstance(field, marshmallow.fields.Dict):
        for length, count in (("minLength", "minProperties"), ("maxLength", "maxProperties")):
            if length in ret:
                extra[count] = ret.pop(length)
        if field.key_field is not None and field.key_field.validators:
            extra["propertyNames"] = self.field2property(field.key_field)
    return extra


def _sensor_axis(axis: int) -> Callable:
    def bound(node: dict, caps, config: dict) -> None:
        if caps is not None:
            node["maximum"] = caps.sensor_size[axis]
            if caps.even_sizes:
                node["multipleOf"] = 2
    return bound


def _controls(nullable: bool) -> Callable:
    def bound(node: dict, caps, config: dict) -> None:
        if caps is None:
            return
        schemas = {name: control_schema(info) for name, info in caps.controls.items()}
        others: dict | bool = False
        if nullable:
            # null removes a control from the defaults, as in a JSON merge patch, where
            # removing one that is not there changes nothing: any name may be null.
            schemas = {name: {"anyOf": [schema, {"type": "null"}]}
                       for name, schema in schemas.items()}
            others = {"type": "null"}
        node.update(properties=schemas, additionalProperties=others)
    return bound


def _min_interval(node: dict, caps, config: dict) -> None:
    node.pop("exclusiveMinimum", None)
    node["minimum"] = config["timelapse"]["min_interval_s"]


def _max_frames(node: dict, caps, config: dict) -> None:
    node["maximum"] = config["timelapse"]["max_frames"]


def _max_clip_duration(node: dict, caps, config: dict) -> None:
    node.pop("exclusiveMaximum", None)
    node["maximum"] = config["video"]["max_duration_s"]


def _clip_limits(node: dict, caps, config: dict) -> None:
    video = config["video"]
    width, height = video["max_clip_size"]
    node["properties"] = {"width": {"maximum": width}, "height": {"maximum": height},
                          "fps": {"maximum": video["max_fps"]}}


def _stream_size(node: dict, caps, config: dict) -> None:
    node["enum"] = [f"{width}x{height}" for width, height in config["stream"]["sizes"]]


def _webhook_url(node: dict, caps, config: dict) -> None:
    from .webhooks.http import url_pattern
    node["pattern"] = url_pattern(config["webhooks"]["allowed_hosts"])


RULES: dict[str, Callable[[dict, Any, dict], None]] = {
    "sensor_width": _sensor_axis(0),
    "sensor_height": _sensor_axis(1),
    "controls": _controls(nullable=False),
    "controls_or_null": _controls(nullable=True),
    "min_interval": _min_interval,
    "max_frames": _max_frames,
    "stream_size": _stream_size,
    "max_clip_duration": _max_clip_duration,
    "clip_limits": _clip_limits,
    "webhook_url": _webhook_url,
}


def init_app(app: APIFlask, owner: CameraOwner, config: dict) -> None:
    """Add this app's runtime bounds to its document, after any processor already set.

    APIFlask builds the document once, at the first request for it; a camera that
    cannot be opened then leaves the generic bounds in it until a restart.
    """
    previous = app.spec_callback

    @app.spec_processor
    def _runtime_bounds(spec: dict) -> dict:
        spec = previous(spec) if previous else spec
        try:
            caps = owner.capabilities
        except CameraError as exc:
            # The API still checks every request against the camera once it opens.
            log.warning("the OpenAPI document has no camera limits: %s", exc.detail)
            caps = None
        _fill(spec, caps, config)
        _require_bodies(spec)
        _inherited_statuses(spec)
        return spec


def _fill(node: Any, caps, config: dict) -> None:
    if isinstance(node, dict):
        marker = node.pop(RUNTIME, None)
        for value in node.values():
            _fill(value, caps, config)
        if marker is not None:
            RULES[marker](node, caps, config)
    elif isinstance(node, list):
        for value in node:
            _fill(value, caps, config)


def _require_bodies(spec: dict) -> None:
    schemas = spec.get("components", {}).get("schemas", {})
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if not body:
                continue
            for media in body["content"].values():
                ref = media.get("schema", {}).get("$ref", "")
                if schemas.get(ref.rsplit("/", 1)[-1], {}).get("required"):
                    body["required"] = True


INHERITED = {
    "auth": {429: "Too many failed logins or new tokens; see Retry-After",
             503: "Too many logins at once, or the camera is unavailable; see Retry-After"},
    "state": {400: "Malformed request, or JSON nested too deep or with too long a number",
              403: "Needs the operator role, or sent by a page of another site",
              412: "If-Match was sent and the resource no longer matches it: read it again",
              415: "Not application/json (see docs/security.md)",
              507: "Below the free-space reserve, or disk full"},
}


def _header(description: str) -> dict:
    return {"description": description, "schema": {"type": "integer"}}


RETRY_AFTER = {"Retry-After": _header("seconds to wait before trying again")}
# limits.Quota: what a 429 says besides Retry-After.
RATE_LIMITED = {**RETRY_AFTER,
                "RateLimit-Limit": _header("how many the limit allows in its window"),
                "RateLimit-Remaining": _header("how many are left: 0"),
                "RateLimit-Reset": _header("seconds until one more is allowed")}
HEADERS_OF = {429: RATE_LIMITED, 503: RETRY_AFTER}


def _inherited_statuses(spec: dict) -> None:
    """Add the inherited statuses, and the headers every 429 and 503 carries."""
    problem = {"application/problem+json": {"schema": {
        "$ref": "#/components/schemas/ProblemSchema"}}}
    for path in spec.get("paths", {}).values():
        for method, operation in path.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = dict(INHERITED["auth"]) if operation.get("security") else {}
            if method.upper() in STATE_CHANGING:
                statuses.update(INHERITED["state"])
            for status, description in statuses.items():
                operation["responses"].setdefault(
                    str(status), {"description": description, "content": problem})
            for status, headers in HEADERS_OF.items():
                response = operation["responses"].get(str(status))
                if response is not None:
                    response.setdefault("headers", {}).update(headers)
