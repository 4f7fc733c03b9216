"""Request and response schemas: the OpenAPI document is built from these."""
from __future__ import annotations

from apiflask import Schema, fields
from apiflask.validators import Equal, Length, OneOf, Range, Regexp
from marshmallow import ValidationError, validates_schema

# The capture request's rules live below both this layer and the GPIO triggers.
from ..rules import RUNTIME, CaptureRequest
from ..rules import JsonInteger as _JsonInteger
from ..rules import StrictBoolean as _StrictBoolean
from ..rules import controls_field as _controls
from ..motion_rules import MAX_MASKS
from ..motion_rules import SCHEMA as MASK_SCHEMA
from ..timelapse.service import HORIZON_S

MIN_FPS = 0.1
# The shortest time a request may give: a GPIO blink of less is a busy loop.
MIN_SECONDS = 0.01


class _Pattern(Regexp):
    """A pattern the whole value must match, as JSON Schema reads ``^...$``.

    ``re.match`` lets ``$`` match before a final newline ("07:00\\n" passed), and
    Python's ``\\d`` and ``\\w`` take non-ASCII digits and letters where JSON Schema's
    do not, so patterns spell their classes out in ASCII.
    """

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class CameraPatch(CaptureRequest):
    """New capture defaults; a control set to null is removed from them."""

    controls = _controls("controls_or_null")


class SnapshotQuery(Schema):
    width = fields.Integer(validate=Range(16, 20000), metadata={RUNTIME: "sensor_width"})
    height = fields.Integer(validate=Range(16, 20000), metadata={RUNTIME: "sensor_height"})
    quality = fields.Integer(validate=Range(1, 100))


class StreamQuery(Schema):
    # The floor is stream.fps's own: a frame every ten seconds at the slowest.
    fps = fields.Float(validate=Range(min=MIN_FPS),
                       metadata={"description": "Frames per second (default stream.fps); "
                                                "more than stream.max_fps gets stream.max_fps"})
    size = fields.String(metadata={"description": "WxH, one of stream.sizes (default: the "
                                                  "first)", "example": "640x480",
                                   RUNTIME: "stream_size"})


class WhepQuery(Schema):
    size = fields.String(metadata={"description": "WxH, one of stream.sizes (default: "
                                                  "stream.h264.size)", "example": "640x480",
                                   RUNTIME: "stream_size"})


class StreamUrlQuery(Schema):
    stream = fields.String(load_default="mjpeg", validate=OneOf(["mjpeg", "whep"]),
                           metadata={"description": "`mjpeg`: a URL to GET the MJPEG stream; "
                                                    "`whep`: a URL to POST a WebRTC offer to"})


class StreamUrl(Schema):
    url = fields.String(metadata={"description": "/api/v1/stream.mjpg?ticket=..."})
    expires_at = fields.String(metadata={"description": "the ticket is refused after this"})


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


class PageQuery(Schema):
    """The query of every list (api/pages.py); a list with filters subclasses it."""

    limit = fields.Integer(load_default=50, validate=Range(1, 500))
    cursor = fields.String(validate=Length(1, 512),
                           metadata={"description": "from a next or prev link; opaque"})
    count = fields.Boolean(load_default=False, metadata={
        "description": "true: also say how many items the whole list holds (count)"})


class PageLinks(Schema):
    self = fields.String()
    first = fields.String()
    next = fields.String(allow_none=True)
    prev = fields.String(allow_none=True, metadata={"description": "null on the first page"})


class ListPage(Schema):
    """The body of every list (api/pages.py); a list adds its ``items``."""

    next = fields.String(allow_none=True, metadata={"description": "URL of the next page, or null"})
    count = fields.Integer(metadata={"description": "with count=true: how many items the whole "
                                                    "list holds"})
    links = fields.Nested(PageLinks)


class PhotoPage(ListPage):
    items = fields.List(fields.Nested(Photo))


class PhotoQuery(PageQuery):
    timelapse = fields.String(validate=Length(1, 64),
                              metadata={"description": "Only frames of this time-lapse"})


class ApiRoot(Schema):
    name = fields.String()
    version = fields.String()
    links = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "description": "self, and each collection or document by name: photos, timelapses, "
                       "gpio, camera, stream, info, health, openapi, docs, ... (only those "
                       "this server has)"})


