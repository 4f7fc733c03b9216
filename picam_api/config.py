"""Configuration: built-in defaults, then a TOML file, then environment overrides.

Every value is checked against ``SPEC`` when it is loaded, so a bad value stops
start-up with one line naming the key and the reason.
"""
from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .device_kinds import KINDS, check_capture_light, check_devices, check_trigger_actions
from .errors import ConfigError
from .motion_rules import check_active_hours, check_masks
# Shared with the GPIO checks (rules.py), under the names the SPEC below reads.
from .rules import boolean as _bool, choice as _choice, number as _number

SYSTEM_CONFIG = Path("/etc/picam-api/config.toml")

DEFAULTS: dict[str, Any] = {
    "server": {
        # Loopback by default: the installer's config opens it to the LAN.
        "host": "127.0.0.1",
        "port": 8000,
        # Each stream client holds a thread, so this also bounds streams.
        "threads": 16,
        "max_body_bytes": 64 * 1024,
        "graceful_timeout_s": 5.0,
        # Origins (https://ha.local:8123) whose pages may POST, PATCH or DELETE here
        # with a browser's credentials; see docs/security.md.
        "allowed_origins": [],
        # A request must arrive whole (line, headers, body) this long after its first
        # byte; a connection with no request under way is closed after idle_timeout_s.
        "request_timeout_s": 10.0,
        "idle_timeout_s": 5.0,
        # Open connections in all, and from one client address (an IPv6 /64).
        "max_connections": 256,
        "max_connections_per_client": 32,
        # Host header values served; empty: this machine's names (see hosts.py).
        "allowed_hosts": [],
        # The URL clients reach the API at (https://cam.example.com, or behind a proxy
        # https://example.com/camera); set, Location and links are absolute URLs, in
        # responses and in events (SSE, webhooks, MQTT) alike.
        "public_url": "",
    },
    "storage": {
        "data_dir": "",
        # Captures that store are refused below this much free space.
        "reserve_mb": 100,
        # Retention: 0 means off.
        "max_photos": 0,
        "max_bytes": 0,
        "retention_interval_s": 60.0,
        "thumbnail_px": 320,
        # Retention for videos (0 = off); max_bytes counts photos and videos together.
        "max_videos": 0,
    },
    "camera": {
        "backend": "auto",
        "camera_num": 0,
        "capture_timeout_s": 10.0,
        "retry_after_s": 5,
        # A GPIO output (a flash, an IR lamp) switched on while a capture is in progress.
        "light": "",
        "mock": {
            "sensor": [4608, 2592],
            # Fault injection for tests; never reachable over HTTP.
            "fail_rate": 0.0,
            "delay_s": 0.0,
            "hang": False,
            "missing": False,
            "seed": -1,
            # The scripted scene motion detection sees (camera/mock_scene.py); off by default.
            "scene": {"path": [], "speed": 0.5, "size": 0.2, "start_s": 0.0, "repeat_s": 0.0,
                      "noise": 0.0, "flicker": 0.0, "ramp": 0.0, "cloud_s": 0.0,
                      "cloud_area": 0.8},
        },
    },
    "auth": {
        "token_ttl_s": 30 * 24 * 3600,
        "max_failures": 10,
        "failure_window_s": 60.0,
        # How long verified Basic credentials skip the slow password hash.
        "credential_cache_s": 60.0,
        # Password checks running at once (16 MiB each); see picam_api/passwords.py.
        "max_concurrent_hashes": 2,
        # Live tokens a user may hold (a new one revokes the oldest), and new ones a minute.
        "max_tokens_per_user": 50,
        "tokens_per_minute": 10,
    },
    "timelapse": {
        "min_interval_s": 0.5,
        "max_active_jobs": 4,
        # A job fails after this many captures in a row fail.
        "max_consecutive_failures": 10,
        "max_frames": 10_000_000,
        # Queue a render (the [video] defaults) of every job that completes.
        "render_on_complete": False,
    },
    "stream": {
        "max_clients": 4,
        "fps": 10.0,
        "max_fps": 30.0,
        # Sizes a client may ask for with ?size=WxH; the first is the default.
        "sizes": [[640, 480], [1280, 720]],
        "quality": 75,
        # The producer stops this long after the last client leaves.
        "idle_stop_s": 3.0,
        # mjpg-streamer style /?action=stream|snapshot aliases need auth too.
        "aliases_require_auth": True,
        # How long a signed stream URL (POST /api/v1/stream/urls) may wait for its GET.
        "url_ttl_s": 30,
        # Live H.264 (WebRTC over WHEP, RTSP publishing): one encoder per size in use,
        # its packets passed to every peer; see docs/h264.md.
        "h264": {
            "enabled": True,
            # Default size for WHEP and the size RTSP publishes; unset: the first of stream.sizes
            # (1280x720 on a Pi 5, when listed: docs/h264.md).
            "size": None,
            "fps": 30.0,
            "bitrate": 2_000_000,
            # Seconds from one keyframe to the next: the longest a new viewer waits.
            "gop": 1.0,
            "max_peers": 8,
            # None contacted unless listed ("stun:stun.example.org:3478"): host candidates only.
            "stun_urls": [],
            # A peer whose connection has not come up this long after its answer is dropped.
            "connect_timeout_s": 20.0,
        },
        "rtsp": {
            # rtsp://127.0.0.1:8554/picam on a MediaMTX or go2rtc: published while set.
            "publish_url": "",
            # Reconnects wait 1 s, then twice as long each time, up to this.
            "reconnect_max_s": 30.0,
        },
    },
    "gpio": {
        # gpiozero's factory name (lgpio, rpigpio, mock, ...); GPIOZERO_PIN_FACTORY wins.
        "pin_factory": "",
        "devices": [],
    },
    "video": {
        # Clips, and the pre-roll encoder: size, rate, bitrate, keyframe spacing.
        "width": 1280,
        "height": 720,
        "fps": 30.0,
        "bitrate": 4_000_000,
        "keyframe_s": 1.0,
        "max_duration_s": 300.0,
        "max_clip_size": [1920, 1080],
        "max_fps": 60.0,
        # Seconds of encoded video kept in memory, so a clip starts before its trigger.
        "preroll_s": 0.0,
        "preroll_max_mb": 64,
        # Time-lapse renders.
        "render_fps": 25.0,
        "max_render_px": 1920,
        "crf": 23,
        "preset": "veryfast",
        "max_concurrent_renders": 1,
        "max_queued_renders": 16,
        "render_nice": 19,
        "max_render_attempts": 3,
    },
    # Where the camera is, for sun-relative time-lapse windows ("sunrise-30m").
    "location": {"latitude": None, "longitude": None, "elevation": 0.0},
    "events": {
        # The log that SSE clients resume from (Last-Event-ID): the newest this many events.
        "keep": 10_000,
        # Each SSE client holds a server thread, as a live-view client does.
        "max_clients": 4,
        "keepalive_s": 15.0,
        # storage.low below this much free space (or below storage.reserve_mb, if higher).
        "storage_low_mb": 1024,
        "storage_check_s": 30.0,
    },
    "webhooks": {
        "max_webhooks": 16,
        "max_attempts": 8,
        "timeout_s": 10.0,
        # Retries wait backoff_s, then twice that, and so on up to max_backoff_s, with jitter.
        "backoff_s": 2.0,
        "max_backoff_s": 600.0,
        # Undelivered deliveries per webhook; past it, new ones are dropped (and logged).
        "max_pending": 1000,
        # Finished deliveries kept per webhook for its delivery log.
        "keep_deliveries": 200,
        "max_body_bytes": 256 * 1024,
        # Where receivers may be: each address a URL resolves to must be in an allowed
        # network and in no denied one. The default denies this host and link-local
        # addresses (cloud metadata services live there); see docs/events.md.
        "allowed_networks": ["0.0.0.0/0", "::/0"],
        "denied_networks": ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10",
                            "0.0.0.0/8", "::/128", "224.0.0.0/4", "ff00::/8"],
        # false: receivers must be given by IP address, and no name is ever looked up.
        "allow_hostnames": True,
        # If not empty, the only hosts (names or addresses, as in the URL) receivers may be at.
        "allowed_hosts": [],
    },
    "mqtt": {
        # MQTT is off unless a broker is named.
        "host": "",
        "port": 1883,
        "tls": False,
        "ca_file": "",
        # Skips the check of the broker's certificate and name: only for a test broker.
        "tls_insecure": False,
        "username": "",
        "password": "",
        "password_file": "",
        "client_id": "",
        "base_topic": "picam",
        # Default: this host's name, made topic-safe.
        "node_id": "",
        "discovery": True,
        "discovery_prefix": "homeassistant",
        "qos": 1,
        "keepalive_s": 60,
        "reconnect_max_s": 60.0,
        # A command's request_id is remembered this long, so a redelivered command runs once.
        "dedupe_s": 600.0,
        # The snapshot topic gets the photo itself up to this size, else its thumbnail.
        "snapshot_max_bytes": 4 * 1024 * 1024,
        # How the device is named in Home Assistant; default "picam <node_id>".
        "device_name": "",
        # The device's "Visit" link in Home Assistant; default http://<hostname>:<port>/.
        "configuration_url": "",
    },
    "log": {"level": "INFO"},
    # Motion detection on small luma frames; see docs/motion.md.
    "motion": {
        "enabled": False,
        "size": [320, 240],
        "fps": 5.0,
        # 1-100: how small a change, against each pixel's noise, counts.
        "sensitivity": 50,
        # Share of the unmasked frame that must change, and the share past which a
        # change is light (a cloud, a lamp), not motion.
        "min_area_pct": 0.5,
        "global_change_pct": 50.0,
        # Time constant of the running-average background.
        "background_s": 5.0,
        # Moving frames in a row that start an event (its minimum length); it ends
        # after end_after_s without one; none starts for cooldown_s after that.
        "min_frames": 2,
        "end_after_s": 2.0,
        "cooldown_s": 10.0,
        # Rectangles {x, y, w, h} and polygons {points}, frame-relative (motion/masks.py).
        "masks": [],
        # Trigger actions, as [[gpio.devices]] inputs take them.
        "on_start": [],
        "on_end": [],
        # A GPIO input (a PIR) that must be active within require_window_s of the motion.
        "require_input": "",
        "require_window_s": 5.0,
        # A daily window as a time-lapse's, may follow the sun; empty: all day.
        "active_hours": {"start": "", "end": ""},
        # Events GET /api/v1/motion shows.
        "keep_events": 20,
    },
}

