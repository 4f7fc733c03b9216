"""The picamera2 backend on the oldest picamera2 it supports, and one older refused.

picamera2 0.3.27 is the oldest supported (``pi.OLDEST_PICAMERA2`` says why); it
came out beside libcamera 0.5, so it runs over the simulator's libcamera 0.5,
whose FrameDurationLimits default is a scalar (pi-audit F2). 0.3.25 is the
newest one too old: its JpegEncoder cannot encode the YUV420 stream a Pi 5
streams from. scripts/test installs both beside the venv (with v4l2-python3,
which they import where 0.3.38 imports videodev2).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
OLDEST = "0.3.27"
TOO_OLD = "0.3.25"


def _env(picamera2: str, libcamera: str) -> dict:
    return {**os.environ, "PICAM_TEST_PICAMERA2": str(VENV / f"picamera2-{picamera2}"),
            "PICAM_TEST_LIBCAMERA": libcamera}


def test_the_backend_suite_passes_on_the_oldest_supported_picamera2():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_pi_backend.py", "tests/test_pi_motion.py::"
                           "test_motion_reads_the_y_plane_of_a_lores_stream_beside_main"],
                          cwd=ROOT, env=_env(OLDEST, "0.5"),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout


def test_an_older_picamera2_is_refused_at_open_with_one_line():
    code = """
import sys, os
sys.path.insert(0, os.environ["PICAM_TEST_PICAMERA2"])
sys.path.insert(0, "tests/simcam/site"); sys.path.insert(0, "tests")
import picamera2
assert picamera2.__file__.startswith(os.environ["PICAM_TEST_PICAMERA2"]), picamera2.__file__
from picam_api.camera.pi import Picamera2Camera
from picam_api.errors import CameraUnavailable
try:
    Picamera2Camera({}).open()
except CameraUnavailable as exc:
    print(exc.detail)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(TOO_OLD, "0.4"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert "\n" not in line
    assert f"picamera2 {TOO_OLD} is too old" in line and f"{OLDEST} or newer" in line


def test_the_oldest_supported_picamera2_refuses_to_record_saying_why():
    # Its PyavOutput takes no muxer options: an MP4 would keep its index at the end.
    code = """
import sys, os
sys.path.insert(0, os.environ["PICAM_TEST_PICAMERA2"])
sys.path.insert(0, "tests/simcam/site"); sys.path.insert(0, "tests")
import simcam
simcam.reset(libcamera="0.5")
from picam_api.camera.base import CaptureSettings, VideoSettings
from picam_api.camera.pi import Picamera2Camera
from picam_api.errors import CameraUnavailable
camera = Picamera2Camera({})
camera.open()
try:
    camera.start_encoder(VideoSettings(640, 480, 15.0, 2_000_000), camera.file_output("x.mp4"))
except CameraUnavailable as exc:
    print(exc.detail, "|", exc.extra["fix"])
assert camera.capture(CaptureSettings(width=320, height=240), 5.0).data  # stills go on
camera.close()
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(OLDEST, "0.5"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    detail, fix = done.stdout.strip().split(" | ")
    assert "recording video needs a picamera2 whose PyavOutput takes muxer options" in detail
    assert f"picamera2 {OLDEST} has none" in detail and "picamera2" in fix
