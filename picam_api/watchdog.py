"""systemd's service watchdog, fed only while the camera path is alive.

With ``WatchdogSec=`` in the unit, systemd restarts the service when ``WATCHDOG=1``
stops arriving. The pings come from the one ``picam-api serve`` process, which
owns the camera: the first as soon as it is ready (``READY=1`` starts systemd's
clock), then every ``WatchdogSec/2``. They stop when the camera owner is wedged
in a way this process cannot heal by itself:

- a camera call has held the owner's lock well past the capture timeout, so the
  timeout did not fire (a driver stuck in the kernel, a hung ``stop_recording``);
- several captures in a row timed out although the owner closed and reopened the
  camera after each one, which is all it can do short of a new process.

A missing camera does not stop the pings: a restart cannot attach one, and
``/api/v1/health`` already answers 503 for it.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Mapping

from .camera import CameraOwner

log = logging.getLogger(__name__)

# How far past its timeout a camera call may run before it counts as stuck: room
# for opening or closing the camera around a capture under the same lock.
STUCK_MARGIN_S = 10.0
# Capture timeouts in a row (each followed by a reopen) that mean the camera is wedged.
TIMEOUTS_IN_A_ROW = 3


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify(3) message; False when there is no ``$NOTIFY_SOCKET``."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # a socket in the abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def ping_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings, half of ``$WATCHDOG_USEC``; None when there is no watchdog.

    As sd_watchdog_enabled(3): a ``$WATCHDOG_PID`` other than this process means the
    variables were inherited by a process that must not ping.
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0 or not env.get("NOTIFY_SOCKET"):
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2e6


class Watchdog:
    """Each ``tick()`` pings systemd if the camera owner is not wedged."""

    def __init__(self, owner: CameraOwner, env: Mapping[str, str] | None = None):
        self.owner = owner
        self.env = os.environ if env is None else env
        self._dead = False

    def problem(self) -> str | None:
        """Why the camera path counts as dead, or None while it is alive."""
        # Against the call's own bound: a long exposure may run past the base
        # timeout by design (pi-audit F4).
        overdue = self.owner.overdue()
        if overdue > STUCK_MARGIN_S:
            return (f"a camera call has not returned for {self.owner.held_for():.0f} s, "
                    f"{overdue:.0f} s past its timeout")
        if self.owner.timeouts_in_a_row >= TIMEOUTS_IN_A_ROW:
            return (f"the last {self.owner.timeouts_in_a_row} captures timed out, "
                    f"reopening the camera did not help")
        return None

    def tick(self) -> None:
        problem = self.problem()
        if problem is None:
            notify("WATCHDOG=1", self.env)
        # One line when the pings stop and one if they resume, not one per tick.
        dead = problem is not None
        if dead and not self._dead:
            log.error("camera path is dead, so systemd's watchdog is no longer fed "
                      "and will restart the service: %s", problem)
        elif self._dead and not dead:
            log.warning("camera path is alive again; feeding systemd's watchdog")
        self._dead = dead
