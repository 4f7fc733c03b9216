"""The VM that tests/vm runs its scenarios in: one boot for the whole session."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from conftest import free_port

from .image import cache_dir, image, payload, wheels
from .machine import Machine

# What each tool of the suite comes in (.ci/run installs the missing ones).
TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
         "mmdebstrap": "mmdebstrap", "mke2fs": "e2fsprogs"}


@pytest.fixture(scope="session")
def vm(tmp_path_factory):
    """A booted VM with the checkout in /home/pi/picam-api and the wheels where its
    /etc/pip.conf looks; nothing of picam-api installed yet."""
    missing = sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)})
    if missing:
        reason = f"the VM suite needs {', '.join(missing)}: apt-get install {' '.join(missing)}"
        print(reason)
        pytest.skip(reason)
    if os.geteuid() != 0:
        # Like tests/test_install.py: mmdebstrap --mode=root and the image's
        # file ownership need root.
        pytest.skip("the VM suite must run as root (it builds the VM image with mmdebstrap)")
    started = time.monotonic()
    cache = cache_dir()
    vm_image, wheel_dir = image(cache), wheels(cache)
    work = tmp_path_factory.mktemp("vm")
    machine = Machine(vm_image, payload(work / "payload.tar", wheel_dir), work, free_port())
    ready = time.monotonic()
    try:
        machine.start()
        print(f"tests/vm: image ready in {ready - started:.0f} s, "
              f"booted in {time.monotonic() - ready:.0f} s")
        # The payload disk is a tar: the checkout goes where a Pi user keeps it.
        machine.sh("tar -xf /dev/vdb -C /home/pi picam-api\n"
                   "mkdir -p /var/cache/picam-vm\n"
                   "tar -xf /dev/vdb -C /var/cache/picam-vm wheels")
        yield machine
    finally:
        machine.close()