class RateLimitHeaders(Schema):
    """The IETF draft's RateLimit fields (limits.Quota), on the answers of a limited route."""

    limit = fields.Integer(data_key="RateLimit-Limit",
                           metadata={"description": "how many the limit allows in its window"})
    remaining = fields.Integer(data_key="RateLimit-Remaining",
                               metadata={"description": "how many are left"})
    reset = fields.Integer(data_key="RateLimit-Reset",
                           metadata={"description": "seconds until one more is allowed"})


class Token(Schema):
    token = fields.String()
    expires_at = fields.String()
    user = fields.String()
    role = fields.String()


class Health(Schema):
    status = fields.String(metadata={"description": "ok, or unavailable (503)"})
    camera = fields.Dict()
    database = fields.Dict(metadata={"description": "ok, and the error when it is unusable"})
    workers = fields.Dict(metadata={"description": "background threads by name: alive, "
                                                   "restarts (unexpected errors, each logged), "
                                                   "last_error, last_error_at"})
    version = fields.String()


class Info(Schema):
    version = fields.String()
    backend = fields.String()
    camera = fields.Dict()
    storage = fields.Dict(metadata={"description": "free_bytes, total_bytes, reserve_bytes, "
                                                   "recovery (what the last start-up recovered), "
                                                   "and for operators data_dir"})
    uptime_s = fields.Float()
    counts = fields.Dict()
    gpio = fields.Dict(metadata={"description": "pin_factory (gpiozero's class name), mock "
                                                "(true when pins are simulated), devices, "
                                                "capture_light"})
    stream = fields.Dict(metadata={"description": "live view: clients, max_clients, and the "
                                                  "sizes being produced"})
    h264 = fields.Dict(metadata={"description": "live H.264: enabled, the encoders running "
                                                "(size; encoding, the size it makes, which on a "
                                                "Pi is a running recording's; feeds, frames, "
                                                "bytes), encoders_started, "
                                                "webrtc (peers, max_peers) and rtsp (state, "
                                                "connections, last_error)"})
    video = fields.Dict(metadata={"description": "renders queued and rendering, whether a clip "
                                                 "is recording, and the pre-roll ring's frames, "
                                                 "bytes and seconds (null when off)"})
    events = fields.Dict(metadata={"description": "the event log (latest_id, oldest_id, keep, "
                                                  "queued, dropped) and sse {clients, max_clients}"})
    webhooks = fields.Dict(metadata={"description": "count, max"})
    mqtt = fields.Dict(metadata={"description": "enabled, and when it is: broker, connected, "
                                                "since, last_error, node_id, base_topic, ..."})