# Server threads kept free for everything but live-view and event streams (see _check_threads).
THREADS_BESIDE_STREAMS = 4

ENV_KEYS = {
    "PICAM_HOST": "server.host",
    "PICAM_PORT": "server.port",
    "PICAM_DATA_DIR": "storage.data_dir",
    "PICAM_CAMERA_BACKEND": "camera.backend",
}


def _optional(check: Callable) -> Callable:
    """None (unset: the default) or what ``check`` takes; the loaded config is checked again."""
    return lambda value: None if value is None else check(value)
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _size(value: Any) -> list[int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 20000 for v in value)):
        raise ValueError("must be [width, height] with each 16..20000")
    return value


def _sizes(value: Any) -> list[list[int]]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of [width, height]")
    return [_size(size) for size in value]


def _origins(value: Any) -> list[str]:
    from .request_rules import normalize_origin
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of origins such as \"https://ha.local:8123\"")
    return [normalize_origin(origin) for origin in value]
def _hosts(value: Any) -> list[str]:
    from .hosts import check_allowed_hosts
    return check_allowed_hosts(value)


def _networks(value: Any) -> list[str]:
    import ipaddress
    if not isinstance(value, list) or len(value) > 64:
        raise ValueError("must be a list of at most 64 networks such as \"192.168.0.0/16\"")
    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except (TypeError, ValueError):
            raise ValueError(f"{network!r} is not a network such as \"192.168.0.0/16\"") from None
    return value


