"""What tests/vm boots: a Debian bookworm root file system, its kernel and initrd,
and the wheels that pip installs inside it.

The image comes from mmdebstrap, out of the Debian package registry that the
host's apt uses (its sources files), and the wheels from PyPI through the host's
pip; the VM itself has no network. Both are cached in ``$PICAM_VM_CACHE`` (else
``~/.cache/picam-api-vm``), under a key made of their inputs: this file,
rootfs-setup.sh and agent.py for the image, setup.cfg and pyproject.toml for the
wheels. A build goes into a temporary directory that is renamed into place when
complete, under a lock, so an interrupted or concurrent run never sees half an
image; superseded entries are deleted.
"""
from __future__ import annotations

import configparser
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
IMAGE_INPUTS = [HERE / "image.py", HERE / "rootfs-setup.sh", HERE / "agent.py"]

# systemd as PID 1 with udev and D-Bus as on Raspberry Pi OS; the Python that
# install.sh builds its venv from; sudo for `sudo scripts/install.sh`; Debian's
# generic kernel, which (unlike the cloud kernel) has vivid, a virtual camera.
PACKAGES = ["systemd", "systemd-sysv", "udev", "dbus", "kmod", "procps", "sudo",
            "python3", "python3-venv", "linux-image-amd64"]
# Kernel modules for hardware that a QEMU guest does not have: half the image.
EXCLUDED_MODULES = ["drivers/gpu", "drivers/net/wireless", "drivers/net/ethernet",
                    "drivers/infiniband", "drivers/media/usb", "drivers/media/pci",
                    "drivers/media/dvb-frontends", "drivers/iio", "sound", "net/wireless"]
# Only what a direct -kernel/-initrd boot from a virtio disk needs, so that
# update-initramfs is quick and does not look at the build host's hardware.
INITRAMFS_SETUP = ('mkdir -p "$1/etc/initramfs-tools/conf.d" && '
                   'echo MODULES=list >"$1/etc/initramfs-tools/conf.d/picam-vm.conf" && '
                   "printf 'virtio_pci\\nvirtio_blk\\next4\\n' "
                   '>>"$1/etc/initramfs-tools/modules"')
ROOTFS_SIZE = "4G"  # sparse; room for photos, a second venv and the journal


@dataclass(frozen=True)
class Image:
    kernel: Path
    initrd: Path
    rootfs: Path


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "picam-api-vm"
    path = Path(os.environ.get("PICAM_VM_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def image(cache: Path) -> Image:
    """The cached image for the current inputs, built first if there is none."""
    target = _cached(cache, "image", _key(IMAGE_INPUTS), _build_image)
    return Image(target / "vmlinuz", target / "initrd.img", target / "rootfs.img")


def wheels(cache: Path) -> Path:
    """A directory of wheels for everything that installing the checkout needs."""
    return _cached(cache, "wheels", _key([REPO / "setup.cfg", REPO / "pyproject.toml"]),
                   _fetch_wheels)


def payload(path: Path, wheel_dir: Path) -> Path:
    """A tar of the checkout (as picam-api/, owned by the VM's user pi) and the wheels
    (as wheels/), to be attached as a raw disk and unpacked inside the VM."""
    def checkout_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        # .venv-ha (test_mqtt's Home Assistant, 400 MB) too: what the tests made is no checkout.
        if name in {".git", "__pycache__", ".pytest_cache", "build"} or \
                name.startswith(".venv") or name.endswith(".egg-info"):
            return None
        info.uid = info.gid = 1000
        info.uname = info.gname = "pi"
        return info

    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(REPO, arcname="picam-api", filter=checkout_only)
        tar.add(wheel_dir, arcname="wheels")
    return path


def _key(inputs: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _locked(cache: Path):
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _cached(cache: Path, kind: str, key: str, build) -> Path:
    target = cache / f"{kind}-{key}"
    with _locked(cache):
        if not target.exists():
            work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=cache))
            started = time.monotonic()
            try:
                build(work)
                work.rename(target)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(f"tests/vm: built {target} in {time.monotonic() - started:.0f} s")
        for old in cache.glob(f"{kind}-*"):
            if old != target:
                shutil.rmtree(old)
    return target


def _host_apt_sources() -> list[str]:
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    found = [str(p) for p in sources
             if p.suffix in {".list", ".sources"} and p.is_file() and p.read_text().strip()]
    if not found:
        raise RuntimeError("the host's apt has no sources to build the VM image from")
    return found


def _build_image(work: Path) -> None:
    root = work / "root"
    excludes = [f"--dpkgopt=path-exclude=/lib/modules/*/kernel/{m}/*" for m in EXCLUDED_MODULES]
    excludes += [f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale")]
    _run("mmdebstrap", "--mode=root", "--variant=apt", "--quiet",
         # The registry may serve a snapshot whose Release files are past Valid-Until.
         "--aptopt=Acquire::Check-Valid-Until \"false\"",
         *excludes, "--include=" + ",".join(PACKAGES),
         f"--essential-hook={INITRAMFS_SETUP}",
         f"--customize-hook={HERE / 'rootfs-setup.sh'} \"$1\"",
         "bookworm", root, *_host_apt_sources())
    [kernel] = (root / "boot").glob("vmlinuz-*")
    [initrd] = (root / "boot").glob("initrd.img-*")
    shutil.copy(kernel, work / "vmlinuz")
    shutil.copy(initrd, work / "initrd.img")
    _run("mke2fs", "-q", "-t", "ext4", "-L", "picam-vm", "-d", root, work / "rootfs.img",
         ROOTFS_SIZE)
    shutil.rmtree(root)


def _fetch_wheels(work: Path) -> None:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    runtime = [line for line in setup["options"]["install_requires"].splitlines() if line.strip()]
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    # For the VM's Python, whatever the host's: CPython 3.11 on bookworm's glibc
    # 2.36, which runs every manylinux wheel up to that (pip needs each tag named).
    platforms = [f"--platform=manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)]
    platforms += [f"--platform={tag}_x86_64" for tag in ("manylinux2014", "manylinux2010",
                                                          "manylinux1")]
    _run(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", "--implementation=cp", "--python-version=3.11",
         "--abi=cp311", *platforms, "--dest", work, *runtime, *build)


def _run(*argv) -> None:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {result.returncode}:\n{result.stdout}\n"
                           f"{result.stderr}")
