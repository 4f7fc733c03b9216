"""The checks that need no camera: memory, devices, groups, disk, systemd, GPIO."""
from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from ..camera.pi_faults import CMA_FIX, DEVICES_FIX
from .report import FAIL, PASS, WARN, Report

MIB = 2**20
SERVICE = "picam-api"
SERVICE_USER = "picam"
# Each device the camera needs, and the group that grants it on Raspberry Pi OS.
DEVICE_GLOBS = ("/dev/dma_heap/*", "/dev/media*", "/dev/video*")
GROUPS = {"video": "the camera (/dev/video*, /dev/media*, /dev/dma_heap/*)",
          "gpio": "GPIO (/dev/gpiochip*)"}
# Less free space than the reserve plus this is a warning.
DISK_HEADROOM = 1024 * MIB


def meminfo(path: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes by field; {} when it cannot be read."""
    values = {}
    try:
        with open(path) as lines:
            for line in lines:
                name, _, rest = line.partition(":")
                number = rest.split()
                if number and number[0].isdigit():
                    values[name.strip()] = int(number[0]) * 1024
    except OSError:
        pass
    return values


def check_memory(report: Report, memory: dict[str, int], platform: str | None,
                 needed: dict[str, int], memory_failed: bool) -> None:
    """CMA (VC4 boards) or RAM (Pi 5) against what the camera's configurations took.

    ``memory`` is meminfo read before the camera was opened; ``needed`` the bytes
    of frame buffers by configuration; ``memory_failed`` says a camera step ran
    out of memory.
    """
    total, free = memory.get("CmaTotal"), memory.get("CmaFree")
    need = sum(needed.values())
    held = f"; the camera's configurations need {need / MIB:.0f} MiB" if need else ""
    if platform == "pisp":
        available = memory.get("MemAvailable", 0)
        report.add("memory", PASS, f"Pi 5: frame buffers come from RAM, not CMA "
                   f"({available / MIB:.0f} MiB available){held}", needed=needed)
        return
    if total is None or free is None:
        report.add("memory", WARN, "no CMA figures in meminfo (not a Raspberry Pi?)",
                   "on a Pi, `grep Cma /proc/meminfo` shows CmaTotal and CmaFree", needed=needed)
        return
    figures = f"CMA {total / MIB:.0f} MiB, {free / MIB:.0f} MiB free before opening{held}"
    data = {"cma_total": total, "cma_free": free, "needed": needed}
    if memory_failed:
        report.add("memory", FAIL, f"{figures}: the camera ran out of it", CMA_FIX, **data)
    elif need > free:
        report.add("memory", WARN, f"{figures}: they cannot stay allocated together, so every "
                   f"switch between stills and the stream reallocates, which fragments CMA "
                   f"(picamera2#1130)", CMA_FIX, **data)
    else:
        report.add("memory", PASS, figures, **data)


def check_devices(report: Report) -> None:
    """The camera's device nodes are readable and writable by this user."""
    found = sorted(path for pattern in DEVICE_GLOBS for path in glob.glob(pattern))
    if not any(path.startswith("/dev/dma_heap/") for path in found):
        report.add("devices", WARN, "no /dev/dma_heap: not a Raspberry Pi, or a kernel "
                   "without dma-heaps", "the camera needs /dev/dma_heap/* (Raspberry Pi OS "
                   "kernels have it)")
        return
    denied = [path for path in found if not os.access(path, os.R_OK | os.W_OK)]
    if denied:
        report.add("devices", FAIL, f"{_user()} cannot read and write "
                   f"{', '.join(denied[:4])}{' ...' if len(denied) > 4 else ''}", DEVICES_FIX,
                   denied=denied)
    else:
        report.add("devices", PASS, f"{_user()} may use all {len(found)} camera devices "
                   f"(/dev/dma_heap, /dev/media*, /dev/video*)")


def check_groups(report: Report) -> None:
    """The service user's groups grant the camera and GPIO."""
    user = _user()
    if os.geteuid() == 0:
        report.add("groups", WARN, "running as root, not as the service user",
                   f"run `sudo picam-api selftest`: the installed command runs as {SERVICE_USER}")
        return
    names = {grp.getgrgid(gid).gr_name for gid in os.getgroups()}
    names.add(grp.getgrgid(os.getegid()).gr_name)
    missing = [group for group in GROUPS if group not in names]
    if missing:
        grants = "; ".join(f"{group} grants {GROUPS[group]}" for group in missing)
        report.add("groups", WARN, f"{user} is not in {', '.join(missing)} ({grants})",
                   f"sudo usermod -aG {','.join(missing)} {user}, then restart the service")
    else:
        report.add("groups", PASS, f"{user} is in {', '.join(GROUPS)}")


def check_disk(report: Report, config: dict) -> None:
    """Free space in the data dir against the store's reserve."""
    data_dir = Path(config["storage"]["data_dir"] or ".")
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    reserve = config["storage"]["reserve_mb"] * MIB
    detail = f"{free / MIB:.0f} MiB free in {data_dir}; the reserve is {reserve / MIB:.0f} MiB"
    fix = "free some space, or set retention (storage.max_photos / storage.max_bytes)"
    if free < reserve:
        report.add("disk", FAIL, f"{detail}: photos are refused", fix, free=free, reserve=reserve)
    elif free < reserve + DISK_HEADROOM:
        report.add("disk", WARN, f"{detail}: less than 1 GiB left above it", fix, free=free,
                   reserve=reserve)
    else:
        report.add("disk", PASS, detail, free=free, reserve=reserve)


def check_systemd(report: Report) -> None:
    """The unit's state, its watchdog and how often it restarted."""
    if not os.path.isdir("/run/systemd/system"):
        report.add("service", WARN, "systemd is not running here",
                   "on the Pi, scripts/install.sh installs picam-api as a systemd service")
        return
    try:
        done = subprocess.run(["systemctl", "show", SERVICE, "--property=LoadState,ActiveState,"
                               "SubState,WatchdogUSec,NRestarts"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.add("service", WARN, f"systemctl failed: {exc}", "check `systemctl status picam-api`")
        return
    state = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if state.get("LoadState") != "loaded":
        report.add("service", WARN, f"the {SERVICE} unit is not installed",
                   "sudo scripts/install.sh installs and starts it")
        return
    watchdog = state.get("WatchdogUSec", "0")
    detail = (f"{SERVICE} is {state.get('ActiveState')} ({state.get('SubState')}), watchdog "
              f"{watchdog if watchdog not in ('0', 'infinity') else 'off'}, "
              f"{state.get('NRestarts', '0')} restarts")
    data = {"state": state}
    if state.get("ActiveState") == "failed":
        report.add("service", FAIL, detail, f"journalctl -u {SERVICE} -b says why", **data)
    elif state.get("ActiveState") != "active":
        report.add("service", WARN, detail, f"sudo systemctl start {SERVICE}", **data)
    elif state.get("NRestarts", "0") != "0":
        report.add("service", WARN, detail, f"journalctl -u {SERVICE} -b shows why it restarted",
                   **data)
    else:
        report.add("service", PASS, detail, **data)


def check_gpio(report: Report, config: dict) -> None:
    """The pin factory picam-api would use, and its gpiochip."""
    from gpiozero.pins.mock import MockFactory

    from ..errors import ConfigError
    from ..gpio.factory import make_pin_factory

    try:
        factory = make_pin_factory(config["gpio"]["pin_factory"])
    except ConfigError as exc:
        report.add("gpio", FAIL, exc.detail, "install python3-lgpio (scripts/install.sh does), "
                   "or set gpio.pin_factory")
        return
    try:
        name = type(factory).__name__
        if isinstance(factory, MockFactory):
            report.add("gpio", WARN, f"{name}: pins are simulated (not a Raspberry Pi)",
                       "on a Pi, gpiozero picks lgpio (python3-lgpio)", factory=name)
        else:
            chip = getattr(factory, "_chip", None)
            where = f", /dev/gpiochip{chip}" if chip is not None else ""
            report.add("gpio", PASS, f"{name}{where}", factory=name, chip=chip)
    finally:
        factory.close()


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
