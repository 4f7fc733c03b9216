"""/dev/video11, the VC4 hardware codec (bcm2835-codec-encode), as picamera2 drives it (seam 3).

picamera2's ``V4L2Encoder`` (the ``MJPEGEncoder``, and the ``H264Encoder`` on a
Pi 4 and older) opens /dev/video11 and talks to it as a V4L2 memory-to-memory
device: raw frames go in on the OUTPUT queue as the camera's own dma-bufs, and
encoded frames come out of the CAPTURE queue, in buffers the driver allocates
and picamera2 mmaps from the device fd. ``SimCodec`` is that device, answering
the calls v4l2_encoder makes and nothing else:

* ``open``: ``open_device`` gives a SimCodec for /dev/video11 (on VC4 only; a Pi
  5 has no such node, FileNotFoundError) and the real ``open`` for any other path;
* ``ioctl`` (``Ioctl``): QUERYCAP, S_CTRL (bitrate, forced key frames),
  S_EXT_CTRLS and S_PARM (accepted and kept), S_FMT (sizes clamped to the
  codec's 1920x1920, as its try_fmt does; EINVAL for every format when the
  world's ``codec_broken`` says so), REQBUFS (CAPTURE buffers come from the
  world's heap, CMA on VC4, so they can fail with ENOMEM), QUERYBUF, QBUF,
  DQBUF, STREAMON, STREAMOFF;
* ``mmap``: the fd is a memfd holding the CAPTURE buffers at their
  ``mem_offset``, so picamera2 maps them with the real ``mmap``;
* ``poll`` (``select``): POLLOUT when an OUTPUT buffer was consumed (picamera2
  then releases the camera's request), POLLIN when an encoded frame is ready.

A thread per streaming codec encodes each queued frame, in order, with the
encoder its CAPTURE format names (``CODECS``): MJPEG with simplejpeg from the
YUV420 planes, at a quality that follows the bitrate picamera2 asked for, and
H.264 (a Pi 4's ``H264Encoder``) with PyAV's libx264 writing Annex B from
YUV420 or RGB24 frames, in the profile asked for (High unless told), key frames
every I-period and when forced.
"""
from __future__ import annotations

import builtins
import ctypes
import errno
import mmap
import os
import select as _select
import threading
from collections import deque
from fractions import Fraction

OPENED: list["SimCodec"] = []  # every codec opened in this process, for tests
DEVICE = "/dev/video11"
MAX_SIDE = 1920  # the codec's largest frame side
# The driver's CAPTURE buffer size for compressed formats, whatever is asked for less.
MIN_COMPRESSED_BUFFER = 512 << 10
# picamera2's MJPEG bitrates at 1080p30 (mjpeg_encoder.py BITRATE_TABLE) and the
# JPEG quality the simulated codec gives each; in between it interpolates.
MJPEG_QUALITY = ((16e6, 25), (20e6, 35), (30e6, 50), (40e6, 65), (50e6, 80))


def _v4l2():
    """The V4L2 names, from whichever binding the picamera2 in use imports."""
    try:
        import videodev2 as names
    except ImportError:  # picamera2 before 0.3.30 imports v4l2-python3
        import v4l2 as names
    return names