def _receiver_hosts(value: Any) -> list[str]:
    if (not isinstance(value, list) or len(value) > 64
            or not all(isinstance(h, str) and 0 < len(h) <= 253 and h.strip() == h for h in value)):
        raise ValueError("must be a list of at most 64 host names or addresses")
    return [host.lower() for host in value]


def _topic_level(value: Any) -> str:
    # One or more MQTT topic levels, without wildcards or empty levels.
    if (not isinstance(value, str) or not 1 <= len(value) <= 128 or any(c in value for c in "+#\0")
            or "" in value.split("/")):
        raise ValueError("must be 1-128 characters of topic levels, no + # or empty levels")
    return value


def _node_id(value: Any) -> str:
    import re
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{0,64}", value):
        raise ValueError("must be up to 64 letters, digits, '_' or '-' (Home Assistant's rule)")
    return value


def _public_url(value: Any) -> str:
    """"" or an http(s) URL with no query or fragment, without its trailing slash."""
    text = _text(value).strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or "@" in parts.netloc:
        raise ValueError("must be an http or https URL such as https://cam.example.com or "
                         "https://example.com/camera")
    return text.rstrip("/")


def _scene_path(value: Any) -> list[list[float]]:
    point = _number(float, -10, 10)
    if (not isinstance(value, list) or len(value) > 64 or len(value) == 1
            or not all(isinstance(p, list) and len(p) == 2 for p in value)):
        raise ValueError("must be [] (no object) or 2-64 points [x, y], frame-relative")
    return [[point(x), point(y)] for x, y in value]


