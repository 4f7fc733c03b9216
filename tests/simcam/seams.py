"""Applies the four seams (see the package docstring) as picamera2's modules load."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys


def _platform(module) -> None:
    from . import world

    module._platform = module.Platform.PISP if world().platform == "pisp" else module.Platform.VC4


def _dma_heap(module) -> None:
    from .memory import SimDmaHeap

    module.DmaHeap = SimDmaHeap


def _dmaallocator(module) -> None:
    from .memory import DmaBufIoctl, SimDmaHeap

    module.DmaHeap = SimDmaHeap
    module.fcntl = DmaBufIoctl(module.fcntl, module.DMA_BUF_IOCTL_SYNC)


def _v4l2_encoder(module) -> None:
    from . import video11

    module.open = video11.open_device
    module.fcntl = video11.Ioctl(module.fcntl)
    module.select = video11.Select()


def _encoders(encoders) -> None:
    """The encoders' hardware choice, as the world's board would make it at import.

    picamera2 0.3.30 and later take it from the platform; older ones from
    QUERYCAP on /dev/video11, which only a VC4 board has. The V4L2 encoders keep
    the copy they imported.
    """
    from . import world

    hardware = world().platform == "vc4"
    encoders._hw_encoder_available = hardware
    for name in ("mjpeg_encoder", "h264_encoder"):
        module = sys.modules.get(f"picamera2.encoders.{name}")
        if module is not None and hasattr(module, "_hw_encoder_available"):
            module._hw_encoder_available = hardware
    if hardware:
        from picamera2.encoders.h264_encoder import H264Encoder
        from picamera2.encoders.mjpeg_encoder import MJPEGEncoder
    else:
        from picamera2.encoders.libav_h264_encoder import LibavH264Encoder as H264Encoder
        from picamera2.encoders.libav_mjpeg_encoder import LibavMjpegEncoder as MJPEGEncoder
    encoders.H264Encoder, encoders.MJPEGEncoder = H264Encoder, MJPEGEncoder


PATCHES = {
    "picamera2.platform": _platform,
    "picamera2.dma_heap": _dma_heap,
    "picamera2.allocators.dmaallocator": _dmaallocator,
    "picamera2.encoders": _encoders,
    "picamera2.encoders.v4l2_encoder": _v4l2_encoder,
}


class _Loader(importlib.abc.Loader):
    def __init__(self, real, patch):
        self._real, self._patch = real, patch

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        self._real.exec_module(module)
        self._patch(module)


class _Seams(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, patch)
        return spec


def install() -> None:
    if not any(isinstance(f, _Seams) for f in sys.meta_path):
        sys.meta_path.insert(0, _Seams())
    for name, patch in PATCHES.items():  # picamera2 modules loaded before the hook
        if name in sys.modules and name != "picamera2.platform":
            patch(sys.modules[name])
    apply_platform()


def apply_platform() -> None:
    """Re-answer the platform probe, and what picamera2 fixed from it at import."""
    platform = sys.modules.get("picamera2.platform")
    if platform is None:
        return
    _platform(platform)
    main = sys.modules.get("picamera2.picamera2")
    if main is not None:
        main.Picamera2.platform = platform._platform
    encoders = sys.modules.get("picamera2.encoders")
    if encoders is not None:
        _encoders(encoders)