class SimCodec:
    """One open file of /dev/video11."""

    def __init__(self):
        from . import world

        self.world = world()
        self.v = _v4l2()
        self.closed = False
        self._fd = os.memfd_create("simcam-video11", os.MFD_CLOEXEC)
        self._cond = threading.Condition()
        self.output_format: tuple[int, int, int, int] | None = None  # w, h, fourcc, stride
        self.capture_format: int | None = None  # fourcc
        self.bitrate: int | None = None
        self.controls: dict[int, int] = {}  # S_CTRL / S_EXT_CTRLS values by id
        self.frames_per_second: float | None = None
        self._buffer_size = 0
        self._heap_fds: list[int] = []  # the CAPTURE buffers' share of the heap
        self._free = deque()  # CAPTURE indices queued by picamera2
        self._encoded = deque()  # (index, bytes used, flags, timestamp us)
        self._consumed = deque()  # OUTPUT indices done with
        self._work = deque()  # (index, dup'd dma-buf fd, bytes used, timestamp us)
        self._streaming: set[int] = set()
        self._thread: threading.Thread | None = None
        self._force_key = False
        self.encoded = 0  # frames encoded, for tests
        OPENED.append(self)

    def fileno(self) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def close(self) -> None:
        if self.closed:
            return
        self._stream_off(self.v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE)
        self._stream_off(self.v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE)
        self._free_buffers()
        self.closed = True
        os.close(self._fd)

    # -- what poll() sees -------------------------------------------------------------

    def events(self) -> int:
        mask = 0
        if self._encoded:
            mask |= _select.POLLIN
        if self._consumed:
            mask |= _select.POLLOUT
        return mask

    def wait(self, timeout_s: float | None) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self.events(), timeout_s)
            return 0 if self.closed else self.events()

    # -- the ioctls -------------------------------------------------------------------

    def ioctl(self, request: int, arg) -> int:
        v = self.v
        if self.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        handler = {v.VIDIOC_QUERYCAP: self._querycap, v.VIDIOC_S_CTRL: self._s_ctrl,
                   v.VIDIOC_S_EXT_CTRLS: self._s_ext_ctrls, v.VIDIOC_S_PARM: self._s_parm,
                   v.VIDIOC_S_FMT: self._s_fmt, v.VIDIOC_REQBUFS: self._reqbufs,
                   v.VIDIOC_QUERYBUF: self._querybuf, v.VIDIOC_QBUF: self._qbuf,
                   v.VIDIOC_DQBUF: self._dqbuf, v.VIDIOC_STREAMON: self._stream_on,
                   v.VIDIOC_STREAMOFF: self._stream_off_ioctl}.get(request)
        if handler is None:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        handler(arg)
        return 0

    def _querycap(self, cap) -> None:
        for name, text in (("driver", b"bcm2835-codec"), ("card", b"bcm2835-codec-encode"),
                           ("bus_info", b"platform:bcm2835-codec")):
            # A byte array in videodev2, a char array in v4l2-python3: write it in place.
            field = getattr(type(cap), name)
            ctypes.memmove(ctypes.addressof(cap) + field.offset, text, min(len(text), field.size - 1))
        caps = self.v.V4L2_CAP_VIDEO_M2M_MPLANE | self.v.V4L2_CAP_STREAMING
        cap.capabilities = caps | self.v.V4L2_CAP_DEVICE_CAPS
        cap.device_caps = caps

    def _s_ctrl(self, ctrl) -> None:
        if ctrl.id == self.v.V4L2_CID_MPEG_VIDEO_BITRATE:
            self.bitrate = int(ctrl.value)
        elif ctrl.id == self.v.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME:
            self._force_key = True
        self.controls[int(ctrl.id)] = int(ctrl.value)

    def _s_ext_ctrls(self, ext) -> None:
        for i in range(ext.count):
            self.controls[int(ext.controls[i].id)] = int(ext.controls[i].value)

    def _s_parm(self, parm) -> None:
        per_frame = parm.parm.output.timeperframe
        if per_frame.numerator:
            self.frames_per_second = per_frame.denominator / per_frame.numerator

    def _s_fmt(self, fmt) -> None:
        v = self.v
        if self.world.codec_broken or self._streaming:
            raise OSError(errno.EINVAL if not self._streaming else errno.EBUSY, "S_FMT")
        pix = fmt.fmt.pix_mp
        pix.width, pix.height = min(pix.width, MAX_SIDE), min(pix.height, MAX_SIDE)
        if fmt.type == v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE:
            if pix.pixelformat not in (v.V4L2_PIX_FMT_YUV420, v.V4L2_PIX_FMT_RGB24):
                # The real codec takes other YUV and RGB layouts too; picam-api
                # streams YUV420 lores and records from the BGR888 main stream
                # (RGB24 to V4L2), and only those are simulated.
                raise OSError(errno.EINVAL, "S_FMT: the simulated codec takes YUV420 and RGB24 only")
            rgb = pix.pixelformat == v.V4L2_PIX_FMT_RGB24
            stride = max(int(pix.plane_fmt[0].bytesperline), pix.width * (3 if rgb else 1))
            pix.plane_fmt[0].bytesperline = stride
            pix.plane_fmt[0].sizeimage = stride * pix.height if rgb else stride * pix.height * 3 // 2
            self.output_format = (pix.width, pix.height, pix.pixelformat, stride)
        elif fmt.type == v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE:
            if pix.pixelformat not in CODECS:
                raise OSError(errno.EINVAL, "S_FMT: not a format this codec makes")
            size = max(int(pix.plane_fmt[0].sizeimage), MIN_COMPRESSED_BUFFER)
            pix.plane_fmt[0].sizeimage = size
            self.capture_format, self._buffer_size = int(pix.pixelformat), size
        else:
            raise OSError(errno.EINVAL, "S_FMT: not an M2M queue")

    def _reqbufs(self, req) -> None:
        v = self.v
        if req.type == v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE:
            self._free_buffers()
            if req.count:
                if self.capture_format is None:
                    raise OSError(errno.EINVAL, "REQBUFS before S_FMT")
                try:  # vb2-dma-contig: each buffer a contiguous piece of CMA
                    for _ in range(req.count):
                        self._heap_fds.append(self.world.heap.allocate(self._buffer_size, "video11"))
                except OSError:
                    self._free_buffers()
                    raise
                os.ftruncate(self._fd, req.count * self._buffer_size)
        elif req.type != v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE:
            raise OSError(errno.EINVAL, "REQBUFS: not an M2M queue")

    def _free_buffers(self) -> None:
        for fd in self._heap_fds:
            os.close(fd)
        self._heap_fds = []
        with self._cond:
            self._free.clear()
            self._encoded.clear()

    def _querybuf(self, buf) -> None:
        if buf.type != self.v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE or buf.index >= len(self._heap_fds):
            raise OSError(errno.EINVAL, "QUERYBUF")
        buf.m.planes[0].length = self._buffer_size
        buf.m.planes[0].m.mem_offset = buf.index * self._buffer_size

    def _qbuf(self, buf) -> None:
        v = self.v
        with self._cond:
            if buf.type == v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE:
                self._free.append(int(buf.index))
            elif buf.type == v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE:
                plane = buf.m.planes[0]
                seconds, micros = _timeval(buf.timestamp)
                stamp = getattr(buf.timestamp, seconds) * 1_000_000 + getattr(buf.timestamp, micros)
                # Importing a dma-buf keeps it alive until the buffer is dequeued.
                self._work.append((int(buf.index), os.dup(plane.m.fd), int(plane.bytesused), stamp))
            else:
                raise OSError(errno.EINVAL, "QBUF")
            self._cond.notify_all()

    def _dqbuf(self, buf) -> None:
        v = self.v
        with self._cond:
            if buf.type == v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE:
                if not self._consumed:
                    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                buf.index = self._consumed.popleft()
            elif buf.type == v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE:
                if not self._encoded:
                    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                index, used, flags, stamp = self._encoded.popleft()
                buf.index, buf.flags = index, flags
                buf.m.planes[0].bytesused = used
                buf.m.planes[0].length = self._buffer_size
                seconds, micros = _timeval(buf.timestamp)
                whole, part = divmod(stamp, 1_000_000)
                setattr(buf.timestamp, seconds, whole)
                setattr(buf.timestamp, micros, part)
            else:
                raise OSError(errno.EINVAL, "DQBUF")

    def _stream_on(self, kind) -> None:
        self._streaming.add(int(kind.value))
        both = {self.v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE, self.v.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE}
        if self._streaming == both and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="simcam-video11", daemon=True)
            self._thread.start()

    def _stream_off_ioctl(self, kind) -> None:
        self._stream_off(int(kind.value))

    def _stream_off(self, kind: int) -> None:
        with self._cond:
            self._streaming.discard(kind)
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10)
        with self._cond:
            if kind == self.v.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE:
                for _, fd, _, _ in self._work:
                    os.close(fd)
                self._work.clear()
                self._consumed.clear()

    # -- the encoder --------------------------------------------------------------

    def _run(self) -> None:
        codec = CODECS[self.capture_format](self)
        with mmap.mmap(self._fd, len(self._heap_fds) * self._buffer_size) as out:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: len(self._streaming) < 2 or
                                        (self._work and self._free))
                    if len(self._streaming) < 2:
                        return
                    index, fd, used, stamp = self._work.popleft()
                    target = self._free.popleft()
                    force, self._force_key = self._force_key, False
                try:
                    with mmap.mmap(fd, used, mmap.MAP_SHARED, mmap.PROT_READ) as frame:
                        data, key = codec.encode(frame, force)
                finally:
                    os.close(fd)
                flags = self.v.V4L2_BUF_FLAG_KEYFRAME if key else 0
                if len(data) > self._buffer_size:  # the firmware cannot fit it: an error buffer
                    data, flags = b"", flags | self.v.V4L2_BUF_FLAG_ERROR
                offset = target * self._buffer_size
                out[offset:offset + len(data)] = data
                with self._cond:
                    self._consumed.append(index)
                    self._encoded.append((target, len(data), flags, stamp))
                    self.encoded += 1
                    self._cond.notify_all()


