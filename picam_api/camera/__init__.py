"""Camera backends, chosen by name and imported only when chosen.

Importing this package imports no hardware library: ``picamera2`` (and the
apt-only ``libcamera``) load inside the picamera2 backend when it is built.
"""
from __future__ import annotations

import importlib
import logging

from ..errors import ConfigError
from .base import (CameraBackend, Capabilities, Capture, CaptureSettings, ControlInfo,
                   VideoSettings)
from .owner import CameraOwner

__all__ = ["CameraBackend", "CameraOwner", "Capabilities", "Capture", "CaptureSettings",
           "ControlInfo", "VideoSettings", "make_backend"]

log = logging.getLogger(__name__)

BACKENDS = {
    "mock": "picam_api.camera.mock:MockCamera",
    "picamera2": "picam_api.camera.pi:Picamera2Camera",
}


def _load(name: str) -> type[CameraBackend]:
    module, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_backend(config: dict) -> CameraBackend:
    """Build the backend named by ``camera.backend``.

    ``auto`` takes picamera2 when the library imports and reports a camera, and
    the mock otherwise, and says which loudly: a Pi install pins ``picamera2``
    so a missing camera shows as an unhealthy service rather than fake pictures.
    """
    name = config["camera"]["backend"]
    if name == "auto":
        name = "picamera2" if _picamera2_sees_a_camera() else "mock"
        log.warning("camera.backend=auto chose the %s backend%s", name,
                    "" if name == "picamera2" else " (no picamera2 camera found): images are SYNTHETIC")
    if name not in BACKENDS:
        raise ConfigError(f"camera.backend: unknown backend {name!r}")
    return _load(name)(config["camera"])


def _picamera2_sees_a_camera() -> bool:
    try:
        from picamera2 import Picamera2
    except Exception:  # ImportError, or libcamera failing inside picamera2's import
        return False
    try:
        return bool(Picamera2.global_camera_info())
    except Exception:
        return False
