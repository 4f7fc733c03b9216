"""The camera checks with the camera opened here, when no picam-api server holds it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..camera import settings as camera_settings
from ..camera.base import Capture, CaptureSettings
from ..camera.owner import CameraOwner
from ..camera.pi import Picamera2Camera
from ..camera.pi_faults import CMA_FIX
from ..errors import CameraError
from .report import FAIL, PASS, WARN, Report

AF_STATES = {0: "idle (manual focus)", 1: "still scanning", 2: "focused", 3: "failed to focus"}
# The stream may run this much below stream.fps before it is a warning.
FPS_SLACK = 0.8


@dataclass
class CameraFindings:
    """What the memory check needs from the camera checks."""

    platform: str | None = None
    buffers: dict[str, int] = field(default_factory=dict)
    out_of_memory: bool = False


def check_camera(report: Report, config: dict, stream_s: float) -> CameraFindings:
    """Versions, cameras, modes, a default and a full-resolution still, and
    ``stream_s`` seconds of stream, stopping at the first failure."""
    found = CameraFindings()
    backend = Picamera2Camera(config["camera"])
    try:
        versions = backend.versions()
    except CameraError as exc:
        _failed(report, "picamera2", exc, found)
        return found
    report.add("picamera2", PASS, f"picamera2 {versions['picamera2']}, libcamera "
               f"{versions['libcamera']}", **versions)
    owner = CameraOwner(backend, config["camera"]["capture_timeout_s"],
                        config["camera"]["retry_after_s"], reopen_backoff=0)
    try:
        if _camera(report, backend, owner, found):
            _stills(report, owner, found) and _stream(report, owner, config, stream_s, found)
    finally:
        owner.close()
        found.buffers = backend.diagnostics()["buffers"]
    return found


def _camera(report: Report, backend: Picamera2Camera, owner: CameraOwner,
            found: CameraFindings) -> bool:
    try:
        cameras = backend.cameras()
        caps = owner.capabilities  # opens the camera
    except CameraError as exc:
        _failed(report, "camera", exc, found)
        return False
    info = backend.diagnostics()
    found.platform = info["platform"]
    listed = ", ".join(f"{c.get('Model')} at {c.get('Id')}" for c in cameras)
    modes = " ".join(f"{w}x{h}" for w, h, _ in info["modes"])
    report.add("camera", PASS, f"{caps.model}, sensor {caps.sensor_size[0]}x{caps.sensor_size[1]}, "
               f"modes {modes}; {info['platform'].upper()} ({len(cameras)} listed: {listed})",
               model=caps.model, sensor_size=list(caps.sensor_size), modes=info["modes"],
               platform=info["platform"], cameras=len(cameras))
    return True


def _stills(report: Report, owner: CameraOwner, found: CameraFindings) -> bool:
    caps = owner.capabilities
    defaults = camera_settings.initial_defaults(caps)
    for name, size in (("still", (defaults["width"], defaults["height"])),
                       ("full still", caps.sensor_size)):
        settings = camera_settings.resolve({"width": size[0], "height": size[1]}, defaults, caps)
        started = time.monotonic()
        try:
            capture = owner.capture(settings)
        except CameraError as exc:
            _failed(report, name, exc, found)
            return False
        _still_line(report, name, capture, time.monotonic() - started)
    return True


def _still_line(report: Report, name: str, capture: Capture, took: float) -> None:
    state = capture.metadata.get("AfState")
    focus = AF_STATES.get(state, "no autofocus") if state is not None else "no autofocus"
    status = WARN if state in (1, 3) else PASS
    report.add(name, status, f"{capture.width}x{capture.height} JPEG, "
               f"{len(capture.data) // 1024} KiB in {took:.2f} s, {focus}",
               "point the camera at something with detail and contrast, or set LensPosition "
               "(see README: focus)", seconds=round(took, 3), bytes=len(capture.data),
               width=capture.width, height=capture.height, af_state=state)


def _stream(report: Report, owner: CameraOwner, config: dict, stream_s: float,
            found: CameraFindings) -> bool:
    stream = config["stream"]
    width, height = stream["sizes"][0]
    settings = CaptureSettings(width=width, height=height, quality=stream["quality"])
    try:
        owner.stream_frame(settings, stream["fps"])  # starts the stream: not counted
        frames, started = 0, time.monotonic()
        while time.monotonic() - started < stream_s:
            owner.stream_frame(settings, stream["fps"])
            frames += 1
        owner.end_stream((width, height))
    except CameraError as exc:
        _failed(report, "stream", exc, found)
        return False
    fps = frames / (time.monotonic() - started)
    detail = f"{width}x{height} at {fps:.1f} fps for {stream_s:g} s (stream.fps {stream['fps']:g})"
    if fps < FPS_SLACK * stream["fps"]:
        report.add("stream", WARN, detail, "lower stream.fps or the stream size", fps=fps)
    else:
        report.add("stream", PASS, detail, fps=round(fps, 2))
    return True


def _failed(report: Report, name: str, exc: CameraError, found: CameraFindings) -> None:
    fix = exc.extra.get("fix")
    detail = exc.detail
    if fix and detail.endswith(fix):
        detail = detail[:-len(fix)].rstrip("; ")
    found.out_of_memory = found.out_of_memory or fix == CMA_FIX
    report.add(name, FAIL, detail, fix or "see the log: journalctl -u picam-api")
