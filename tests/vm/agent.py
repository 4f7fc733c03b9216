#!/usr/bin/python3
"""The VM's end of tests/vm: runs the host's commands as root, one at a time.

It reads one JSON request a line from a virtio-serial port (which QEMU connects
to a Unix socket on the host, private to the test run) and answers each with
one JSON line: ``{"id", "rc", "stdout", "stderr", "timed_out"}``. Lines that
are not requests (a half-written line from before a reboot) are skipped.
Standard library only: it runs on the image's system Python.
"""
import json
import os
import subprocess
import sys
import time

PORT = "/dev/virtio-ports/picam.agent"


def answer(port: int, message: dict) -> None:
    data = memoryview(json.dumps(message).encode() + b"\n")
    while data:  # the port takes a long answer in several writes
        data = data[os.write(port, data):]


def run(request: dict) -> dict:
    try:
        result = subprocess.run(request["argv"], input=request.get("input", "").encode(),
                                capture_output=True, timeout=request.get("timeout", 60),
                                cwd="/")
        return {"rc": result.returncode, "stdout": result.stdout.decode(errors="replace"),
                "stderr": result.stderr.decode(errors="replace"), "timed_out": False}
    except subprocess.TimeoutExpired as exc:
        return {"rc": None, "stdout": (exc.stdout or b"").decode(errors="replace"),
                "stderr": (exc.stderr or b"").decode(errors="replace"), "timed_out": True}
    except OSError as exc:
        return {"rc": None, "stdout": "", "stderr": str(exc), "timed_out": False}


def main() -> None:
    # udev makes the port's name link once virtio_console is loaded.
    deadline = time.monotonic() + 120
    while not os.path.exists(PORT):
        if time.monotonic() > deadline:
            sys.exit(f"{PORT} did not appear")
        time.sleep(0.2)
    port = os.open(PORT, os.O_RDWR)
    with open(port, "rb", closefd=False) as requests:
        while True:
            line = requests.readline()
            if not line:  # the host is not connected (yet): nothing to read
                time.sleep(0.2)
                continue
            try:
                request = json.loads(line)
                argv = request["argv"]
                request_id = request["id"]
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(argv, list):
                continue
            answer(port, {"id": request_id, **run(request)})


if __name__ == "__main__":
    main()