class MjpegCodec:
    """The codec's MJPEG: each frame a baseline JPEG of the YUV420 planes."""

    def __init__(self, device: SimCodec):
        self.width, self.height, _, self.stride = device.output_format
        bitrate = device.bitrate or 30e6
        at_1080p = bitrate * 1920 * 1080 / (self.width * self.height)
        self.quality = _interpolate(MJPEG_QUALITY, at_1080p)

    def encode(self, frame: mmap.mmap, force_key: bool) -> tuple[bytes, bool]:
        import numpy as np
        import simplejpeg

        w, h, stride = self.width, self.height, self.stride
        data = np.frombuffer(frame, np.uint8)
        luma = data[:stride * h].reshape(h, stride)[:, :w]
        half = stride // 2
        chroma = data[stride * h:stride * h * 3 // 2].reshape(h, half)
        u = chroma[:h // 2, :w // 2]
        v = chroma[h // 2:, :w // 2]
        return simplejpeg.encode_jpeg_yuv_planes(luma, u, v, self.quality), True


class H264Codec:
    """The codec's H.264: libx264 through PyAV writing Annex B, as the firmware's
    encoder does with picamera2's controls: SPS/PPS before every key frame
    (REPEAT_SEQ_HEADER), a key frame every I-period and when forced, no B-frames."""

    def __init__(self, device: SimCodec):
        import av

        v = device.v
        self.width, self.height, fourcc, self.stride = device.output_format
        self.rgb = fourcc == v.V4L2_PIX_FMT_RGB24
        period = device.controls.get(v.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, 60) or 60
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height, context.pix_fmt = self.width, self.height, "yuv420p"
        context.time_base = Fraction(1, 1_000_000)
        context.framerate = Fraction(device.frames_per_second or 30).limit_denominator(1001)
        context.bit_rate = device.bitrate or 10_000_000
        context.gop_size = period
        context.max_b_frames = 0
        repeat = device.controls.get(v.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 0)
        # The driver's profile menu defaults to High; the baselines make what the
        # firmware does for them (no CABAC, no B-frames), which libx264 calls baseline.
        profile = device.controls.get(v.V4L2_CID_MPEG_VIDEO_H264_PROFILE,
                                      v.V4L2_MPEG_VIDEO_H264_PROFILE_HIGH)
        name = {v.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE: "baseline",
                v.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE: "baseline",
                v.V4L2_MPEG_VIDEO_H264_PROFILE_MAIN: "main"}.get(profile, "high")
        # ultrafast never uses what main and high add (CABAC), so those take superfast.
        context.options = {"preset": "ultrafast" if name == "baseline" else "superfast",
                           "tune": "zerolatency", "profile": name,
                           "x264-params": f"repeat-headers={1 if repeat else 0}"}
        context.open()
        self.context = context
        self.pts = 0

    def encode(self, frame: mmap.mmap, force_key: bool) -> tuple[bytes, bool]:
        import av
        import numpy as np

        w, h, stride = self.width, self.height, self.stride
        data = np.frombuffer(frame, np.uint8)
        if self.rgb:
            picture = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(data[:stride * h].reshape(h, stride)[:, :w * 3].reshape(h, w, 3)),
                format="rgb24").reformat(format="yuv420p")
        else:
            planes = np.concatenate([data[:stride * h].reshape(h, stride)[:, :w].reshape(-1),
                                     data[stride * h:stride * h * 3 // 2]
                                     .reshape(h, stride // 2)[:, :w // 2].reshape(-1)])
            picture = av.VideoFrame.from_ndarray(planes.reshape(h * 3 // 2, w), format="yuv420p")
        picture.pts, self.pts = self.pts, self.pts + 1
        if force_key:  # closed GOPs: an I picture asked for is an IDR, as the firmware's
            picture.pict_type = av.video.frame.PictureType.I
        packets = self.context.encode(picture)
        # zerolatency: one packet per frame, none held back.
        return b"".join(bytes(p) for p in packets), any(p.is_keyframe for p in packets)


def _timeval(value) -> tuple[str, str]:
    """struct timeval's field names: tv_sec/tv_usec in videodev2, secs/usecs in v4l2-python3."""
    names = [name for name, _ in type(value)._fields_]
    return ("tv_sec", "tv_usec") if "tv_sec" in names else ("secs", "usecs")


def _interpolate(table, x: float) -> int:
    if x <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in zip(table, table[1:]):
        if x <= x1:
            return round(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return table[-1][1]


def _fourcc(text: str) -> int:
    return int.from_bytes(text.encode(), "little")


# CAPTURE formats the codec makes: fourcc -> encoder.
CODECS = {_fourcc("MJPG"): MjpegCodec, _fourcc("H264"): H264Codec}


# -- the calls v4l2_encoder makes, pointed at the codec ----------------------------------

def open_device(path, *args, **kwargs):
    if str(path) == DEVICE:
        from . import world

        if world().platform != "vc4":
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        return SimCodec()
    return builtins.open(path, *args, **kwargs)


class Ioctl:
    """``fcntl`` for v4l2_encoder: the codec's ioctls here, every other call the real one."""

    def __init__(self, real):
        self._real = real

    def ioctl(self, fd, request, arg=0, mutate_flag=True):
        if isinstance(fd, SimCodec):
            return fd.ioctl(request, arg)
        return self._real.ioctl(fd, request, arg, mutate_flag)

    def __getattr__(self, name):
        return getattr(self._real, name)


class Select:
    """``select`` for v4l2_encoder: a poll() that waits on a codec's queues."""

    POLLIN, POLLOUT = _select.POLLIN, _select.POLLOUT

    def poll(self):
        return _CodecPoll()

    def __getattr__(self, name):
        return getattr(_select, name)


class _CodecPoll:
    def __init__(self):
        self._codec: SimCodec | None = None
        self._mask = 0

    def register(self, fd, mask=_select.POLLIN | _select.POLLOUT):
        if not isinstance(fd, SimCodec):
            raise TypeError("the simulated poll watches /dev/video11 only")
        self._codec, self._mask = fd, mask

    def poll(self, timeout_ms=None):
        codec = self._codec
        if codec is None or codec.closed:
            return []
        events = codec.wait(None if timeout_ms is None else timeout_ms / 1000) & self._mask
        return [(codec.fileno(), events)] if events and not codec.closed else []
