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


# The scenarios that repeat the suite's two slowest steps under emulation: a
# second install.sh (the upgrade: a venv's pip install, a restart) and a second
# boot (the reboot). Each is minutes on a loaded 2-core machine; they run under
# `--long` (scripts/test tests/vm --long), the rest of the suite always.
LONG = {"test_upgrade_keeps_data_users_and_config_migrates_and_restarts",
        "test_after_a_reboot_the_service_and_the_time_lapse_are_back"}


def pytest_collection_modifyitems(config, items):
    if config.getoption("--long"):
        return
    long = [item for item in items if item.name in LONG]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if item.name not in LONG]
