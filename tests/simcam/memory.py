"""The dma-heap the frame buffers come from: memfds drawn from a budget, as CMA would give them.

picamera2's ``DmaAllocator`` opens ``/dev/dma_heap/vidbuf_cached`` (else ``linux,cma``)
and asks it for one dma-buf per frame buffer (``DMA_HEAP_IOCTL_ALLOC``), then
``mmap``s it and brackets CPU access with ``DMA_BUF_IOCTL_SYNC``. Here each
dma-buf is a memfd of the same size (picamera2 and the simulated camera map the
same memory, so a frame written by the camera is what picamera2 reads), taken
from a ``Heap``:

* On VC4 boards (Pi Zero 2 W to Pi 4) the heap is the CMA area: one contiguous
  region of ``cma_mib``. A buffer needs one contiguous run (first fit), so
  fragmentation matters. The kernel lends free CMA pages to movable allocations
  and cannot always migrate them back; the model pins one 1 MiB block in the
  middle of every large buffer freed (up to an eighth of the area), so repeated
  free-and-reallocate at full resolution ends in ``ENOMEM`` the way upstream
  reports it on a Zero 2 W (picamera2#1130), and stays that way until "reboot"
  (a new ``World``).
* On a Pi 5 (PISP) ``vidbuf_cached`` is the system heap: no contiguity, only RAM.

A buffer is freed when nothing refers to it any more, as a dma-buf is: the
heap checks ``/proc/self/fd`` and ``/proc/self/maps`` for its memfd, so a copy of
the fd that libcamera keeps, or an ``mmap`` that picamera2 has not closed, keeps
it allocated exactly as on the Pi.
"""
from __future__ import annotations

import errno
import itertools
import os
import threading
from dataclasses import dataclass

MIB = 2**20
PAGE = 4096
PIN_SIZE = MIB          # one pinned block per large free
PIN_MIN_FREE = 4 * MIB  # frees smaller than this leave no pin
_names = itertools.count(1)


@dataclass
class Block:
    offset: int
    size: int
    name: str  # the memfd's name; "" for pinned and boot-time blocks
    label: str


class Heap:
    """A dma-heap with a size budget; ``contiguous`` makes it CMA."""

    def __init__(self, name: str, total: int, contiguous: bool, reserved: int = 0):
        self.name = name
        self.total = total
        self.contiguous = contiguous
        self._lock = threading.Lock()
        self._blocks: list[Block] = []  # sorted by offset
        self._pinned = 0
        self.allocations = 0
        self.failures = 0
        self.peak = 0
        if reserved:
            # What the firmware and the display driver take at boot.
            self._blocks.append(Block(0, reserved, "", "boot"))

    # -- what a test or a benchmark reads ---------------------------------------

    def used(self) -> int:
        with self._lock:
            self._reap()
            return sum(b.size for b in self._blocks)

    def free(self) -> int:
        return self.total - self.used()

    def buffers(self) -> list[tuple[str, int]]:
        """(label, size) of the live frame buffers."""
        with self._lock:
            self._reap()
            return [(b.label, b.size) for b in self._blocks if b.name]

    def frame_buffers(self) -> list[str]:
        """The memfd names of picamera2's live frame buffers (not the pipeline's own)."""
        with self._lock:
            self._reap()
            return sorted(b.name for b in self._blocks if b.label.startswith("picamera2"))

    # -- the allocator --------------------------------------------------------------

    def allocate(self, size: int, label: str) -> int:
        """A new memfd of ``size`` bytes, or ``OSError(ENOMEM)`` as the ioctl raises it."""
        size = -(-size // PAGE) * PAGE
        with self._lock:
            self._reap()
            offset = self._place(size)
            if offset is None:
                self.failures += 1
                raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
            name = f"simdma-{next(_names)}"
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
            self._blocks.append(Block(offset, size, name, label))
            self._blocks.sort(key=lambda b: b.offset)
            self.allocations += 1
            self.peak = max(self.peak, sum(b.size for b in self._blocks))
            return fd

    def _place(self, size: int) -> int | None:
        if not self.contiguous:
            used = sum(b.size for b in self._blocks)
            return used if used + size <= self.total else None
        cursor = 0
        for block in self._blocks:
            if block.offset - cursor >= size:
                return cursor
            cursor = max(cursor, block.offset + block.size)
        return cursor if self.total - cursor >= size else None

    def _reap(self) -> None:
        """Free the buffers no fd and no mapping of this process refers to any more."""
        live = _referenced_memfds()
        kept = []
        for block in self._blocks:
            if not block.name or block.name in live:
                kept.append(block)
                continue
            if (self.contiguous and block.size >= PIN_MIN_FREE
                    and self._pinned + PIN_SIZE <= self.total // 8):
                middle = block.offset + (block.size // 2 // PAGE) * PAGE
                kept.append(Block(middle, PIN_SIZE, "", "pinned"))
                self._pinned += PIN_SIZE
        self._blocks = sorted(kept, key=lambda b: b.offset)


def _referenced_memfds() -> set[str]:
    names = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:simdma-"):
            names.add(target[len("/memfd:"):].split(" ")[0])
    with open("/proc/self/maps") as maps:
        for line in maps:
            at = line.find("/memfd:simdma-")
            if at >= 0:
                names.add(line[at + len("/memfd:"):].split(" ")[0].strip())
    return names


class SimDmaHeap:
    """Stands in for ``picamera2.dma_heap.DmaHeap``: same methods, the world's heap behind them."""

    def __init__(self):
        from . import world
        from picamera2.dma_heap import UniqueFD

        w = world()
        if w.dma_heap_error is not None:
            # What os.open("/dev/dma_heap/vidbuf_cached") raises without the video
            # group's rights; picamera2 catches only FileNotFoundError there.
            raise w.dma_heap_error
        self._unique = UniqueFD
        self._heap = w.heap
        self._handle = UniqueFD(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))

    @property
    def isValid(self):
        return self._handle.isValid()

    def alloc(self, name, size):
        return self._unique(self._heap.allocate(size, name))

    def close(self):
        fd = self._handle.release()
        if fd >= 0:
            os.close(fd)


class DmaBufIoctl:
    """The ``fcntl`` module as picamera2's dmaallocator sees it: DMA_BUF_IOCTL_SYNC on a
    memfd succeeds (there is no cache to sync), every other call is the real one."""

    def __init__(self, real, sync_request: int):
        self._real = real
        self._sync = sync_request

    def ioctl(self, fd, request, arg=0, mutate_flag=True):
        if request == self._sync:
            return 0
        return self._real.ioctl(fd, request, arg, mutate_flag)

    def __getattr__(self, name):
        return getattr(self._real, name)
