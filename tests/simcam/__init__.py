"""A simulated Raspberry Pi camera stack under the REAL picamera2.

Tests run picamera2 from PyPI, unchanged, over a simulated ``libcamera`` Python
binding (``tests/simcam/site/libcamera``, which re-exports ``simcam.binding``)
and a stub ``pykms``. Only tests see them: they are importable when
``tests/simcam/site`` is on ``sys.path`` (the ``sim`` fixtures put it there, and
``simcam.environ()`` adds it to a subprocess's PYTHONPATH).

What is simulated is the binding's surface and the behaviour behind it that a
Pi shows picamera2: see camera.py (pipeline, timing, autofocus, requests),
controls.py (value casting, and where a wrong value fails), geometry.py (the
value types), sensors.py (imx708, imx477, imx219, ov5647; libcamera 0.4, 0.5,
0.6+) and memory.py (the dma-heap: CMA with fragmentation on VC4, the system
heap on a Pi 5).

The seams
---------
picamera2 needs four things that cannot exist on this machine. Each is replaced
at exactly one place, applied as picamera2's modules load (``_Seams``, a
``sys.meta_path`` hook installed when the simulated libcamera is imported, which
picamera2 does first), and nowhere else:

1. **/dev/dma_heap** — ``picamera2.dma_heap.DmaHeap`` becomes ``memory.SimDmaHeap``
   (memfds from the world's heap; ``PermissionError`` when the world says the
   device is not accessible), and the dma-buf sync ioctl in
   ``picamera2.allocators.dmaallocator`` succeeds on those memfds. The allocator
   the backend constructs (``PersistentAllocator``) is picamera2's own, unchanged.
2. **The platform probe** — ``picamera2.platform`` asks ``/dev/video*`` which ISP
   the board has; here its answer is the world's ``platform`` (``vc4`` for a Pi 4
   and older, ``pisp`` for a Pi 5). ``reset(platform=...)`` changes it for a test
   in this process, and resets what picamera2 fixed from it at import
   (``Picamera2.platform``, the encoders' hardware choice), as a fresh import would.
3. **/dev/video11**, the VC4 hardware codec — ``picamera2.encoders.v4l2_encoder``'s
   ``open``, ``fcntl.ioctl`` and ``select.poll`` of it reach ``video11.SimCodec``,
   a V4L2 memory-to-memory encoder that takes the camera's YUV420 dma-bufs and
   hands back real JPEGs (simplejpeg) in buffers picamera2 mmaps from its fd;
   ``codec_broken`` makes it refuse every format (EINVAL), so a V4L2 encoder
   gets as far as a real one that fails (its poll thread started, its fd open).
   H.264 would be one more encoder in ``video11.CODECS``.
4. **pykms** — the DRM preview's binding, imported by picamera2 at import time;
   ``site/pykms`` is an empty stand-in (no preview is ever started).

The world
---------
``world()`` is the simulated machine: which sensors are attached, the libcamera
version, the platform, the CMA size and the faults. It is read from the
``PICAM_SIM`` environment variable (JSON, see ``World.from_env``), so a server
or ``picam-api selftest`` started as a subprocess gets the same world; tests in
this process call ``reset(...)``.

``scene`` puts the mock camera's scripted scene in front of the sensor: its
object (``stage``, a ``mock_scene.Scene``, which tests may change while the
camera runs) is drawn into every frame's streams at the scene time of the
frame (``scene_time``, seconds since the world was made), where the camera
would see it, so motion detection has something to find.

Faults: ``busy`` (another process holds the camera: acquire gives EBUSY),
``unplugged`` (listed but gone: acquire gives ENODEV, a running camera sends no
more frames), ``frontend_timeout`` (frames stop after N), ``dma_heap``
(PermissionError opening /dev/dma_heap), ``codec_broken`` (the hardware encoder
refuses to start), and a small ``cma_mib`` for ENOMEM.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import sensors
from .memory import MIB, Heap

SITE = Path(__file__).resolve().parent / "site"
TESTS = Path(__file__).resolve().parents[1]
# What the firmware and the display driver hold of CMA at boot on VC4.
BOOT_CMA = {64: 4 * MIB}
BOOT_CMA_DEFAULT = 16 * MIB
SYSTEM_HEAP = 2 * 1024 * MIB


@dataclass
class Slot:
    """One attached camera; ``holder`` is the Camera object that acquired it."""

    sensor: sensors.Sensor
    camera_id: str
    holder: object = None


@dataclass
class World:
    sensors: list = field(default_factory=lambda: ["imx708"])
    libcamera: str = "0.6"
    platform: str = "vc4"
    cma_mib: int = 512
    hdr: bool = False
    lux: float = 400.0
    focus_distance_m: float = 1.0  # where the lens starts (1 dioptre): autofocus settles at once
    busy: bool = False
    unplugged: bool = False
    frontend_timeout: int | None = None  # frames after each start, then silence
    dma_heap: bool = True  # False: /dev/dma_heap is not accessible
    codec_broken: bool = False  # True: /dev/video11 refuses every format
    # What is in front of the camera besides the test pattern: the mock's scripted
    # scene (picam_api.camera.mock_scene: an object on a path), timed from now.
    scene: dict = field(default_factory=dict)

    def __post_init__(self):
        from picam_api.camera.mock_scene import Scene

        self.stage = Scene.from_config(self.scene)
        self.epoch = time.monotonic()
        self.slots = [Slot(sensors.SENSORS[name], self._camera_id(name, i))
                      for i, name in enumerate(self.sensors)]
        if self.platform == "pisp":
            self.heap = Heap("system", SYSTEM_HEAP, contiguous=False)
        else:
            self.heap = Heap("linux,cma", self.cma_mib * MIB, contiguous=True,
                             reserved=BOOT_CMA.get(self.cma_mib, BOOT_CMA_DEFAULT))
        self._frames_at_start = None

    def _camera_id(self, name: str, index: int) -> str:
        i2c = sensors.SENSORS[name].i2c
        if self.platform == "pisp":
            return f"/base/axi/pcie@1000120000/rp1/i2c@{88000 + index * 4000}/{i2c}"
        return f"/base/soc/i2c0mux/i2c@{index + 1}/{i2c}"

    @classmethod
    def from_env(cls, text: str | None) -> "World":
        """``PICAM_SIM``: a JSON object of World's fields, e.g. ``{"sensors": ["imx477"]}``."""
        return cls(**json.loads(text)) if text else cls()

    def to_env(self) -> str:
        fields = ("sensors", "libcamera", "platform", "cma_mib", "hdr", "lux", "focus_distance_m",
                  "busy", "unplugged", "frontend_timeout", "dma_heap", "codec_broken", "scene")
        return json.dumps({name: getattr(self, name) for name in fields})

    @property
    def dma_heap_error(self) -> Exception | None:
        if self.dma_heap:
            return None
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/dev/dma_heap/vidbuf_cached")

    def acquire_error(self) -> int | None:
        if self.unplugged:
            return errno.ENODEV
        if self.busy:
            return errno.EBUSY
        return None

    def scene_time(self, at: float | None = None) -> float:
        """Seconds of scene time (``stage``'s clock) at monotonic time ``at`` (default: now)."""
        return (time.monotonic() if at is None else at) - self.epoch

    def frames_stop_at(self, frames: int) -> bool:
        if self.unplugged:
            return True
        return self.frontend_timeout is not None and frames >= self.frontend_timeout


