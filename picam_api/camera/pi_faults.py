"""What goes wrong between picamera2 and the Pi, told as CameraErrors that say what to do.

Each error carries its fix alone in ``extra["fix"]`` as well as at the end of its
detail, so ``picam-api selftest`` prints it on a line of its own.
"""
from __future__ import annotations

import errno
import os

from ..errors import CameraBusy, CameraError, CameraUnavailable

_BUSY_WORDS = ("busy",)
# What to do about each failure the camera can meet.
CMA_FIX = ("raise CMA in /boot/firmware/config.txt (dtoverlay=vc4-kms-v3d,cma-256 on a 512 MB "
           "board, cma-320 on larger ones) and reboot; `grep Cma /proc/meminfo` shows it")
BUSY_FIX = ("stop the program that holds it (an rpicam-* command, another picamera2 script, "
            "a second picam-api) and retry")
DEVICES_FIX = ("the service user needs the video group's access to /dev/dma_heap/* and "
               "/dev/video*: udev rule 60-dma-heap.rules from raspberrypi-sys-mods "
               "(`ls -l /dev/dma_heap`), and `sudo usermod -aG video USER`")
CABLE_FIX = ("power off, reseat the camera's ribbon cable, power on, and check "
             "`rpicam-hello --list-cameras`")
NO_CAMERA_FIX = ("check the ribbon cable and camera_auto_detect=1 in /boot/firmware/config.txt; "
                 "`rpicam-hello --list-cameras` must list the camera")
FRAMES_FIX = ("the sensor stopped sending frames: check the ribbon cable and the power supply "
              "(`vcgencmd get_throttled` says 0x0 when it is fine), and `dmesg` for unicam or "
              "cfe errors")
UPGRADE_FIX = "sudo apt update && sudo apt install --only-upgrade python3-picamera2"
INSTALL_FIX = ("install python3-picamera2 with apt and create the venv with "
               "--system-site-packages (scripts/install.sh does both)")


def failure(kind: type[CameraError], what: str, fix: str) -> CameraError:
    """``kind`` saying ``what`` happened and then the ``fix``, which it also carries alone."""
    return kind(f"{what}; {fix}", fix=fix)


def open_error(exc: Exception, camera_num: int) -> Exception:
    """Classify a failed ``Picamera2()``, with the line that says what to do."""
    # picamera2 wraps the real cause ("Failed to acquire camera: Device or
    # resource busy") in "Camera __init__ sequence did not complete.", so read
    # the whole chain.
    messages, seen, cur, codes = [], set(), exc, set()
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        messages.append(str(cur))
        if isinstance(cur, OSError) and cur.errno:
            codes.add(cur.errno)
        cur = cur.__cause__ or cur.__context__
    text = ": ".join(m for m in messages if m)
    lowered = text.lower()
    if errno.EBUSY in codes or any(word in lowered for word in _BUSY_WORDS):
        return failure(CameraBusy, f"camera {camera_num} is held by another process ({text})",
                       BUSY_FIX)
    if errno.EACCES in codes or errno.EPERM in codes or "permission denied" in lowered:
        return failure(CameraUnavailable, f"camera {camera_num} cannot be opened: {text}",
                       DEVICES_FIX)
    if errno.ENOMEM in codes:
        return failure(CameraUnavailable, f"camera {camera_num} cannot be opened, out of "
                       f"camera (CMA) memory: {text}", CMA_FIX)
    if errno.ENODEV in codes or "no such device" in lowered:
        return failure(CameraUnavailable, f"camera {camera_num} is not connected ({text})",
                       CABLE_FIX)
    return CameraUnavailable(f"camera {camera_num} did not open: {text}")


def is_enomem(exc: BaseException) -> bool:
    """Out of memory anywhere in the chain: the dma-heap's OSError, or libcamera's
    RuntimeError "Failed to start camera: Cannot allocate memory" (pipeline buffers)."""
    seen, words = set(), os.strerror(errno.ENOMEM)
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOMEM or words in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def drop_failed_allocation(allocator) -> None:
    """Close the buffers of an allocation that ran out of memory half-way.

    picamera2's PersistentAllocator keeps them only in its working lists, which
    its next ``allocate`` replaces without closing: their CMA would stay taken
    until the process exits.
    """
    cached = allocator.buffer_dict.values()
    kept_fds = {fd for entry in cached for fd in entry[0]}
    kept_maps = {id(memory) for entry in cached for memory in entry[3].values()}
    for memory in allocator.mapped_buffers.values():
        if id(memory) not in kept_maps:
            memory.close()
    for fd in allocator.open_fds:
        if fd not in kept_fds:
            os.close(fd)
    allocator.open_fds, allocator.libcamera_fds = [], []
    allocator.frame_buffers, allocator.mapped_buffers, allocator.mapped_buffers_used = {}, {}, {}
