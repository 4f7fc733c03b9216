"""/dev/video11, the VC4 codec, as far as a failing hardware encoder gets (seam 3).

``open_device`` stands in for ``open`` inside picamera2's v4l2_encoder: the
codec opens (a pollable fd), VIDIOC_QUERYCAP answers "bcm2835-codec-encode",
and the format ioctls fail with EINVAL, which is how the real driver refuses a
format or size it cannot encode. So a V4L2 encoder started here ends the way
a real one that fails does: its poll thread running and the device open
(pi-audit F9). An emulation of the whole M2M codec (REQBUFS, QBUF/DQBUF on
this fd, encoded frames from simplejpeg or PyAV) would replace ``SimCodec`` and
``Ioctl`` and nothing else.
"""
from __future__ import annotations

import builtins
import errno
import os

OPENED: list["SimCodec"] = []  # every codec opened in this process, for tests


class SimCodec:
    def __init__(self):
        # A pipe's read end: pollable, and never ready, like a codec not streaming.
        self._fd, self._peer = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.closed = False
        OPENED.append(self)

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)
            os.close(self._peer)


def open_device(path, *args, **kwargs):
    if str(path) == "/dev/video11":
        return SimCodec()
    return builtins.open(path, *args, **kwargs)


class Ioctl:
    """``fcntl`` for v4l2_encoder: the codec's ioctls here, every other call the real one."""

    def __init__(self, real):
        self._real = real

    def ioctl(self, fd, request, arg=0, mutate_flag=True):
        if not isinstance(fd, SimCodec):
            return self._real.ioctl(fd, request, arg, mutate_flag)
        import videodev2

        if fd.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if request == videodev2.VIDIOC_QUERYCAP:
            arg.driver = b"bcm2835-codec"
            arg.card = b"bcm2835-codec-encode"
            return 0
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    def __getattr__(self, name):
        return getattr(self._real, name)
