"""The picamera2 backend's rows of scripts/bench.py, measured over the simulated Pi (tests/simcam).

Camera memory comes from the simulator's accounting of picamera2's frame buffers,
the same bytes a Pi takes from CMA; RSS is RssAnon, the process's own heap (the
simulator's frame buffers are memfds, as dma-bufs are not anonymous memory either).
Each sensor is measured in a process of its own, so figures do not mix.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = [str(ROOT / "tests" / "simcam" / "site"), str(ROOT / "tests")]
SENSORS = ("imx708", "imx477", "imx219", "ov5647")
MIB = 2**20
# A 256 MiB CMA (a Pi Zero 2 W's, or a Pi 4's default) less what firmware and display take.
CMA_BUDGET = 240 * MIB
STREAM = (640, 480)


def bench_picamera2(record, runs: int) -> None:
    """Add the rows: camera memory and RSS per sensor, and the backend's capture cost."""
    for sensor in SENSORS:
        figures = _in_own_process("memory", sensor)
        still, video = figures["still"], figures["video"]
        record(f"CMA, still configuration, {sensor}", still / MIB, "MiB",
               figures["two_buffer_still"] / MIB, "", None,
               "baseline: the still configuration with 2 buffers (picam-api before issue 11)")
        record(f"CMA, still + stream configurations, {sensor}", (still + video) / MIB, "MiB",
               None, "< 240 MiB (256 MiB CMA)", still + video < CMA_BUDGET,
               f"stream {STREAM[0]}x{STREAM[1]}; the two stay allocated side by side")
        record(f"RSS (anon) streaming, {sensor}", figures["rss_streaming"] / MIB, "MiB",
               figures["rss_before"] / MIB, "", None,
               "baseline: the same process with picamera2 imported, before open")
    figures = _in_own_process("latency", "imx708", str(runs))
    record("still 1920x1080 via the picamera2 backend (simulated imx708)",
           figures["backend"] * 1000, "ms", figures["bare"] * 1000, "backend adds <10%",
           figures["backend"] < figures["bare"] * 1.10,
           "baseline: bare picamera2 doing the same (capture_request, make_image, resize, JPEG)")
    record("still 1920x1080: picamera2 backend over the simulator vs the mock",
           figures["backend"] * 1000, "ms", figures["mock"] * 1000, "", None,
           "the simulator waits for its next frame (14 fps at full resolution) as a Pi does")


def _in_own_process(*argv: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True,
                          check=True, cwd=ROOT, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def _memory(sensor: str) -> dict:
    import picamera2  # noqa: F401  (the baseline RSS includes it)
    import simcam

    from picam_api.camera.base import CaptureSettings
    from picam_api.camera.pi import Picamera2Camera

    simcam.reset(sensors=[sensor], cma_mib=512)
    rss_before = _rss_anon()
    backend = Picamera2Camera({})
    caps = backend.open()
    backend.stream_frame(CaptureSettings(width=STREAM[0], height=STREAM[1]), 10.0, 10.0)
    for _ in range(10):
        backend.stream_frame(CaptureSettings(width=STREAM[0], height=STREAM[1]), 10.0, 10.0)
    rss_streaming = _rss_anon()
    buffers = backend.diagnostics()["buffers"]
    backend.close()
    return {"still": sum(v for k, v in buffers.items() if k.startswith("still-")),
            "video": sum(v for k, v in buffers.items() if k.startswith("video-")),
            "two_buffer_still": _two_buffer_still(caps.sensor_size),
            "rss_before": rss_before, "rss_streaming": rss_streaming}


def _two_buffer_still(size: tuple[int, int]) -> int:
    from picamera2 import Picamera2

    picam2 = Picamera2()
    try:
        picam2.configure(picam2.create_still_configuration(main={"size": size}, buffer_count=2))
        return sum(len(memory) for memory in picam2.allocator.mapped_buffers.values())
    finally:
        picam2.close()


def _latency(sensor: str, runs: int) -> dict:
    import io

    import simcam
    from PIL import Image

    from picam_api.camera.base import CaptureSettings
    from picam_api.camera.mock import MockCamera
    from picam_api.camera.owner import CameraOwner
    from picam_api.camera.pi import Picamera2Camera
    from picam_api.config import from_mapping

    from bench import median_time

    def median(fn) -> float:
        return median_time(fn, runs)

    settings = CaptureSettings(width=1920, height=1080, quality=90)
    simcam.reset(sensors=[sensor])
    owner = CameraOwner(Picamera2Camera({}), timeout=10.0, retry_after=5)
    backend = median(lambda: owner.capture(settings))
    picam2 = owner.backend._picam2

    def bare():
        request = picam2.capture_request(wait=10.0)
        try:
            image = request.make_image("main")
        finally:
            request.release()
        image.resize((1920, 1080), Image.Resampling.LANCZOS, reducing_gap=3.0).save(
            io.BytesIO(), "JPEG", quality=90)
    bare_s = median(bare)
    owner.close()
    mock = MockCamera(from_mapping({})["camera"])
    mock.open()
    mock_s = median(lambda: mock.capture(settings, 10.0))
    return {"backend": backend, "bare": bare_s, "mock": mock_s}


if __name__ == "__main__":
    sys.path[:0] = SITE
    kind, sensor, *rest = sys.argv[1:]
    result = _memory(sensor) if kind == "memory" else _latency(sensor, int(rest[0]))
    print(json.dumps(result))