class _JsonNumber(fields.Float):
    """JSON numbers only: marshmallow's Float also takes "0.5" as a string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


def _seconds(what: str) -> fields.Field:
    return _JsonNumber(load_default=1.0, allow_nan=False, validate=Range(MIN_SECONDS, 3600),
                       metadata={"description": f"seconds {what} (default 1)"})


def _times() -> fields.Field:
    return _JsonInteger(allow_none=True, load_default=None, validate=Range(1, 1_000_000),
                        metadata={"description": "how many times; null (the default) "
                                                 "means until the next change"})


class GpioBlink(Schema):
    on_time = _seconds("on")
    off_time = _seconds("off")
    n = _times()


class GpioPulse(Schema):
    fade_in_time = _seconds("fading in")
    fade_out_time = _seconds("fading out")
    n = _times()


class GpioChange(Schema):
    """Exactly one action for an output device."""

    class Meta:
        json_schema = {"minProperties": 1, "maxProperties": 1}  # what _one_action checks

    value = _JsonNumber(allow_nan=False, validate=Range(0, 1),
                        metadata={"description": "0 or 1; 0.0 to 1.0 for pwm"})
    toggle = _StrictBoolean(validate=Equal(True), metadata={"description": "must be true"})
    blink = fields.Nested(GpioBlink, metadata={"description": "in the background, until "
                                                             "the next change"})
    pulse = fields.Nested(GpioPulse, metadata={"description": "pwm only: fade in and out"})

    @validates_schema
    def _one_action(self, data, **kwargs):
        if len(data) != 1:
            raise ValidationError("send exactly one of value, toggle, blink or pulse")


class GpioLinks(Schema):
    self = fields.String()


class GpioDevice(Schema):
    name = fields.String()
    kind = fields.String(metadata={"description": "led, output, buzzer, pwm, button or input"})
    pin = fields.String(metadata={"description": "gpiozero's BCM name, such as GPIO17"})
    value = fields.Raw(metadata={"type": "number", "description": "0 or 1; 0.0-1.0 for pwm"})
    last_changed = fields.String(allow_none=True, metadata={
        "description": "inputs: ISO 8601 UTC time of the last edge, null before the first"})
    edges = fields.Integer(metadata={"description": "inputs: edges seen since start-up"})
    triggers_fired = fields.Integer(metadata={"description": "inputs: trigger runs queued"})
    triggers_suppressed = fields.Integer(metadata={"description": "inputs: triggers skipped "
                                                                  "inside min_interval_s"})
    triggers_dropped = fields.Integer(metadata={"description": "inputs: triggers dropped "
                                                               "because the queue was full"})
    trigger_failures = fields.Integer(metadata={"description": "inputs: trigger actions that "
                                                               "failed"})
    last_error = fields.String(allow_none=True, metadata={"description": "inputs: the last "
                                                                         "trigger failure"})
    links = fields.Nested(GpioLinks)


class GpioDeviceItem(GpioDevice):
    """A GpioDevice in a GpioPage.

    APIFlask documents the list route first, and a schema it first meets nested
    it registers again under a second name ("GpioDevice1") when it meets it on
    its own; a subclass keeps both names plain.
    """


class GpioPage(Schema):
    items = fields.List(fields.Nested(GpioDeviceItem))
    next = fields.String(allow_none=True, metadata={"description": "always null: one page"})


HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


# A wall time, or a sun event with an optional offset of hours and/or minutes.
WINDOW_TIME = (r"^(([01][0-9]|2[0-3]):[0-5][0-9]|(dawn|sunrise|noon|sunset|dusk)"
               r"([+-]([0-9]{1,2}h([0-9]{1,3}m)?|[0-9]{1,3}m))?)$")
WINDOW_RULE = "must be HH:MM, or dawn, sunrise, noon, sunset or dusk with an offset like -30m or +1h15m"


class ActiveHours(Schema):
    start = fields.String(required=True, validate=_Pattern(WINDOW_TIME, error=WINDOW_RULE),
                          metadata={"example": "07:00"})
    end = fields.String(required=True, validate=_Pattern(WINDOW_TIME, error=WINDOW_RULE),
                        metadata={"example": "sunset+15m"})


class WindowToday(Schema):
    start = fields.String(metadata={"description": "ISO 8601 UTC"})
    end = fields.String(metadata={"description": "ISO 8601 UTC"})


class ActiveHoursOut(ActiveHours):
    today = fields.Nested(WindowToday, allow_none=True, metadata={
        "description": "the window of today (the Pi's local day) as computed; null when it "
                       "stays shut all day (polar night for a sunrise-sunset window)"})


class TimelapseCreate(CaptureRequest):
    """A new time-lapse: its schedule, plus capture settings at the same level."""

    class Meta:
        # At most one bound; the service says so naming each bound given.
        json_schema = {"not": {"anyOf": [{"required": list(pair)} for pair in (
            ("frames", "duration_s"), ("frames", "end_at"), ("duration_s", "end_at"))]}}

    name = fields.String(validate=_Pattern(r"^[A-Za-z0-9_ .:-]{1,64}$",
                                           error="1-64 ASCII letters, digits, spaces or . : _ -"))
    interval_s = _JsonNumber(required=True, allow_nan=False,
                             validate=Range(0, 30 * 86400, min_inclusive=False), metadata={
                                 "description": "seconds between frames, at least "
                                                "timelapse.min_interval_s",
                                 RUNTIME: "min_interval"})
    frames = _JsonInteger(validate=Range(1, 1_000_000_000), metadata={
        "description": "how many frames (one bound), at most timelapse.max_frames",
        RUNTIME: "max_frames"})
    duration_s = _JsonNumber(allow_nan=False, validate=Range(MIN_SECONDS, HORIZON_S),
                             metadata={"description": "how long (one bound), up to ten years"})
    end_at = fields.AwareDateTime(format="iso", metadata={
        "description": "when to stop (one bound), at most ten years from now"})
    start_at = fields.AwareDateTime(format="iso", metadata={
        "description": "ISO 8601 with offset; default now; at most ten years from now"})
    active_hours = fields.Nested(ActiveHours, metadata={
        "description": "daily window in the Pi's local time; may cross midnight; times may "
                       "follow the sun (sunrise-30m, sunset+15m, dawn, dusk, noon), which needs "
                       "location.latitude and location.longitude in the config"})


class TimelapsePatch(Schema):
    state = fields.String(required=True, validate=OneOf(("paused", "running", "cancelled")))


class TimelapseDeleteQuery(Schema):
    frames = fields.Boolean(load_default=False,
                            metadata={"description": "also delete the job's photos"})


class TimelapseLinks(Schema):
    self = fields.String()
    frames = fields.String()
    archive = fields.String()


class Timelapse(Settings):
    id = fields.String()
    name = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "scheduled, running, paused, completed, "
                                                   "cancelled or failed"})
    interval_s = fields.Float()
    frames = fields.Integer(allow_none=True)
    duration_s = fields.Float(allow_none=True)
    end_at = fields.String(allow_none=True, metadata={
        "description": "when the job ends: as given, or start_at plus duration_s; null when "
                       "only frames (or nothing) bounds it"})
    start_at = fields.String()
    active_hours = fields.Nested(ActiveHoursOut, allow_none=True)
    frames_captured = fields.Integer()
    frames_missed = fields.Integer()
    frames_failed = fields.Integer()
    next_frame_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)
    pause_reason = fields.String(allow_none=True, metadata={"description": "user or storage"})
    links = fields.Nested(TimelapseLinks)


class TimelapsePage(ListPage):
    items = fields.List(fields.Nested(Timelapse))


class _Even:
    """Even numbers only: yuv420p halves the colour planes."""

    def __call__(self, value):
        if value % 2:
            raise ValidationError("must be even")
        return value


# A resource id (picam_api.ids), spelt out in ASCII for JSON Schema.
ID = r"^[0-9]{8}T[0-9]{12}Z-[0-9a-f]{8}$"
RENDER_ONLY = ("timelapse", "first_frame", "last_frame", "deflicker", "timestamp", "crf")


class VideoCreate(Schema):
    """A render of a time-lapse (``timelapse`` given) or a clip (``duration_s`` given)."""

    class Meta:
        # A render or a clip; each takes only its own fields, and a clip's size and rate
        # are bounded by the config (filled in by openapi.py).
        json_schema = {"oneOf": [
            {"required": ["timelapse"], "not": {"required": ["duration_s"]}},
            {"required": ["duration_s"], RUNTIME: "clip_limits",
             "not": {"anyOf": [{"required": [key]} for key in RENDER_ONLY]}},
        ]}

    timelapse = fields.String(validate=_Pattern(ID, error="must be a time-lapse id"),
                              metadata={"description": "render this time-lapse's frames (its id)"})
    duration_s = _JsonNumber(allow_nan=False, validate=Range(0, 86400, min_inclusive=False),
                             metadata={"description": "record a clip this long (seconds after "
                                                      "the trigger; pre-roll comes on top), at "
                                                      "most video.max_duration_s",
                                       RUNTIME: "max_clip_duration"})
    fps = _JsonNumber(allow_nan=False, validate=Range(1, 120),
                      metadata={"description": "frames per second of the video (default "
                                               "video.render_fps for renders, video.fps for clips)"})
    width = _JsonInteger(validate=[Range(16, 7680), _Even()], metadata={
        "description": "even; a render keeps the frames' aspect inside width x height and "
                       "never exceeds video.max_render_px; a clip's is at most "
                       "video.max_clip_size", "multipleOf": 2})
    height = _JsonInteger(validate=[Range(16, 4320), _Even()],
                          metadata={"description": "even; see width", "multipleOf": 2})
    first_frame = _JsonInteger(validate=Range(1, 2**53), metadata={
        "description": "renders: the first sequence number to use (default 1)"})
    last_frame = _JsonInteger(validate=Range(1, 2**53), metadata={
        "description": "renders: the last sequence number (default: the newest frame now)"})
    deflicker = _JsonInteger(validate=Range(0, 250), metadata={
        "description": "renders: even out brightness over a rolling window of this many "
                       "frames (0 or absent: off)"})
    timestamp = _StrictBoolean(metadata={"description": "renders: burn each frame's capture "
                                                        "time into the picture"})
    crf = _JsonInteger(validate=Range(0, 51), metadata={
        "description": "renders: x264 constant rate factor, lower is better (default video.crf)"})


class VideoPatch(Schema):
    state = fields.String(required=True, validate=OneOf(("cancelled",)))


class VideoQuery(PageQuery):
    timelapse = fields.String(validate=Length(1, 64),
                              metadata={"description": "only renders of this time-lapse"})
    source = fields.String(validate=OneOf(("timelapse", "clip")))


class VideoLinks(Schema):
    self = fields.String()
    video = fields.String()
    thumbnail = fields.String()


class Video(Schema):
    id = fields.String()
    state = fields.String(metadata={"description": "queued, recording, rendering, ready, "
                                                   "failed or cancelled"})
    progress = fields.Float(metadata={"description": "0 to 1"})
    source = fields.String(metadata={"description": "timelapse or clip"})
    timelapse_id = fields.String(allow_none=True)
    trigger = fields.String(allow_none=True, metadata={"description": "the GPIO device that "
                                                                      "started a clip"})
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    frames = fields.Integer(allow_none=True)
    frames_skipped = fields.Integer(metadata={"description": "renders: frames that were "
                                                             "missing or unreadable"})
    duration_s = fields.Float(allow_none=True)
    fps = fields.Float(allow_none=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    codec = fields.String(allow_none=True)
    bytes = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    attempts = fields.Integer(metadata={"description": "renders: how many times it started; "
                                                       "more than 1 after a crash or power cut"})
    options = fields.Dict(metadata={"description": "what was asked, with the defaults filled in"})
    links = fields.Nested(VideoLinks)


class VideoPage(ListPage):
    items = fields.List(fields.Nested(Video))


class EventQuery(Schema):
    types = fields.String(validate=Length(1, 2048), metadata={
        "description": "Comma-separated event types or families (photo.created, gpio.*, *); "
                       "default all", "example": "photo.created,timelapse.*"})
    last_event_id = fields.Integer(validate=Range(0, 10**18), metadata={
        "description": "Resume after this event, for a client that cannot send the "
                       "Last-Event-ID header (the header wins)"})


def _event_types(required: bool = False) -> fields.List:
    from ..events.types import TYPES
    families = sorted({name.split(".")[0] + ".*" for name in TYPES})
    return fields.List(fields.String(validate=OneOf(["*", *TYPES, *families])),
                       required=required, validate=Length(1, 32), metadata={
                           "description": "Event types or families to deliver (see GET "
                                          "/api/v1/events)", "example": ["photo.created", "gpio.*"]})


_WEBHOOK_URL = {"description": "Where to POST: http:// or https://, with user:password@ for "
                               "HTTP Basic at the receiver. Its host must be one of "
                               "webhooks.allowed_hosts when that is set, and each address it "
                               "resolves to allowed by webhooks.allowed_networks and "
                               "denied_networks",
                "example": "https://receiver.example/hooks/picam", RUNTIME: "webhook_url"}


class WebhookCreate(Schema):
    url = fields.String(required=True, validate=Length(1, 2048), metadata=_WEBHOOK_URL)
    types = _event_types(required=True)
    snapshot = _StrictBoolean(metadata={"description": "attach the photo's thumbnail (base64 "
                                                       "JPEG) to photo.created; default false"})
    enabled = _StrictBoolean(metadata={"description": "default true"})
    description = fields.String(allow_none=True, validate=Length(0, 200))


class WebhookPatch(Schema):
    url = fields.String(validate=Length(1, 2048), metadata=_WEBHOOK_URL)
    types = _event_types()
    snapshot = _StrictBoolean()
    enabled = _StrictBoolean()
    description = fields.String(allow_none=True, validate=Length(0, 200))
    rotate_secret = _StrictBoolean(metadata={"description": "true: make a new secret, returned "
                                                            "once in this answer"})


class WebhookLinks(Schema):
    self = fields.String()
    deliveries = fields.String()


class Webhook(Schema):
    id = fields.String()
    url = fields.String()
    types = fields.List(fields.String())
    snapshot = fields.Boolean()
    enabled = fields.Boolean()
    description = fields.String(allow_none=True)
    created_at = fields.String()
    updated_at = fields.String()
    deliveries = fields.Dict(metadata={"description": "counts: pending, delivered, failed, "
                                                      "dropped"})
    links = fields.Nested(WebhookLinks)


class WebhookWithSecret(Webhook):
    secret = fields.String(metadata={"description": "signs every delivery (X-Picam-Signature); "
                                                    "shown only in this answer"})


class WebhookItem(Webhook):
    """A Webhook in a WebhookPage (see GpioDeviceItem for why a subclass)."""


class WebhookPage(Schema):
    items = fields.List(fields.Nested(WebhookItem))
    next = fields.String(allow_none=True, metadata={"description": "always null: one page"})


class Delivery(Schema):
    id = fields.String(metadata={"description": "sent as X-Picam-Delivery, the same on every "
                                                "attempt"})
    event_id = fields.Integer()
    event_type = fields.String()
    state = fields.String(metadata={"description": "pending, delivered, failed or dropped"})
    attempts = fields.Integer()
    created_at = fields.String()
    last_attempt_at = fields.String(allow_none=True)
    next_attempt_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    response_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)


class DeliveryPage(ListPage):
    items = fields.List(fields.Nested(Delivery))


class MotionPatch(Schema):
    """Motion detection's switch and tuning; each field given replaces its value."""

    enabled = _StrictBoolean()
    sensitivity = _JsonInteger(validate=Range(1, 100), metadata={
        "description": "1-100: how small a change, against each pixel's noise, counts"})
    min_area_pct = _JsonNumber(allow_nan=False, validate=Range(0.01, 100), metadata={
        "description": "percent of the unmasked frame that must change"})
    cooldown_s = _JsonNumber(allow_nan=False, validate=Range(0, 86400), metadata={
        "description": "seconds after an event ends before another may start"})
    # Raw: the service's check_masks is the rule (the config takes masks too), and this
    # field's document says it in JSON Schema.
    masks = fields.Raw(metadata={
        "description": "replaces the masks: rectangles {x, y, w, h} and polygons {points: "
                       "[[x, y], ...]} (3-64 points), frame-relative (0-1, x right, y down)",
        "type": "array", "maxItems": MAX_MASKS, "items": MASK_SCHEMA})


