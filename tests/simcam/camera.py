"""CameraManager, Camera, configurations, requests and frame buffers, as the binding has them,
with a Raspberry Pi pipeline behind them.

What the Pi pipeline does and the simulation keeps:

* ``validate()`` adjusts what it cannot do (odd sizes, formats the ISP lacks,
  transposes) and says ``Adjusted``; the raw stream becomes the sensor mode
  chosen (from ``sensor_config`` when set, else by libcamera's scoring);
  strides are padded (32 bytes on VC4, 64 on PISP; twice that for YUV420 luma).
* ``configure()`` picks the sensor mode, and ``controls`` changes with it
  (ExposureTime and FrameDurationLimits ranges, ScalerCrop's maximum).
* Frames come at the rate FrameDurationLimits and ExposureTime allow, in real
  time, from a thread per started camera. Exposure, gain and frame duration
  reach the sensor two frames after the request that carried them
  (DelayedControls); ISP controls apply to their own frame. The first two
  frames after ``start`` are ``Startup`` frames (libcamera 0.5+), or dropped
  inside the pipeline (older).
* Auto exposure as the Pi's AGC: a total exposure for the world's lux, reached
  at full speed over the first frames after start and 15% of the way each frame
  after, split into shutter and gain by the "normal" profile's stages; a
  manual exposure or gain fixes that part and the AGC fills the other.
* ISP controls as the IPA takes them: a ColourCorrectionMatrix only with
  AwbEnable off.
* Autofocus (imx708): manual (the lens stays where LensPosition puts it),
  auto (a scan after AfTrigger Start) or continuous; the lens moves a step a
  frame towards the scene's focus, AfState says Scanning then Focused.
* Every completed request goes to the manager's ready list and bumps its
  eventfd, which picamera2's listener thread polls; ``stop()`` cancels the
  requests still queued.
* A request's controls are cast when set (controls.py); the IPA's reading of
  their shape is modelled in ``queue_request``, where a wrong shape raises
  RuntimeError. On a Pi that is libcamera's ``assert()`` in the IPA thread; here
  it is raised where the request is queued, which is inside picamera2's event
  loop when the request is recycled, so it kills that loop the same way.
"""
from __future__ import annotations

import datetime as dt
import enum
import errno
import os
import threading
import time
import weakref

from . import controls as ctl
from . import pixels, sensors
from .geometry import ColorSpace, Orientation, PixelFormat, Rectangle, Size

STARTUP_FRAMES = 2
CONTROL_DELAY = 2  # frames from a request to the sensor using its exposure and gain
# Pictures drawn, by what they show, kept for every camera in the process: drawing
# one takes longer than a frame, and a test opens a camera many times.
PICTURES_KEPT = 12
_PICTURES: dict[tuple, list] = {}
_PICTURES_LOCK = threading.Lock()
# How far behind its schedule the frame thread may fall (drawing a new picture, a
# loaded machine) before it stops catching up and starts afresh from now.
LAG_RESYNC_S = 1.0
SENSOR_CONTROLS = {"ExposureTime", "ExposureTimeMode", "AnalogueGain", "AnalogueGainMode",
                   "AeEnable", "FrameDurationLimits"}
# What the AE aims for at the world's lux: exposure x gain in microseconds.
AE_TARGET_AT_400_LUX = 16000
# The Raspberry Pi AGC's "normal" exposure profile (imx708.json): the shutter times
# and gains it moves through in turn (divideUpExposure), and its filter: full speed
# for the first frames after start, then this share of the way each frame.
AE_SHUTTERS = (100, 15000, 30000, 60000, 66666)
AE_GAINS = (1.0, 1.0, 2.0, 4.0, 16.0)
AE_SPEED = 0.15
AE_STARTUP_FRAMES = 5
AUTO_CCM = (1.7, -0.5, -0.2, -0.3, 1.6, -0.3, 0.0, -0.6, 1.6)  # what AWB picks at 5100 K


def _divide_up(total: float, shortest: int, longest: int, max_gain: float) -> tuple[float, float]:
    """Split a total exposure (us x gain) into shutter and gain, as the AGC's
    divideUpExposure() does: each stage's shutter first, then its gain."""
    def limit(shutter):
        return min(max(shutter, shortest), longest)
    exposure, gain = limit(AE_SHUTTERS[0]), min(AE_GAINS[0], max_gain)
    if exposure * gain >= total:
        return exposure, gain
    for stage in range(1, len(AE_GAINS)):
        stage_shutter = limit(AE_SHUTTERS[stage])
        if stage_shutter * gain >= total:
            return total / gain, gain
        exposure = stage_shutter
        if exposure * min(AE_GAINS[stage], max_gain) >= total:
            return exposure, total / exposure
        gain = min(AE_GAINS[stage], max_gain)
    return exposure, gain