def _motion_size(value: Any) -> list[int]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not (64 <= value[0] <= 1280 and value[0] % 16 == 0)
            or not (48 <= value[1] <= 960 and value[1] % 4 == 0)):
        raise ValueError("must be [width, height]: a width of 64-1280 in steps of 16, a height "
                         "of 48-960 in steps of 4")
    return value


def _masks(value: Any) -> list[dict]:
    return check_masks(value)


def _actions(value: Any) -> list:
    # Checked against the GPIO devices once every layer is in (_check_motion).
    if not isinstance(value, (list, dict)):
        raise ValueError("must be an action table or an array of them")
    return value if isinstance(value, list) else [value]
def _stun_urls(value: Any) -> list[str]:
    if (not isinstance(value, list) or len(value) > 4
            or not all(isinstance(u, str) and u.startswith(("stun:", "stuns:")) and len(u) <= 256
                       for u in value)):
        raise ValueError('must be a list of at most 4 URLs such as "stun:stun.example.org:3478"')
    return value


def _rtsp_url(value: Any) -> str:
    text = _text(value).strip()
    if text and (urlsplit(text).scheme not in ("rtsp", "rtsps") or not urlsplit(text).hostname):
        raise ValueError("must be empty or an rtsp:// URL such as rtsp://127.0.0.1:8554/picam")
    return text