class MotionBox(Schema):
    x = fields.Float()
    y = fields.Float()
    w = fields.Float()
    h = fields.Float()


class MotionSize(Schema):
    width = fields.Integer()
    height = fields.Integer()


class MotionCpu(Schema):
    detect_ms = fields.Float(allow_none=True, metadata={"description": "CPU per frame, detector"})
    frame_ms = fields.Float(allow_none=True, metadata={
        "description": "CPU per frame, reading the frame and detecting"})
    percent_of_core = fields.Float(metadata={"description": "frame_ms at motion.fps, in "
                                                            "percent of one core"})


class MotionLinks(Schema):
    self = fields.String()
    preview = fields.String()


class Motion(Schema):
    enabled = fields.Boolean()
    state = fields.String(metadata={"description": "off, learning, running, outside_hours, "
                                                   "unsupported or camera_error"})
    active = fields.Boolean(metadata={"description": "an event is in progress"})
    event = fields.String(allow_none=True, metadata={"description": "its id"})
    score = fields.Float(metadata={"description": "the last frame's area over min_area_pct"})
    area_pct = fields.Float()
    bbox = fields.Nested(MotionBox, allow_none=True)
    last_frame_at = fields.String(allow_none=True)
    size = fields.Nested(MotionSize)
    fps = fields.Float()
    sensitivity = fields.Integer()
    min_area_pct = fields.Float()
    cooldown_s = fields.Float()
    masks = fields.Raw(metadata={"type": "array", "items": MASK_SCHEMA})
    global_change_pct = fields.Float()
    min_frames = fields.Integer()
    end_after_s = fields.Float()
    require_input = fields.String(allow_none=True)
    active_hours = fields.Dict(allow_none=True)
    last_error = fields.String(allow_none=True)
    events = fields.List(fields.Dict(), metadata={"description": "the last motion.start and "
                                                                 "motion.end data, newest first"})
    counters = fields.Dict(keys=fields.String(), values=fields.Integer())
    last_action_error = fields.String(allow_none=True)
    cpu = fields.Nested(MotionCpu)
    links = fields.Nested(MotionLinks)