_world: World | None = None


def world() -> World:
    global _world
    if _world is None:
        _world = World.from_env(os.environ.get("PICAM_SIM"))
    return _world


def reset(**fields) -> World:
    """A new simulated machine for this process; the next CameraManager enumerates it."""
    global _world
    from .camera import CameraManager

    from . import seams

    _world = World(**fields)
    CameraManager._instance = None
    main = sys.modules.get("picamera2.picamera2")
    if main is not None:
        manager = main.Picamera2._cm
        for index, camera in list(manager.cameras.items()):
            if not getattr(camera, "is_open", False):
                # picamera2 before 0.3.37 registers a camera before acquiring it and
                # leaves it registered when that fails; a new process starts without.
                manager.cleanup(index)
        if not manager.cameras:
            # picamera2 keeps the manager it last used until its last camera closes;
            # a new machine needs a new one, as a new process would have.
            manager._cms = None
    seams.apply_platform()  # when picamera2 is already imported
    return _world


def meminfo(current: World | None = None) -> str:
    """``/proc/meminfo`` as the simulated board shows it: CMA is the world's heap on VC4."""
    current = current or world()
    lines = {"MemTotal": 1024 * MIB, "MemFree": 600 * MIB, "MemAvailable": 700 * MIB}
    if current.platform == "vc4":
        lines.update(CmaTotal=current.heap.total, CmaFree=current.heap.free())
    return "".join(f"{name + ':':<16}{value // 1024:>8} kB\n" for name, value in lines.items())


def environ(base: dict | None = None, **fields) -> dict:
    """Environment for a subprocess that runs picamera2 over this simulator."""
    env = dict(os.environ if base is None else base)
    paths = [str(SITE), str(TESTS)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PICAM_SIM"] = World(**fields).to_env()
    return env
