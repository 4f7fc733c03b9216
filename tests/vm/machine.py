"""A QEMU virtual machine booting the tests/vm image, driven through its agent.

The machine is emulated (``-accel tcg``: nested KVM hangs on these hosts), with
2 vCPUs and 2 GiB. Its disk is a copy-on-write overlay of the cached image, so a
run changes nothing in the cache; the payload (checkout and wheels) is a second,
read-only disk. It has no network but one port forward, from 127.0.0.1 on the
host (``port``) to the service's port 8000. Commands reach it over a virtio-serial port that
QEMU joins to a Unix socket in the run's own directory (see agent.py), and its
serial console is logged to ``console.log`` there.
"""
from __future__ import annotations

import ctypes
import itertools
import json
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .image import Image

GUEST_PORT = 8000
# No more vCPUs than the host has cores; memory enough that MemoryMax=, not the
# VM's size, is what stops the service.
CPUS = 2
MEMORY = "2G"


class MachineError(AssertionError):
    """The VM did not do what was asked; the message ends with its console."""


@dataclass
class Result:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"{self.argv} exited {self.rc}:\n{self.stdout}\n{self.stderr}"


class Machine:
    """One VM: ``start()``, then ``run()`` commands in it as root, ``close()``."""

    def __init__(self, image: Image, payload: Path, workdir: Path, port: int):
        self.image = image
        self.payload = payload
        self.workdir = workdir
        self.console = workdir / "console.log"  # every boot's, one after the other
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None
        self._agent: socket.socket | None = None
        self._buffer = b""
        self._ids = itertools.count(1)

    def start(self, timeout: float = 300) -> None:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(self.image.rootfs), str(self.workdir / "disk.qcow2")],
                       check=True)
        self._boot(timeout)

    def _boot(self, timeout: float) -> None:
        socket_path = self.workdir / "agent.sock"
        argv = [
            # -cpu max: every feature TCG emulates, as the wheels' native code expects.
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", str(CPUS), "-m", MEMORY,
            "-nodefaults", "-no-user-config", "-display", "none",
            # A reboot ends QEMU; reboot() starts it again (see there).
            "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", "root=/dev/vda rw console=ttyS0 mitigations=off",
            "-chardev", f"file,id=console,path={self.console},append=on",
            "-serial", "chardev:console",
            # cache=unsafe: the overlay is thrown away, so host flushes buy nothing.
            "-drive", f"file={self.workdir / 'disk.qcow2'},format=qcow2,if=virtio,cache=unsafe",
            "-drive", f"file={self.payload},format=raw,if=virtio,readonly=on",
            # restrict=on: no way out of the VM; the forward is the one way in.
            "-netdev", f"user,id=net,restrict=on,"
                       f"hostfwd=tcp:127.0.0.1:{self.port}-10.0.2.15:{GUEST_PORT}",
            "-device", "virtio-net-pci,netdev=net",
            "-chardev", f"socket,id=agent,path={socket_path},server=on,wait=off",
            "-device", "virtio-serial-pci",
            "-device", "virtserialport,chardev=agent,name=picam.agent",
            "-device", "virtio-rng-pci",
        ]
        log = (self.workdir / "qemu.log").open("ab")
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        log.close()
        self._agent, self._buffer = None, b""
        deadline = time.monotonic() + 30
        while self._agent is None:
            self._check_alive()
            try:
                agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                agent.connect(str(socket_path))
                self._agent = agent
            except (FileNotFoundError, ConnectionRefusedError):
                agent.close()
                if time.monotonic() > deadline:
                    raise self._error("QEMU did not open the agent's socket")
                time.sleep(0.1)
        self.wait_for_agent(timeout)

    def run(self, *argv: str, input: str = "", timeout: float = 120,
            check: bool = True) -> Result:
        """Run ``argv`` in the VM as root; with ``check``, it must exit 0."""
        request_id = next(self._ids)
        self._send({"id": request_id, "argv": list(argv), "input": input, "timeout": timeout})
        answer = self._answer({request_id}, time.monotonic() + timeout + 30)
        if answer is None:
            raise self._error(f"no answer from the agent to {list(argv)}")
        result = Result(list(argv), answer["rc"], answer["stdout"], answer["stderr"])
        if answer["timed_out"]:
            raise self._error(f"{list(argv)} ran past {timeout} s:\n{result}")
        if check and result.rc != 0:
            raise MachineError(str(result))
        return result

    def sh(self, script: str, **kwargs) -> Result:
        """Run a bash script in the VM (``set -euo pipefail``)."""
        return self.run("bash", "-euo", "pipefail", "-c", script, **kwargs)

    def boot_id(self) -> str:
        return self.run("cat", "/proc/sys/kernel/random/boot_id").stdout.strip()

    def wait_for_agent(self, timeout: float) -> None:
        """Wait until the agent answers. Asks again every few seconds, since a
        request sent while the agent was not running yet may be lost."""
        deadline = time.monotonic() + timeout
        asked: set[int] = set()
        while time.monotonic() < deadline:
            request_id = next(self._ids)
            asked.add(request_id)
            self._send({"id": request_id, "argv": ["true"], "timeout": 10})
            if self._answer(asked, min(deadline, time.monotonic() + 5)) is not None:
                return
        raise self._error(f"the agent did not answer within {timeout:.0f} s")

    def reboot(self, timeout: float = 300) -> None:
        """Reboot the VM with `systemctl reboot` and wait until it is back.

        The guest shuts down as on any reboot; then, instead of resetting the
        machine, QEMU exits (-no-reboot) and a new one boots from the same disk,
        as a power cycle would. A reset guest boots three to ten times slower
        under TCG here than a new QEMU does.
        """
        self.run("systemctl", "--no-block", "reboot")
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._error(f"the VM did not shut down within {timeout} s") from None
        self._agent.close()
        self._boot(timeout)

    def close(self) -> None:
        if self._agent is not None:
            self._agent.close()
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _send(self, message: dict) -> None:
        self._agent.sendall(json.dumps(message).encode() + b"\n")

    def _answer(self, ids: set[int], deadline: float) -> dict | None:
        """The next answer to one of ``ids`` before ``deadline``, else None."""
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                try:
                    answer = json.loads(line)
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("id") in ids:
                    return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._check_alive()
            self._agent.settimeout(min(remaining, 1.0))
            try:
                data = self._agent.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise self._error("QEMU closed the agent's socket")
            self._buffer += data

    def _check_alive(self) -> None:
        if self._process.poll() is not None:
            raise self._error(f"QEMU exited with {self._process.returncode}: "
                              f"{(self.workdir / 'qemu.log').read_text(errors='replace')}")

    def _error(self, message: str) -> MachineError:
        return MachineError(f"{message}\n--- VM console (last lines) ---\n{self.console_tail()}")


def _die_with_parent() -> None:
    # A test run that is killed must not leave a VM behind, burning two cores.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
