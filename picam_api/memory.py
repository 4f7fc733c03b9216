"""The C heap of a long-running process that renders video now and then.

A render allocates hundreds of MiB in libx264's and PyAV's threads, which come
and go with each render. With glibc's defaults (an arena per thread, up to 8 per
core) what they free stays resident in arenas that nothing trims, and the
server grew by 16-40 MiB with every render, without bound. One arena, trimmed
after each render, gives it back: resident memory returns to the same level
after every render. The price is some throughput when many requests run at
once (the bench's ``GET /info`` rows: 20-30 % fewer a second on loopback), which
a camera on a LAN does not reach. Large buffers keep glibc's adaptive mmap
threshold: a fixed one also ended the growth, but made each 1080p capture cost
2000 page faults and 40 % more CPU.

Both do nothing where the C library is not glibc; ``one_arena`` does nothing
when ``MALLOC_ARENA_MAX`` is set in the environment (whoever set it chose).
"""
from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's malloc.h


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def one_arena() -> None:
    """Use a single malloc arena; call before starting threads."""
    libc = _glibc()
    if libc is not None and "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(M_ARENA_MAX, 1)


def give_back() -> None:
    """Return the free memory of the C heap to the kernel (after a render)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