SPEC: dict[str, Callable] = {
    "server.host": _text,
    "server.port": _number(int, 1, 65535),
    "server.threads": _number(int, 2, 256),
    "server.max_body_bytes": _number(int, 1024, 16 * 1024 * 1024),
    "server.graceful_timeout_s": _number(float, 0.5, 120),
    "server.allowed_origins": _origins,
    "server.request_timeout_s": _number(float, 1, 300),
    "server.idle_timeout_s": _number(float, 1, 3600),
    "server.max_connections": _number(int, 8, 1000),
    "server.max_connections_per_client": _number(int, 1, 1000),
    "server.allowed_hosts": _hosts,
    "server.public_url": _public_url,
    "storage.data_dir": _text,
    "storage.reserve_mb": _number(int, 0),
    "storage.max_photos": _number(int, 0),
    "storage.max_bytes": _number(int, 0),
    "storage.retention_interval_s": _number(float, 0.05, 86400),
    "storage.thumbnail_px": _number(int, 16, 2048),
    "camera.backend": _choice("auto", "mock", "picamera2"),
    "camera.camera_num": _number(int, 0, 16),
    "camera.capture_timeout_s": _number(float, 0.1, 600),
    "camera.retry_after_s": _number(int, 1, 3600),
    "camera.light": _text,
    "camera.mock.sensor": _size,
    "camera.mock.fail_rate": _number(float, 0, 1),
    "camera.mock.delay_s": _number(float, 0, 600),
    "camera.mock.hang": _bool,
    "camera.mock.missing": _bool,
    "camera.mock.seed": _number(int, -1),
    "camera.mock.scene.path": _scene_path,
    "camera.mock.scene.speed": _number(float, 0, 100),
    "camera.mock.scene.size": _number(float, 0.01, 1),
    "camera.mock.scene.start_s": _number(float, 0, 86400),
    "camera.mock.scene.repeat_s": _number(float, 0, 86400),
    "camera.mock.scene.noise": _number(float, 0, 64),
    "camera.mock.scene.flicker": _number(float, 0, 0.9),
    "camera.mock.scene.ramp": _number(float, 0, 10),
    "camera.mock.scene.cloud_s": _number(float, 0, 86400),
    "camera.mock.scene.cloud_area": _number(float, 0, 1),
    "auth.token_ttl_s": _number(int, 60),
    "auth.max_failures": _number(int, 1),
    "auth.failure_window_s": _number(float, 1),
    "auth.credential_cache_s": _number(float, 0),
    "auth.max_concurrent_hashes": _number(int, 1, 16),
    "auth.max_tokens_per_user": _number(int, 1, 100_000),
    "auth.tokens_per_minute": _number(int, 1, 10_000),
    "timelapse.min_interval_s": _number(float, 0.01, 86400),
    "timelapse.max_active_jobs": _number(int, 1, 1000),
    "timelapse.max_consecutive_failures": _number(int, 1, 1_000_000),
    "timelapse.max_frames": _number(int, 1, 1_000_000_000),
    "stream.max_clients": _number(int, 1, 1000),
    "stream.fps": _number(float, 0.1, 120),
    "stream.max_fps": _number(float, 0.1, 120),
    "stream.sizes": _sizes,
    "stream.quality": _number(int, 1, 100),
    "stream.idle_stop_s": _number(float, 0, 3600),
    "stream.aliases_require_auth": _bool,
    "stream.url_ttl_s": _number(int, 1, 3600),
    "gpio.pin_factory": _text,
    "gpio.devices": check_devices,
    "events.keep": _number(int, 100, 10_000_000),
    "events.max_clients": _number(int, 0, 1000),
    "events.keepalive_s": _number(float, 0.1, 3600),
    "events.storage_low_mb": _number(int, 0),
    "events.storage_check_s": _number(float, 0.05, 86400),
    "webhooks.max_webhooks": _number(int, 0, 1000),
    "webhooks.max_attempts": _number(int, 1, 100),
    "webhooks.timeout_s": _number(float, 0.1, 300),
    "webhooks.backoff_s": _number(float, 0.01, 86400),
    "webhooks.max_backoff_s": _number(float, 0.01, 7 * 86400),
    "webhooks.max_pending": _number(int, 1, 1_000_000),
    "webhooks.keep_deliveries": _number(int, 1, 1_000_000),
    "webhooks.max_body_bytes": _number(int, 1024, 16 * 1024 * 1024),
    "webhooks.allowed_networks": _networks,
    "webhooks.denied_networks": _networks,
    "webhooks.allow_hostnames": _bool,
    "webhooks.allowed_hosts": _receiver_hosts,
    "mqtt.host": _text,
    "mqtt.port": _number(int, 1, 65535),
    "mqtt.tls": _bool,
    "mqtt.ca_file": _text,
    "mqtt.tls_insecure": _bool,
    "mqtt.username": _text,
    "mqtt.password": _text,
    "mqtt.password_file": _text,
    "mqtt.client_id": _text,
    "mqtt.base_topic": _topic_level,
    "mqtt.node_id": _node_id,
    "mqtt.discovery": _bool,
    "mqtt.discovery_prefix": _topic_level,
    "mqtt.qos": _number(int, 0, 2),
    "mqtt.keepalive_s": _number(int, 5, 3600),
    "mqtt.reconnect_max_s": _number(float, 1, 3600),
    "mqtt.dedupe_s": _number(float, 0, 86400),
    "mqtt.snapshot_max_bytes": _number(int, 0, 64 * 1024 * 1024),
    "mqtt.device_name": _text,
    "mqtt.configuration_url": _text,
    "log.level": _choice("DEBUG", "INFO", "WARNING", "ERROR"),
    "storage.max_videos": _number(int, 0),
    "timelapse.render_on_complete": _bool,
    "video.width": _number(int, 16, 7680),
    "video.height": _number(int, 16, 4320),
    "video.fps": _number(float, 1, 120),
    "video.bitrate": _number(int, 100_000, 100_000_000),
    "video.keyframe_s": _number(float, 0.1, 60),
    "video.max_duration_s": _number(float, 1, 86400),
    "video.max_clip_size": _size,
    "video.max_fps": _number(float, 1, 120),
    "video.preroll_s": _number(float, 0, 120),
    "video.preroll_max_mb": _number(int, 1, 4096),
    "video.render_fps": _number(float, 1, 120),
    "video.max_render_px": _number(int, 64, 7680),
    "video.crf": _number(int, 0, 51),
    "video.preset": _choice("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                            "slow", "slower", "veryslow"),
    "video.max_concurrent_renders": _number(int, 1, 8),
    "video.max_queued_renders": _number(int, 1, 1000),
    "video.render_nice": _number(int, 0, 19),
    "video.max_render_attempts": _number(int, 1, 100),
    "motion.enabled": _bool,
    "motion.size": _motion_size,
    "motion.fps": _number(float, 0.2, 30),
    "motion.sensitivity": _number(int, 1, 100),
    "motion.min_area_pct": _number(float, 0.01, 100),
    "motion.global_change_pct": _number(float, 1, 100),
    "motion.background_s": _number(float, 0.2, 3600),
    "motion.min_frames": _number(int, 1, 100),
    "motion.end_after_s": _number(float, 0, 3600),
    "motion.cooldown_s": _number(float, 0, 86400),
    "motion.masks": _masks,
    "motion.on_start": _actions,
    "motion.on_end": _actions,
    "motion.require_input": _text,
    "motion.require_window_s": _number(float, 0, 3600),
    "motion.active_hours.start": _text,
    "motion.active_hours.end": _text,
    "motion.keep_events": _number(int, 1, 1000),
    "stream.h264.enabled": _bool,
    "stream.h264.size": _optional(_size),
    "stream.h264.fps": _number(float, 1, 60),
    "stream.h264.bitrate": _number(int, 100_000, 50_000_000),
    "stream.h264.gop": _number(float, 0.1, 10),
    "stream.h264.max_peers": _number(int, 1, 100),
    "stream.h264.stun_urls": _stun_urls,
    "stream.h264.connect_timeout_s": _number(float, 1, 300),
    "stream.rtsp.publish_url": _rtsp_url,
    "stream.rtsp.reconnect_max_s": _number(float, 1, 3600),
    "location.latitude": _optional(_number(float, -90, 90)),
    "location.longitude": _optional(_number(float, -180, 180)),
    "location.elevation": _number(float, -500, 9000),
}


def _merge(base: dict, layer: Mapping, source: str, prefix: str = "") -> None:
    """Check ``layer`` against SPEC and merge it into ``base`` in place."""
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: must be a table")
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if isinstance(base.get(key), dict):
            _merge(base[key], value, source, path + ".")
        elif path in SPEC:
            try:
                base[key] = SPEC[path](value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {path}: {exc} (got {value!r})") from None
        else:
            raise ConfigError(f"{source}: {path}: unknown key")


def read_file(path: str | os.PathLike) -> dict:
    """Parse a TOML config file, turning every failure into one ConfigError line."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(path: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None) -> dict:
    """Build the effective config from the environment's layers.

    The file is ``path``, else ``$PICAM_CONFIG``, else /etc/picam-api/config.toml
    when it exists; environment variables override it.
    """
    env = os.environ if env is None else env
    path = path or env.get("PICAM_CONFIG") or (SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None)
    layers = [(str(path), read_file(path))] if path else []
    for name, key in ENV_KEYS.items():
        if env.get(name):
            section, field = key.split(".")
            layers.append((name, {section: {field: env[name]}}))
    return build_config(layers, env)


def from_mapping(mapping: Mapping | None) -> dict:
    """Defaults plus ``mapping`` only: no file and no environment (tests, embedding)."""
    return build_config([("config", mapping or {})], env={})


def build_config(layers: list[tuple[str, Mapping]], env: Mapping[str, str]) -> dict:
    """Merge ``(source, mapping)`` layers over the defaults, checking each value."""
    config = copy.deepcopy(DEFAULTS)
    for source, layer in layers:
        _merge(config, layer, source)
    _check_threads(config)
    _check_capture_light(config)
    _check_video(config)
    _check_motion(config)
    _check_h264(config)
    config["storage"]["data_dir"] = str(resolve_data_dir(config, env))
    return config


def _check_threads(config: Mapping) -> None:
    """Every live-view and event-stream client holds a server thread; health,
    snapshots and the API need the rest."""
    threads = config["server"]["threads"]
    streams = config["stream"]["max_clients"] + config["events"]["max_clients"]
    if threads < streams + THREADS_BESIDE_STREAMS:
        raise ConfigError(f"server.threads: must be at least stream.max_clients + "
                          f"events.max_clients + {THREADS_BESIDE_STREAMS} = "
                          f"{streams + THREADS_BESIDE_STREAMS}, so that the API answers while "
                          f"every stream is open (got {threads})")


def _check_capture_light(config: Mapping) -> None:
    light = config["camera"]["light"]
    try:
        check_capture_light(light, config["gpio"]["devices"])
    except ValueError as exc:
        raise ConfigError(f"camera.light: {exc} (got {light!r})") from None


def _check_video(config: Mapping) -> None:
    video = config["video"]
    if video["width"] % 2 or video["height"] % 2:
        raise ConfigError(f"video.width, video.height: must be even for H.264 (got "
                          f"{video['width']}x{video['height']})")
    max_w, max_h = video["max_clip_size"]
    if video["width"] > max_w or video["height"] > max_h or video["fps"] > video["max_fps"]:
        raise ConfigError("video.width, video.height, video.fps: must be within "
                          "video.max_clip_size and video.max_fps")
    for device in config["gpio"]["devices"]:
        for event, actions in device.items():
            for action in actions if isinstance(actions, list) else []:
                if action.get("action") == "video" and action["duration_s"] > video["max_duration_s"]:
                    raise ConfigError(f"gpio.devices: {device['name']}: {event}: duration_s must be "
                                      f"at most video.max_duration_s ({video['max_duration_s']:g})")
    location = config["location"]
    if (location["latitude"] is None) != (location["longitude"] is None):
        missing = "location.longitude" if location["longitude"] is None else "location.latitude"
        raise ConfigError(f"{missing}: is needed with the other (both or neither)")


def _check_motion(config: Mapping) -> None:
    motion, devices = config["motion"], config["gpio"]["devices"]
    for event in ("on_start", "on_end"):
        try:
            motion[event] = check_trigger_actions(f"motion.{event}", motion[event], devices)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for action in motion[event]:
            if action["action"] == "video" and action["duration_s"] > config["video"]["max_duration_s"]:
                raise ConfigError(f"motion.{event}: duration_s must be at most "
                                  f"video.max_duration_s ({config['video']['max_duration_s']:g})")
    name = motion["require_input"]
    inputs = [d["name"] for d in devices if KINDS[d["kind"]].is_input]
    if name and name not in inputs:
        raise ConfigError(f"motion.require_input: must name a GPIO input "
                          f"({', '.join(inputs) or 'none configured'}) (got {name!r})")
    location = config["location"]
    try:
        check_active_hours(motion["active_hours"], located=location["latitude"] is not None
                           and location["longitude"] is not None)
    except ValueError as exc:
        raise ConfigError(f"motion.active_hours: {exc}") from None
def _check_h264(config: Mapping) -> None:
    h264, sizes = config["stream"]["h264"], config["stream"]["sizes"]
    # Unset, the camera backend picks one of stream.sizes (CameraBackend.live_h264_size).
    if h264["size"] is not None and h264["size"] not in sizes:
        raise ConfigError(f"stream.h264.size: must be one of stream.sizes (got {h264['size']!r})")
    width, height = h264["size"] or sizes[0]
    if h264["enabled"] and (width % 2 or height % 2):
        raise ConfigError(f"stream.h264.size: must be even for H.264 (got {width}x{height}); "
                          "set it to an even one of stream.sizes")


def resolve_data_dir(config: Mapping, env: Mapping[str, str]) -> Path:
    """``storage.data_dir``, else systemd's $STATE_DIRECTORY, else the XDG data home."""
    configured = config["storage"]["data_dir"]
    if configured:
        return Path(configured).expanduser().resolve()
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several, colon-separated; ours is the first.
        return Path(env["STATE_DIRECTORY"].split(":")[0]).resolve()
    xdg = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(xdg) / "picam-api").resolve()
