"""``picam-api selftest``: the on-Pi check, one PASS/WARN/FAIL line per thing that must work.

picamera2 and libcamera versions; the cameras, model and modes; a default and a
full-resolution still (times, sizes, focus); a few seconds of stream; CMA
against what the camera's configurations need; the devices and groups the
service user needs; the GPIO pin factory; free disk against the reserve; the
systemd unit and its watchdog. Every WARN and FAIL says what to do.

It never fights the running service for the camera: when a picam-api server
answers on the configured address, the camera checks go through its HTTP API
(``service.py``); otherwise the camera is opened here (``local.py``).
"""
from __future__ import annotations

from . import local, service, system
from .report import WARN, Check, Report

__all__ = ["Check", "Report", "run"]

MEMINFO = "/proc/meminfo"
STREAM_S = 3.0


def run(config: dict, meminfo: str = MEMINFO, stream_s: float = STREAM_S) -> Report:
    """Run every check against ``config`` (a loaded picam-api config)."""
    base = service.find_server(config)
    memory = system.meminfo(meminfo)  # before the camera takes its share
    if base is not None:
        report = Report("service", f"a picam-api server answers at {base} and holds the "
                                   f"camera, so the camera checks ask it over HTTP")
        service.check_service(report, config, base, stream_s)
        found = local.CameraFindings()
    else:
        report = Report("local", f"no picam-api server answers at "
                                 f"{config['server']['host']}:{config['server']['port']}, "
                                 f"so the camera is opened here")
        backend = config["camera"]["backend"]
        if backend == "mock":
            report.add("config", WARN, "camera.backend is \"mock\": the service draws "
                       "pictures instead of taking them", "set camera.backend = \"picamera2\" "
                       "(or \"auto\") in /etc/picam-api/config.toml")
        found = local.check_camera(report, config, stream_s)
    system.check_memory(report, memory, found.platform, found.buffers, found.out_of_memory)
    system.check_devices(report)
    system.check_groups(report)
    system.check_gpio(report, config)
    system.check_disk(report, config)
    system.check_systemd(report)
    return report