def _system_error(code: int, what: str) -> RuntimeError:
    # std::system_error reaches Python as RuntimeError "<what>: <strerror>".
    return RuntimeError(f"{what}: {os.strerror(code)}")


class StreamRole(enum.Enum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


class SizeRange:
    def __init__(self, lo: Size, hi: Size):
        self.min, self.max = lo, hi


class StreamFormats:
    def __init__(self, table: dict[str, list[tuple[int, int]]], ranges: dict[str, tuple]):
        self._table, self._ranges = table, ranges

    @property
    def pixel_formats(self):
        return [PixelFormat(name) for name in self._table]

    def sizes(self, pixel_format):
        return [Size(*s) for s in self._table.get(str(pixel_format), [])]

    def range(self, pixel_format):
        lo, hi = self._ranges.get(str(pixel_format), ((0, 0), (0, 0)))
        return SizeRange(Size(*lo), Size(*hi))


class Stream:
    """One of the pipeline's fixed streams (ISP outputs, Unicam/CFE raw): the same object
    across configures, as picamera2's PersistentAllocator assumes."""

    def __init__(self, name: str):
        self.name = name
        self._configuration = None

    @property
    def configuration(self):
        return self._configuration


class StreamConfiguration:
    def __init__(self, pixel_format: str, size: tuple[int, int], buffer_count: int,
                 formats: StreamFormats):
        self.pixel_format = PixelFormat(pixel_format)
        self.size = Size(*size)
        self.stride = 0
        self.frame_size = 0
        self.buffer_count = buffer_count
        self.color_space = None
        self.formats = formats
        self._stream: Stream | None = None

    @property
    def stream(self):
        return self._stream

    def __str__(self):
        return f"{self.size}-{self.pixel_format}"


class SensorConfiguration:
    def __init__(self):
        self.bit_depth = 0
        self.analog_crop = Rectangle()
        self.output_size = Size()

    def is_valid(self) -> bool:
        return bool(self.bit_depth and not self.output_size.is_null)


class CameraConfiguration:
    class Status(enum.Enum):
        Valid = 0
        Adjusted = 1
        Invalid = 2

    def __init__(self, camera: "Camera", streams: list[StreamConfiguration]):
        self._camera = camera
        self._streams = streams
        self.orientation = Orientation.Rotate0
        self.sensor_config = None
        self._validated: tuple | None = None  # (mode, status)

    def at(self, index: int) -> StreamConfiguration:
        if not 0 <= index < len(self._streams):
            raise IndexError("list index out of range")
        return self._streams[index]

    def __iter__(self):
        return iter(self._streams)

    def __len__(self):
        return len(self._streams)

    @property
    def size(self):
        return len(self._streams)

    @property
    def empty(self):
        return not self._streams

    def validate(self):
        status = self._camera._validate(self)
        return status


class FrameMetadata:
    class Status(enum.Enum):
        Success = 0
        Error = 1
        Cancelled = 2
        Startup = 3

    class Plane:
        def __init__(self, bytes_used: int):
            self.bytes_used = bytes_used

    def __init__(self):
        self.status = FrameMetadata.Status.Success
        self.sequence = 0
        self.timestamp = 0
        self.planes = []


class _SharedFD:
    """libcamera's SharedFD: a dup of the fd it was given, closed with its last owner.

    The number stays readable after the close: a FrameBuffer's fd is C++ state
    that lives as long as the wrapper, and Python finalizers of a garbage cycle
    (picamera2's allocator reading ``plane.fd`` in ``__del__``) may run after this one.
    """

    def __init__(self, fd: int):
        self.fd = os.dup(fd) if fd >= 0 else -1
        self._open = fd >= 0

    def __del__(self):
        if self._open:
            self._open = False
            try:
                os.close(self.fd)
            except OSError:
                pass


class FrameBuffer:
    class Plane:
        def __init__(self):
            self._fd: _SharedFD | None = None
            self.offset = 0
            self.length = 0

        @property
        def fd(self):
            return -1 if self._fd is None else self._fd.fd

        @fd.setter
        def fd(self, value: int):
            self._fd = _SharedFD(value)

        def _copy(self):
            plane = FrameBuffer.Plane()
            plane._fd, plane.offset, plane.length = self._fd, self.offset, self.length
            return plane

    def __init__(self, planes, cookie=0):
        self._planes = [p._copy() for p in planes]
        self.cookie = cookie
        self.metadata = FrameMetadata()
        self.metadata.planes = [FrameMetadata.Plane(p.length) for p in self._planes]

    @property
    def planes(self):
        return [p._copy() for p in self._planes]


class Request:
    class Status(enum.Enum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    class ReuseFlag(enum.Enum):
        Default = 0
        ReuseBuffers = 1

    def __init__(self, camera: "Camera", cookie: int):
        self._camera = camera
        self.cookie = cookie
        self.status = Request.Status.Pending
        self.sequence = 0
        self.buffers: dict = {}
        self.metadata: dict = {}
        self._controls: dict = {}  # ControlId -> cast value

    @property
    def has_pending_buffers(self) -> bool:
        return self.status == Request.Status.Pending and bool(self.buffers)

    def add_buffer(self, stream, buffer) -> None:
        if stream in self.buffers or not isinstance(buffer, FrameBuffer):
            raise _system_error(errno.EEXIST if stream in self.buffers else errno.EINVAL,
                                "Failed to add buffer")
        self.buffers[stream] = buffer

    def set_control(self, cid, value) -> None:
        if not isinstance(cid, ctl.ControlId):
            raise TypeError("set_control(): incompatible function arguments")
        cast = ctl.to_control_value(value, cid)
        if cid in self._camera._control_infos:
            self._controls[cid] = cast
        # else ControlList::set logs "Control ... is not valid" and drops it.

    def reuse(self) -> None:
        # The binding's reuse() always keeps the buffers (ReuseFlag::ReuseBuffers).
        self.status = Request.Status.Pending
        self.metadata = {}
        self._controls = {}


class CameraManager:
    """The process's one camera manager (a weak singleton, as in py_camera_manager.cpp)."""

    _instance = None

    def __init__(self):
        from . import world

        self._world = world()
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._lock = threading.Lock()
        self._ready: list[Request] = []
        self._cameras = [Camera(self, slot) for slot in self._world.slots]

    @classmethod
    def singleton(cls):
        manager = cls._instance() if cls._instance is not None else None
        if manager is None:
            manager = cls()
            cls._instance = weakref.ref(manager)
        return manager

    @property
    def version(self) -> str:
        return f"v{self._world.libcamera}.0+rpt-sim"

    @property
    def cameras(self):
        return list(self._cameras)

    def get(self, camera_id: str):
        return next((c for c in self._cameras if c.id == camera_id), None)

    @property
    def event_fd(self) -> int:
        return self._efd

    def get_ready_requests(self):
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return []
        with self._lock:
            ready, self._ready = self._ready, []
        return ready

    def _complete(self, request: Request) -> None:
        with self._lock:
            self._ready.append(request)
        os.eventfd_write(self._efd, 1)

    def __del__(self):
        try:
            os.close(self._efd)
        except OSError:
            pass


class Camera:
    def __init__(self, manager: CameraManager, slot):
        self._manager = manager
        self._slot = slot
        self._sensor: sensors.Sensor = slot.sensor
        self._world = manager._world
        self._pisp = self._world.platform == "pisp"
        self._acquired = False
        self._configured: CameraConfiguration | None = None
        self._mode = max(self._modes(), key=lambda m: m.size[0] * m.size[1])
        self._control_infos = self._make_controls()
        self._pipeline_fds: list[int] = []
        self._frames: _FrameThread | None = None
        self._streams = {name: Stream(name) for name in ("isp0", "isp1", "raw")}

    # -- what picamera2 reads ------------------------------------------------------

    @property
    def id(self) -> str:
        return self._slot.camera_id

    @property
    def controls(self):
        return dict(self._control_infos)

    @property
    def properties(self):
        return {ctl.PROPERTY_IDS[name]: ctl.from_python_terms(ctl.PROPERTY_IDS[name], value)
                for name, value in sensors.properties_for(self._sensor).items()}

    # -- lifecycle -------------------------------------------------------------------

    def acquire(self) -> None:
        code = self._world.acquire_error()
        if code is None and (self._acquired or self._slot.holder is not None):
            code = errno.EBUSY
        if code is not None:
            raise _system_error(code, "Failed to acquire camera")
        self._acquired = True
        self._slot.holder = self

    def release(self) -> None:
        if self._frames is not None:
            raise _system_error(errno.EBUSY, "Failed to release camera")
        if not self._acquired:
            raise _system_error(errno.EACCES, "Failed to release camera")
        self._free_pipeline_buffers()
        self._acquired = False
        self._slot.holder = None
        self._configured = None

    def generate_configuration(self, roles):
        streams = []
        for role in roles:
            if role == StreamRole.Raw:
                mode = self._mode
                streams.append(StreamConfiguration(mode.format, mode.size, 2, self._raw_formats()))
            else:
                size = {StreamRole.StillCapture: self._sensor.pixel_array,
                        StreamRole.VideoRecording: (1920, 1080),
                        StreamRole.Viewfinder: (800, 600)}[role]
                count = 1 if role == StreamRole.StillCapture else 4
                streams.append(StreamConfiguration("YUV420", size, count, self._isp_formats()))
        if sum(1 for r in roles if r != StreamRole.Raw) > 2 or \
                sum(1 for r in roles if r == StreamRole.Raw) > 1:
            return None
        return CameraConfiguration(self, streams)

    def configure(self, config: CameraConfiguration) -> int:
        if not self._acquired or self._frames is not None:
            return -errno.EACCES
        if config._validated is None or config._validated[1] == CameraConfiguration.Status.Invalid:
            return -errno.EINVAL
        self._mode = config._validated[0]
        isp = 0
        for stream_config in config:
            if pixels.is_raw(str(stream_config.pixel_format)):
                stream = self._streams["raw"]
            else:
                stream, isp = self._streams[f"isp{isp}"], isp + 1
            stream._configuration = stream_config
            stream_config._stream = stream
        self._configured = config
        self._control_infos = self._make_controls()
        # A new configuration frees the pipeline's own buffers; the next start
        # allocates them again (pipeline_base.cpp configure() and start()).
        self._free_pipeline_buffers()
        return 0

    def create_request(self, cookie=0):
        return Request(self, cookie)

    def start(self, controls=None):
        if self._configured is None or self._frames is not None:
            raise _system_error(errno.EACCES, "Failed to start camera")
        if not self._pipeline_fds:
            # The pipeline's own buffers (ISP statistics, embedded data, the lens
            # shading table) come from the same heap as the frames.
            try:
                for size in self._pipeline_sizes():
                    self._pipeline_fds.append(self._world.heap.allocate(size, "pipeline"))
            except OSError as exc:
                self._free_pipeline_buffers()
                raise _system_error(exc.errno, "Failed to start camera") from None
        initial = {}
        for cid, value in (controls or {}).items():
            initial[cid] = ctl.to_control_value(value, cid)
        self._frames = _FrameThread(self, initial)
        self._frames.start()

    def stop(self):
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.stop()

    def queue_request(self, request: Request):
        frames = self._frames
        if frames is None:
            raise _system_error(errno.EACCES, "Failed to queue request")
        if not request.buffers or request.status != Request.Status.Pending:
            raise _system_error(errno.EINVAL, "Failed to queue request")
        for cid, value in request._controls.items():
            problem = ctl.check_shape(cid, value)
            if problem:
                raise RuntimeError(f"simulated IPA abort: {problem} (on a Pi this is libcamera's "
                                   f"assert in the IPA and the process aborts)")
        frames.queue(request)

    # -- the pipeline's rules -------------------------------------------------------

    def _modes(self):
        return self._sensor.hdr_modes if self._world.hdr and self._sensor.hdr_modes else self._sensor.modes

    def _make_controls(self):
        advertised = sensors.controls_for(self._sensor, self._mode, self._world.libcamera, self._pisp)
        out = {}
        for name, (lo, hi, default) in advertised.items():
            cid = ctl.CONTROL_IDS[name]
            out[cid] = ctl.ControlInfo(ctl.from_python_terms(cid, lo), ctl.from_python_terms(cid, hi),
                                       ctl.from_python_terms(cid, default))
        return out

    def _raw_formats(self) -> StreamFormats:
        table: dict[str, list] = {}
        for mode in self._modes():
            table.setdefault(mode.format, []).append(mode.size)
            table.setdefault(mode.format.split("_")[0], []).append(mode.size)
        return StreamFormats(table, {})

    def _isp_formats(self) -> StreamFormats:
        names = ["YUV420", "YVU420", "NV12", "NV21", "YUYV", "UYVY", "RGB888", "BGR888",
                 "XRGB8888", "XBGR8888"] + (["RGB161616", "BGR161616"] if self._pisp else [])
        hi = self._sensor.pixel_array
        return StreamFormats({n: [] for n in names}, {n: ((64, 64), hi) for n in names})

    def _align(self, fmt: str) -> int:
        base = 64 if self._pisp else 32
        return base * 2 if fmt in pixels.YUV_PLANAR else base

    def _validate(self, config: CameraConfiguration):
        Status = CameraConfiguration.Status
        if config.empty:
            config._validated = (self._mode, Status.Invalid)
            return Status.Invalid
        adjusted = False
        if config.orientation in (Orientation.Rotate90, Orientation.Rotate270,
                                  Orientation.Rotate90Mirror, Orientation.Rotate270Mirror):
            config.orientation, adjusted = Orientation.Rotate0, True
        raw = [s for s in config if pixels.is_raw(str(s.pixel_format))]
        isp = [s for s in config if s not in raw]
        mode = self._choose_mode(config, raw, isp)
        if mode is None:
            config._validated = (self._mode, Status.Invalid)
            return Status.Invalid
        for s in raw:
            fmt = str(s.pixel_format)
            want = fmt if sensors.Mode((0, 0), fmt, 1, (0, 0, 0, 0), (0, 0)).bit_depth == mode.bit_depth \
                else mode.format
            if (want, (s.size.width, s.size.height)) != (fmt, mode.size):
                adjusted = True
            s.pixel_format, s.size = PixelFormat(want), Size(*mode.size)
            s.stride = -(-pixels.bytes_per_line(want, mode.size[0]) // 32) * 32
            s.frame_size = pixels.frame_size(want, s.stride, mode.size[1])
            s.color_space = ColorSpace.Raw()
        max_w, max_h = self._sensor.pixel_array
        for index, s in enumerate(isp):
            fmt = str(s.pixel_format)
            allowed = [str(p) for p in self._isp_formats().pixel_formats]
            if index and not self._pisp and fmt not in pixels.YUV_PLANAR + pixels.YUV_SEMI:
                fmt, adjusted = "YUV420", True  # VC4's second output is YUV only
            if fmt not in allowed:
                fmt, adjusted = "YUV420", True
            w = min(max(s.size.width, 64), max_w if index == 0 else isp[0].size.width)
            h = min(max(s.size.height, 64), max_h if index == 0 else isp[0].size.height)
            w, h = w - w % 2, h - h % 2
            if (w, h) != (s.size.width, s.size.height) or fmt != str(s.pixel_format):
                adjusted = True
            s.pixel_format, s.size = PixelFormat(fmt), Size(w, h)
            align = self._align(fmt)
            least = -(-pixels.bytes_per_line(fmt, w) // align) * align
            if s.stride and (s.stride < least or s.stride % align):
                adjusted = True
            s.stride = s.stride if s.stride >= least and not s.stride % align else least
            s.frame_size = pixels.frame_size(fmt, s.stride, h)
            if s.color_space is None:
                s.color_space = ColorSpace.Sycc()
        status = Status.Adjusted if adjusted else Status.Valid
        config._validated = (mode, status)
        return status

    def _choose_mode(self, config, raw, isp):
        modes = self._modes()
        wanted = config.sensor_config
        if wanted is not None:
            for mode in modes:
                if mode.size == (wanted.output_size.width, wanted.output_size.height) \
                        and mode.bit_depth == wanted.bit_depth:
                    return mode
            return None
        target = raw[0].size if raw else max((s.size for s in isp), key=lambda z: z.width * z.height)

        def score(mode):  # libcamera's RPi::CameraData::scoreFormat
            def part(desired, actual):
                d = desired - actual
                return -d / 4 if d < 0 else d * 2
            s = part(target.width, mode.size[0]) + part(target.height, mode.size[1])
            s += 1500 * part(target.width / target.height, mode.size[0] / mode.size[1])
            return s
        return min(modes, key=score)

    def _pipeline_sizes(self) -> list[int]:
        if self._pisp:
            return []  # the system heap has no fragmentation to model
        return [256 * 1024, 64 * 1024]

    def _free_pipeline_buffers(self) -> None:
        for fd in self._pipeline_fds:
            os.close(fd)
        self._pipeline_fds = []


class _SensorState:
    """What the sensor and ISP are doing for one frame."""

    def __init__(self, controls: dict):
        self.c = dict(controls)  # control name -> value

    def merged(self, updates: dict) -> "_SensorState":
        return _SensorState({**self.c, **updates})


class _FrameThread:
    """Runs a started camera: one frame per frame time, each completing the next queued request."""

    def __init__(self, camera: Camera, initial: dict):
        self.camera = camera
        self.world = camera._world
        self.version = sensors.version_tuple(self.world.libcamera)
        self._queue: list[Request] = []
        self._cond = threading.Condition()
        self._stopping = False
        start = {cid.name: value for cid, value in initial.items()}
        # The controls given to start() are in place from the first frame.
        self._requested = [_SensorState(start)] * CONTROL_DELAY
        self._thread = threading.Thread(target=self._run, name="simcam-frames", daemon=True)
        self._sequence = 0
        self._lens = self._lens_default()
        self._ae_total: float | None = None  # the AGC's filtered total exposure
        self._ae_frames = 0
        self._af_scanning = False
        self._maps: dict[int, object] = {}
        self._written: dict[int, tuple] = {}
        self._drawn: dict[int, tuple] = {}  # where the scene's object is in each buffer

    def start(self):
        self._thread.start()

    def queue(self, request: Request):
        with self._cond:
            request._queued_at = time.monotonic()
            self._queue.append(request)
            self._cond.notify_all()

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(10)
        with self._cond:
            left, self._queue = self._queue, []
        for request in left:
            request.status = Request.Status.Cancelled
            for buffer in request.buffers.values():
                buffer.metadata.status = FrameMetadata.Status.Cancelled
            self.camera._manager._complete(request)
        for mm in self._maps.values():
            mm.close()
        self._maps.clear()

    # -- the frame loop --------------------------------------------------------

    def _run(self):
        # The sensor keeps its own schedule: a frame starts when the last one ends,
        # however long this thread took to draw one (it catches up), and a request
        # only joins a frame that starts after it was queued.
        next_start = time.monotonic()
        startup = STARTUP_FRAMES
        while True:
            start = next_start
            if time.monotonic() - start > LAG_RESYNC_S:  # this thread was starved: resync
                start = time.monotonic()
            with self._cond:
                if self._stopping:
                    return
                request = None
                if self._queue and self._queue[0]._queued_at <= start:
                    request = self._queue.pop(0)
            frames_done = self._sequence
            if self.world.frames_stop_at(frames_done):
                # Frontend timeout / unplugged: the sensor sends nothing more.
                with self._cond:
                    if request is not None:
                        self._queue.insert(0, request)
                    self._cond.wait(0.05)
                next_start = time.monotonic()
                continue
            updates = {} if request is None else {cid.name: v for cid, v in request._controls.items()}
            isp = self._requested[-1].merged(updates)
            self._requested.append(isp)
            sensor = self._requested[-1 - CONTROL_DELAY]
            del self._requested[:-CONTROL_DELAY - 1]
            exposure, gain, duration = self._exposure(sensor)
            # The lens moves every sensor frame, whether or not a buffer takes it.
            focus = self._autofocus(isp.c) if self.camera._sensor.autofocus else None
            next_start = start + duration / 1e6
            if not self._sleep_until(next_start):
                if request is not None:
                    with self._cond:
                        self._queue.insert(0, request)
                return
            self._sequence += 1
            if request is None:
                continue  # no buffer for this frame: the pipeline drops it
            if startup and self.version < (0, 5):
                startup -= 1  # older pipelines hide startup frames and keep the request
                with self._cond:
                    self._queue.insert(0, request)
                continue
            self._complete(request, isp, exposure, gain, duration, start, startup > 0, focus)
            startup = max(0, startup - 1)

    def _sleep_until(self, deadline: float) -> bool:
        with self._cond:
            while not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return True
                self._cond.wait(left)
        return False

    def _exposure(self, state: _SensorState) -> tuple[int, float, int]:
        c = state.c
        mode = self.camera._mode
        lo, hi = mode.exposure
        limits = c.get("FrameDurationLimits")
        fmin, fmax = (limits if isinstance(limits, tuple) and len(limits) == 2
                      else (sensors.DEFAULT_MIN_FRAME_US, sensors.DEFAULT_MAX_FRAME_US))
        fmin = max(fmin, mode.min_frame_us)
        fmax = max(fmax, fmin)
        if self.version >= (0, 5):
            manual_e = c.get("ExposureTimeMode", 0) == 1 or c.get("AeEnable") is False
            manual_g = c.get("AnalogueGainMode", 0) == 1 or c.get("AeEnable") is False
        else:
            manual_e = bool(c.get("ExposureTime")) or c.get("AeEnable") is False
            manual_g = bool(c.get("AnalogueGain")) or c.get("AeEnable") is False
        target = AE_TARGET_AT_400_LUX * 400 / max(self.world.lux, 0.01)
        speed = 1.0 if self._ae_frames < AE_STARTUP_FRAMES else AE_SPEED
        self._ae_frames += 1
        total = self._ae_total = target if self._ae_total is None else \
            self._ae_total + speed * (target - self._ae_total)
        max_gain = self.camera._sensor.max_gain
        longest = min(hi, fmax)
        if manual_e and manual_g:
            exposure, gain = c.get("ExposureTime") or 20000, float(c.get("AnalogueGain") or 1.0)
        elif manual_e:
            exposure = c.get("ExposureTime") or 20000
            gain = total / max(min(max(exposure, lo), longest), 1)
        elif manual_g:
            gain = float(c.get("AnalogueGain") or 1.0)
            exposure = total / gain
        else:
            exposure, gain = _divide_up(total, lo, longest, max_gain)
        exposure = int(min(max(exposure, lo), longest))
        gain = min(max(gain, 1.0), max_gain)
        if manual_e and manual_g:  # back in auto, the AGC starts from here
            self._ae_total = exposure * gain
        duration = int(min(max(fmin, exposure), fmax))
        return exposure, gain, duration

    # -- autofocus -------------------------------------------------------------

    def _lens_default(self) -> float:
        return self.camera._sensor.lens_range[2]

    def _focus_target(self) -> float:
        return 1.0 / max(self.world.focus_distance_m, 0.05)

    def _autofocus(self, c: dict) -> tuple[int, float]:
        """Move the lens for one frame; return (AfState, LensPosition)."""
        mode = c.get("AfMode", 0)
        target = self._focus_target()
        trigger = c.pop("AfTrigger", None)  # acts once, not carried to the next frame
        if mode == 0:
            self._af_scanning = False
            lo, hi, _ = self.camera._sensor.lens_range
            self._lens = min(max(float(c.get("LensPosition", self._lens)), lo), hi)
            return 0, self._lens
        if mode == 1:
            if trigger == 0:
                self._af_scanning = True
            elif trigger == 1:
                self._af_scanning = False
                return 0, self._lens
            if not self._af_scanning:
                return (2 if abs(self._lens - target) < 0.02 else 0), self._lens
        # A PDAF-like approach: most of the way each frame, then settle.
        error = target - self._lens
        if abs(error) <= 0.05:
            self._lens = target
            self._af_scanning = False
            return 2, self._lens
        self._lens += error * 0.5 if abs(error) > 0.1 else error
        return 1, self._lens

    # -- completing a request --------------------------------------------------------

    def _complete(self, request, state, exposure, gain, duration, start, startup, focus):
        c = dict(state.c)
        af_state, lens = focus if focus is not None else (None, None)
        timestamp = int((start + exposure / 1e6) * 1e9)
        self._fill(request, c, exposure, gain, self.world.scene_time(start))
        mode = self.camera._mode
        crop = c.get("ScalerCrop")
        md = {
            "SensorTimestamp": timestamp, "FrameDuration": duration, "ExposureTime": exposure,
            "AnalogueGain": gain, "DigitalGain": 1.0 + (0.02 if gain >= self.camera._sensor.max_gain else 0.0),
            "ColourGains": tuple(c.get("ColourGains") or (1.85, 1.62)),
            "ColourTemperature": 5100, "Lux": float(self.world.lux),
            "SensorBlackLevels": (4096, 4096, 4096, 4096),
            "ScalerCrop": crop if isinstance(crop, Rectangle) else Rectangle(*mode.crop),
            # The IPA takes a matrix only with AWB off ("Could not set
            # COLOUR_CORRECTION_MATRIX - AWB is active"); otherwise AWB's own.
            "ColourCorrectionMatrix": tuple(c["ColourCorrectionMatrix"]) if c.get("AwbEnable") is
            False and c.get("ColourCorrectionMatrix") else AUTO_CCM,
            "AeLocked": True, "SensorTemperature": 41.0,
        }
        if af_state is not None:
            md.update(AfState=af_state, AfPauseState=0, LensPosition=float(lens),
                      FocusFoM=int(30000 / (1 + 8 * abs(lens - self._focus_target()))))
        else:
            md["FocusFoM"] = 12000
        request.metadata = {ctl.CONTROL_IDS[k]: v for k, v in md.items()}
        request.sequence = self._sequence
        status = FrameMetadata.Status.Startup if startup else FrameMetadata.Status.Success
        for buffer in request.buffers.values():
            buffer.metadata.status = status
            buffer.metadata.sequence = self._sequence
            buffer.metadata.timestamp = timestamp
        request.status = Request.Status.Complete
        self.camera._manager._complete(request)

    def _fill(self, request: Request, c: dict, exposure: int, gain: float, t: float) -> None:
        """Draw the test pattern into each non-raw buffer, in its format and stride, with
        the world's scene at scene time ``t`` on it."""
        from PIL import Image, ImageDraw

        orientation = self.camera._configured.orientation
        hflip = orientation in (Orientation.Rotate0Mirror, Orientation.Rotate180)
        vflip = orientation in (Orientation.Rotate180, Orientation.Rotate180Mirror)
        visible = {k: c[k] for k in ("Brightness", "Contrast", "Saturation", "Sharpness",
                                      "ExposureValue", "AwbMode") if k in c}
        if self.version >= (0, 5) and c.get("ExposureTimeMode") == 1 or c.get("AeEnable") is False \
                or (self.version < (0, 5) and c.get("ExposureTime")):
            visible.update(AeEnable=False, ExposureTime=exposure, AnalogueGain=round(gain, 2))
        for stream, buffer in request.buffers.items():
            config = stream.configuration
            fmt = str(config.pixel_format)
            if pixels.is_raw(fmt):
                continue  # raw Bayer is left as the heap gave it
            w, h = config.size.width, config.size.height
            key = (self.camera._sensor.model, w, h, fmt, hflip, vflip,
                   tuple(sorted(visible.items())))
            plane = buffer._planes[0]
            mm = self._map(plane)
            # A 12 MP picture is drawn at half size and doubled as it is written:
            # drawing it whole takes longer than the sensor's frame.
            scale = pixels.scale_for(fmt, w, h)
            if self._written.get(plane.fd) != key:
                rows, _ = self._picture(key, fmt, w // scale, h // scale, hflip, vflip, visible)
                pixels.blit(mm, fmt, config.stride, h, rows, scale=scale)
                self._written[plane.fd] = key
                self._drawn.pop(plane.fd, None)
            if self.world.stage.path or plane.fd in self._drawn:
                self._draw_scene(mm, config, key, scale, t, plane.fd)
            # A frame counter in the bottom-right corner: every frame differs.
            stamp = Image.new("RGB", (min(w, 96) // 2 * 2, min(h, 16) // 2 * 2), (0, 0, 0))
            ImageDraw.Draw(stamp).text((2, 2), f"{self._sequence:06d}", fill=(255, 255, 255))
            pixels.blit(mm, fmt, config.stride, h, pixels.convert(stamp, fmt),
                        (w - stamp.width) // 2 * 2, (h - stamp.height) // 2 * 2)

    def _picture(self, key: tuple, fmt: str, w: int, h: int, hflip: bool, vflip: bool,
                 visible: dict, image_too: bool = False):
        """The test pattern of ``key`` as plane rows of ``fmt`` (and as a Pillow image
        when ``image_too``), drawn once and kept."""
        from picam_api.camera.base import CaptureSettings
        from picam_api.camera.mock import render_frame

        with _PICTURES_LOCK:
            rows, image = _PICTURES.pop(key, (None, None))
        if rows is None or (image_too and image is None):
            settings = CaptureSettings(width=w, height=h, hflip=hflip, vflip=vflip,
                                       controls=visible)
            image = render_frame(settings, 0, dt.datetime.now(dt.timezone.utc),
                                 self.camera._sensor.pixel_array,
                                 title="SIMULATED " + self.camera._sensor.model)
            rows = pixels.convert(image, fmt)
        with _PICTURES_LOCK:
            # The image is kept only for scenes (it doubles what a picture holds).
            _PICTURES[key] = (rows, image if image_too or self.world.stage.path else None)
            while len(_PICTURES) > PICTURES_KEPT:  # the newest last
                _PICTURES.pop(next(iter(_PICTURES)))
        return rows, image

    def _draw_scene(self, mm, config, key: tuple, scale: int, t: float, fd: int) -> None:
        """Put the scene's object where it is at ``t``, and the pattern back where it was."""
        from PIL import ImageOps

        fmt, (w, h), (hflip, vflip) = key[3], key[1:3], key[4:6]
        width, height = w // scale, h // scale
        _, image = self._picture(key, fmt, width, height, hflip, vflip, dict(key[6]), True)
        sprite = self.world.stage.sprite(t, width, height)
        boxes = [self._drawn.pop(fd)] if fd in self._drawn else []
        if sprite is not None:
            left, top, disc, mask = sprite
            if hflip:  # the picture is mirrored: so is where the object shows
                left, disc, mask = width - left - disc.width, ImageOps.mirror(disc), ImageOps.mirror(mask)
            if vflip:
                top, disc, mask = height - top - disc.height, ImageOps.flip(disc), ImageOps.flip(mask)
            boxes.append((left, top, left + disc.width, top + disc.height))
        if not boxes:
            return
        # Even edges inside the picture: chroma planes take two pixels a sample.
        x0, y0 = max(0, min(b[0] for b in boxes)) // 2 * 2, max(0, min(b[1] for b in boxes)) // 2 * 2
        x1 = min(width // 2 * 2, -(-max(b[2] for b in boxes) // 2) * 2)
        y1 = min(height // 2 * 2, -(-max(b[3] for b in boxes) // 2) * 2)
        if x1 <= x0 or y1 <= y0:
            return
        patch = image.crop((x0, y0, x1, y1))
        if sprite is not None:
            patch.paste(disc, (left - x0, top - y0), mask)
            self._drawn[fd] = boxes[-1]
        pixels.blit(mm, fmt, config.stride, h, pixels.convert(patch, fmt), x0 * scale, y0 * scale,
                    scale=scale)

    def _map(self, plane):
        import mmap

        mm = self._maps.get(plane.fd)
        if mm is None or mm.closed:
            mm = self._maps[plane.fd] = mmap.mmap(plane.fd, plane.length, mmap.MAP_SHARED,
                                                  mmap.PROT_READ | mmap.PROT_WRITE)
        return mm
