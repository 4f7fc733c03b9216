"""The picamera2 backend against a fake picamera2/libcamera that keeps the real signatures.

The fake follows picamera2 0.3.x (picamera2/picamera2.py, picamera2/request.py)
and libcamera's Python Transform: same parameter names and defaults, the same
errors for bad stream keys, odd sizes, configuring while started, unknown
controls and a BytesIO saved without a format. It records every call so the
tests can check what the backend asked for, and which requests it never released.
"""
from __future__ import annotations

import concurrent.futures
import enum
import inspect
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest
from PIL import Image

from picam_api.camera import pi
from picam_api.camera.base import CaptureSettings
from picam_api.camera.owner import CameraOwner
from picam_api.camera.pi import Picamera2Camera
from picam_api.errors import CameraBusy, CameraUnavailable, CaptureFailed, CaptureTimeout

ROOT = Path(__file__).resolve().parents[1]
SENSOR = (640, 480)
TIMEOUT = 2.5
NOT_ADVERTISED = "Control {} is not advertised by libcamera"


# -- the fake library ---------------------------------------------------------


class FakeTransform:
    """libcamera.Transform(rotation=0, hflip=False, vflip=False, transpose=False)."""

    made: list = []

    def __init__(self, rotation=0, hflip=False, vflip=False, transpose=False):
        self.rotation, self.hflip, self.vflip, self.transpose = rotation, hflip, vflip, transpose
        FakeTransform.made.append(self)


class World:
    """What the fake camera system does, and what it saw."""

    def __init__(self):
        self.cameras = [{"Model": "imx708", "Location": 2, "Rotation": 180,
                         "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a", "Num": 0}]
        self.instances: list = []
        self.init_error: Exception | None = None
        self.hang = False                       # capture_request waits in vain
        self.capture_error: Exception | None = None
        self.save_error: Exception | None = None
        self.make_image_error: Exception | None = None
        self.start_error: Exception | None = None
        self.platform = FakePlatform.VC4         # what picamera2.platform.get_platform() says
        self.hw_encoder_error: Exception | None = None  # the V4L2 MJPEG encoder fails to start
        self.encoder_silent = False             # running encoders write no frames


class FakePlatform(enum.Enum):
    """picamera2.platform.Platform."""

    VC4 = 0
    PISP = 1


class FakeQuality(enum.Enum):
    """picamera2.encoders.Quality."""

    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class FakeFileOutput:
    """picamera2.outputs.FileOutput(file=None, pts=None, split=None) for a file object."""

    def __init__(self, file=None, pts=None, split=None):
        if not isinstance(file, io.BufferedIOBase):
            raise RuntimeError("Must pass io.BufferedIOBase")
        self.fileoutput = file
        self.recording = False

    def start(self):
        self.recording = True

    def stop(self):
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if self.recording:
            self.fileoutput.write(frame)
            self.fileoutput.flush()


class FakeEncoder:
    """What picamera2's Encoder does for start_encoder/stop_encoder: size, output, quality."""

    world: World

    def __init__(self):
        self.output = None
        self.name = None
        self.width = self.height = None
        self.quality = None
        self.running = False
        self.jpeg = b""

    def start(self, quality=None):
        self.quality = quality
        # One JPEG of the stream's size, written for every frame.
        buffer = io.BytesIO()
        Image.linear_gradient("L").resize((self.width, self.height)).save(buffer, "JPEG")
        self.jpeg = buffer.getvalue()
        self.output.start()
        self.running = True

    def stop(self):
        self.running = False
        self.output.stop()


class FakeJpegEncoder(FakeEncoder):
    def __init__(self, num_threads=4, q=None, colour_space=None, colour_subsampling="420"):
        super().__init__()
        self.q = q


class FakeMJPEGEncoder(FakeEncoder):
    """The V4L2 hardware encoder: refuses to exist off VC4, as upstream does."""

    def __init__(self, bitrate=None):
        if self.world.platform is not FakePlatform.VC4:
            raise RuntimeError("Hardware MJPEG not available on this platform")
        super().__init__()

    def start(self, quality=None):
        if self.world.hw_encoder_error is not None:
            raise self.world.hw_encoder_error
        super().start(quality)


class FakeRequest:
    def __init__(self, picam2):
        self.picam2 = picam2
        self.config = {k: (dict(v) if isinstance(v, dict) else v)
                       for k, v in picam2.camera_config.items()}
        self.released = False
        picam2.unreleased.add(self)

    def _stream(self, name):
        assert not self.released, "request used after release()"
        if self.config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return self.config[name]

    def make_image(self, name, width=None, height=None):
        stream = self._stream(name)
        self.picam2.calls.append(("make_image", name))
        if self.picam2.world.make_image_error:
            raise self.picam2.world.make_image_error
        w, h = stream["size"]
        # A gradient, so the encoders have something to encode.
        image = Image.linear_gradient("L").resize((w, h)).convert("RGB")
        if width or height:
            image = image.resize((width or w, height or h))
        return image

    def save(self, name, file_output, format=None, exif_data=None):
        self._stream(name)
        if isinstance(format, str):
            fmt = format.lower()
        elif isinstance(file_output, str):
            fmt = file_output.split(".")[-1].lower()
        elif isinstance(file_output, Path):
            fmt = file_output.suffix.lower()
        else:
            raise RuntimeError("Cannot determine format to save")
        if self.picam2.world.save_error:
            raise self.picam2.world.save_error
        options = self.picam2.options
        self.picam2.calls.append(("save", name, fmt, options.get("quality", 90),
                                  options.get("compress_level", 1)))
        image = self.make_image(name)
        if fmt in ("jpg", "jpeg"):
            # The fast path: isinstance(f, io.BytesIO) or else open() it as a path.
            if not isinstance(file_output, io.BytesIO):
                raise TypeError(f"expected str, bytes or os.PathLike object, not "
                                f"{type(file_output).__name__}")
            image.save(file_output, "JPEG", quality=options.get("quality", 90))
        else:
            image.save(file_output, compress_level=options.get("compress_level", 1),
                       quality=options.get("quality", 90), format=format)

    def get_metadata(self):
        self._stream("main")
        return {"ExposureTime": 9_876, "AnalogueGain": 1.5, "DigitalGain": 1.01, "Lux": 412.5,
                "ColourTemperature": 5_100, "SensorTimestamp": 123_456_789, "FrameDuration": 33_333,
                "ColourGains": (1.6, 1.9), "ScalerCrop": (0, 0, *SENSOR), "AeLocked": True,
                "Nan": float("nan")}

    def release(self):
        if self.released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self.released = True
        self.picam2.unreleased.discard(self)


def make_fake_picamera2(world: World) -> types.ModuleType:
    class Picamera2:
        @staticmethod
        def global_camera_info():
            return [dict(c) for c in world.cameras]

        def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
            self.world = world
            if world.init_error is not None:
                raise world.init_error
            # Upstream looks the index up before its try block: a bad index is an IndexError.
            self.camera_idx = self.global_camera_info()[camera_num]["Num"]
            self.is_open = True
            self.started = False
            self.event_loop = False
            self.camera_config = {}
            self.options = {}
            self.calls: list = []
            self.unreleased: set = set()
            self.encoders: set = set()
            self._pump: threading.Thread | None = None
            self._pumping = threading.Event()
            self.camera_properties = {"Model": "imx708", "PixelArraySize": SENSOR,
                                      "ColorFilterArrangement": 0}
            # (min, max, default) as picamera2 reports them; libcamera leaves
            # several Pi controls without a default.
            self.camera_controls = {
                "AeEnable": (False, True, None),
                "AwbEnable": (False, True, None),
                "AwbMode": (0, 7, 0),
                "ExposureTime": (26, 1_000_000, None),
                "AnalogueGain": (1.0, 16.0, None),
                "Brightness": (-1.0, 1.0, 0.0),
                "Contrast": (0.0, 32.0, 1.0),
                "ColourGains": (0.0, 32.0, None),
                "ScalerCrop": ((0, 0, 0, 0), (0, 0, *SENSOR), (0, 0, *SENSOR)),
                "FrameDurationLimits": (33_333, 1_000_000_000, None),
                "NoiseReductionMode": (0, 4, 0),
            }
            world.instances.append(self)

        def _check_open(self):
            if not self.is_open:
                raise RuntimeError("Camera not opened")

        def create_still_configuration(self, main={}, lores=None, raw={}, transform=FakeTransform(),
                                       colour_space=None, buffer_count=1, controls={}, display=None,
                                       encode=None, queue=True, sensor={}, use_case="still"):
            self._check_open()
            self.calls.append(("create_still_configuration",
                               {"main": main, "buffer_count": buffer_count, "transform": transform,
                                "controls": controls}))
            stream = {"format": "BGR888", "size": SENSOR, "preserve_ar": True}
            for key, value in main.items():
                if key not in ("format", "size", "stride", "preserve_ar"):
                    raise ValueError(f"Bad key {key!r}: valid stream configuration keys are "
                                     "('format', 'size', 'stride', 'preserve_ar')")
                stream[key] = value
            size = stream["size"]
            if isinstance(size, tuple) and len(size) == 2:
                stream["size"] = (size[0] - size[0] % 2, size[1] - size[1] % 2)  # align_stream
            return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                    "buffer_count": buffer_count, "queue": queue, "main": stream, "lores": lores,
                    "raw": raw, "controls": {"NoiseReductionMode": 2} | controls,
                    "sensor": sensor, "display": display, "encode": encode}

        def configure(self, camera_config=None):
            self._check_open()
            if self.started:
                raise RuntimeError("Camera must be stopped before configuring")
            if not isinstance(camera_config, dict):
                raise TypeError("Invalid type for `camera_config` given")
            if not isinstance(camera_config["transform"], FakeTransform):
                raise RuntimeError("Transform has incorrect type")
            size = camera_config["main"]["size"]
            if type(size) is not tuple or len(size) != 2:
                raise RuntimeError("size in main stream should be (width, height)")
            if size[0] % 2 or size[1] % 2:
                raise RuntimeError("width and height should be even")
            for name in camera_config["controls"]:
                if name not in self.camera_controls and name != "FrameRate":
                    raise RuntimeError(NOT_ADVERTISED.format(name))
            lores = camera_config.get("lores")
            if lores is not None:
                if lores["size"][0] > size[0] or lores["size"][1] > size[1]:
                    raise RuntimeError("lores stream dimensions may not exceed main stream")
                if world.platform is FakePlatform.VC4 and lores["format"] != "YUV420":
                    raise RuntimeError("lores stream must be YUV")
            self.calls.append(("configure", camera_config))
            self.camera_config = dict(camera_config)

        def create_video_configuration(self, main={}, lores=None, raw={}, transform=FakeTransform(),
                                       colour_space=None, buffer_count=6, controls={},
                                       display="main", encode="main", queue=True, sensor={},
                                       use_case="video"):
            self._check_open()
            self.calls.append(("create_video_configuration",
                               {"main": main, "lores": lores, "buffer_count": buffer_count,
                                "transform": transform, "controls": controls}))

            def stream(defaults, updates):
                if updates is None:
                    return None
                out = dict(defaults)
                for key, value in updates.items():
                    if key not in ("format", "size", "stride", "preserve_ar"):
                        raise ValueError(f"Bad key {key!r}: valid stream configuration keys are "
                                         "('format', 'size', 'stride', 'preserve_ar')")
                    out[key] = value
                w, h = out["size"]
                out["size"] = (w - w % 2, h - h % 2)
                return out

            main_stream = stream({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True},
                                 main)
            lores_stream = stream({"format": "YUV420", "size": main_stream["size"],
                                   "preserve_ar": False}, lores)
            return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                    "buffer_count": buffer_count, "queue": queue, "main": main_stream,
                    "lores": lores_stream, "raw": raw,
                    "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
                    | controls, "sensor": sensor, "display": display, "encode": encode}

        def camera_configuration(self):
            return self.camera_config

        def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None):
            if encoder is None:
                raise RuntimeError("No encoder specified")
            if not self.camera_config:
                raise RuntimeError("Camera has not been configured")
            name = name or self.camera_config["encode"]
            if self.camera_config.get(name) is None:
                raise RuntimeError(f"Encode stream {name} was not defined")
            encoder.output = output
            encoder.name = name
            encoder.width, encoder.height = self.camera_config[name]["size"]
            self.calls.append(("start_encoder", {"encoder": encoder, "name": name,
                                                 "quality": quality}))
            encoder.start(quality=quality)
            self.encoders.add(encoder)

        def stop_encoder(self, encoders=None):
            stopping = set(self.encoders) if encoders is None else {encoders}
            for encoder in stopping:
                encoder.stop()
            self.encoders -= stopping
            self.calls.append(("stop_encoder", stopping))

        def _pump_frames(self):
            # The encoder threads: every running encoder writes a frame per camera frame.
            while not self._pumping.wait(0.02):
                if not world.encoder_silent:
                    for encoder in list(self.encoders):
                        encoder.output.outputframe(encoder.jpeg, keyframe=True)

        def start(self, config=None, show_preview=False):
            if config is not None:
                self.configure(config)
            if not self.camera_config:
                raise RuntimeError("Camera has not been configured")
            if world.start_error is not None:
                raise world.start_error
            self.calls.append(("start", show_preview))
            # None runs no event loop: capture jobs would never complete.
            self.event_loop = self.event_loop or show_preview is not None
            self.started = True
            self._pumping.clear()
            self._pump = threading.Thread(target=self._pump_frames, daemon=True)
            self._pump.start()

        def stop(self):
            if self.started:
                self.calls.append(("stop",))
                self.started = False
                self._pumping.set()
                self._pump.join()

        def close(self):
            if not self.is_open:
                return
            self.stop()
            self.calls.append(("close",))
            self.is_open = False

        def set_controls(self, controls):
            for name in controls:
                if name not in self.camera_controls and name != "FrameRate":
                    raise RuntimeError(NOT_ADVERTISED.format(name))
            self.calls.append(("set_controls", dict(controls)))

        def capture_request(self, wait=None, signal_function=None, flush=None):
            self.calls.append(("capture_request", {"wait": wait, "flush": flush}))
            if world.capture_error is not None:
                raise world.capture_error
            if world.hang or not self.started or not self.event_loop:
                if wait in (None, True):
                    raise AssertionError("capture_request without a timeout would block forever")
                raise concurrent.futures.TimeoutError()
            return FakeRequest(self)

        def cancel_all_and_flush(self):
            self.calls.append(("cancel_all_and_flush",))

        def count(self, name):
            return sum(1 for call in self.calls if call[0] == name)

        def args(self, name):
            return [call[1] for call in self.calls if call[0] == name]

    module = types.ModuleType("picamera2")
    module.Picamera2 = Picamera2
    module.TimeoutError = concurrent.futures.TimeoutError
    module.CancelledError = concurrent.futures.CancelledError
    return module


def fake_submodules(world: World) -> dict[str, types.ModuleType]:
    """picamera2.encoders (and .mjpeg_encoder), picamera2.outputs, picamera2.platform."""
    FakeEncoder.world = world
    encoders = types.ModuleType("picamera2.encoders")
    encoders.JpegEncoder = FakeJpegEncoder
    encoders.Quality = FakeQuality
    mjpeg = types.ModuleType("picamera2.encoders.mjpeg_encoder")
    mjpeg.MJPEGEncoder = FakeMJPEGEncoder
    outputs = types.ModuleType("picamera2.outputs")
    outputs.FileOutput = FakeFileOutput
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = FakePlatform
    platform.get_platform = lambda: world.platform
    return {module.__name__: module for module in (encoders, mjpeg, outputs, platform)}


@pytest.fixture
def world(monkeypatch):
    world = World()
    libcamera = types.ModuleType("libcamera")
    libcamera.Transform = FakeTransform
    monkeypatch.setattr(FakeTransform, "made", [])
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    monkeypatch.setitem(sys.modules, "picamera2", make_fake_picamera2(world))
    for name, module in fake_submodules(world).items():
        monkeypatch.setitem(sys.modules, name, module)
    return world


@pytest.fixture
def backend(world):
    cam = Picamera2Camera({"camera_num": 0, "capture_timeout_s": 10.0, "retry_after_s": 5})
    yield cam
    cam.close()


@pytest.fixture
def cam(backend, world):
    """An opened backend's Picamera2 instance."""
    backend.open()
    return world.instances[-1]


def shot(**kw) -> CaptureSettings:
    kw.setdefault("width", SENSOR[0])
    kw.setdefault("height", SENSOR[1])
    return CaptureSettings(**kw)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # a truncated file fails here
    return image


# -- the fake itself ------------------------------------------------------------


def test_fake_keeps_the_upstream_signatures(world):
    """Checked against picamera2 0.3.x; a looser fake would hide wrong calls."""
    fake = sys.modules["picamera2"].Picamera2
    expected = {
        "__init__": ["camera_num", "verbose_console", "tuning", "allocator"],
        "create_still_configuration": ["main", "lores", "raw", "transform", "colour_space",
                                       "buffer_count", "controls", "display", "encode", "queue",
                                       "sensor", "use_case"],
        "configure": ["camera_config"],
        "start": ["config", "show_preview"],
        "capture_request": ["wait", "signal_function", "flush"],
        "set_controls": ["controls"],
        "create_video_configuration": ["main", "lores", "raw", "transform", "colour_space",
                                       "buffer_count", "controls", "display", "encode", "queue",
                                       "sensor", "use_case"],
        "start_encoder": ["encoder", "output", "pts", "quality", "name"],
        "stop_encoder": ["encoders"],
    }
    for method, params in expected.items():
        assert list(inspect.signature(getattr(fake, method)).parameters)[1:] == params, method
    assert list(inspect.signature(FakeJpegEncoder).parameters) == [
        "num_threads", "q", "colour_space", "colour_subsampling"]
    assert list(inspect.signature(FakeMJPEGEncoder).parameters) == ["bitrate"]
    assert list(inspect.signature(FakeFileOutput).parameters) == ["file", "pts", "split"]
    assert list(inspect.signature(FakeRequest.save).parameters)[1:] == [
        "name", "file_output", "format", "exif_data"]
    assert list(inspect.signature(FakeTransform).parameters) == [
        "rotation", "hflip", "vflip", "transpose"]


# -- open -----------------------------------------------------------------------


def test_open_configures_a_full_sensor_still_and_starts_with_the_event_loop(cam):
    (args,) = cam.args("create_still_configuration")
    assert args["main"] == {"size": SENSOR}
    assert args["buffer_count"] == 2
    assert (args["transform"].hflip, args["transform"].vflip) == (False, False)
    (config,) = cam.args("configure")
    assert config["use_case"] == "still" and config["main"]["size"] == SENSOR
    assert cam.args("start") == [False]  # show_preview=False: the NullPreview loop runs
    assert cam.started


def test_capabilities_map_model_sensor_and_controls(backend, world):
    caps = backend.open()
    assert caps.model == "imx708"
    assert caps.sensor_size == SENSOR
    assert caps.even_sizes is True
    assert set(caps.controls) == set(world.instances[0].camera_controls)
    brightness = caps.controls["Brightness"]
    assert (brightness.minimum, brightness.maximum, brightness.default) == (-1.0, 1.0, 0.0)
    crop = caps.controls["ScalerCrop"]
    assert (crop.minimum, crop.maximum, crop.default) == ([0, 0, 0, 0], [0, 0, *SENSOR], [0, 0, *SENSOR])
    # Gaps libcamera leaves get defaults of the right type for the settings check.
    assert caps.controls["AeEnable"].default is True
    assert caps.controls["ColourGains"].default == [0.0, 0.0]
    assert caps.controls["FrameDurationLimits"].default == [33_333, 1_000_000_000]
    assert caps.controls["ExposureTime"].default is None
    json.dumps(caps.to_dict())


# -- capture --------------------------------------------------------------------


def test_capture_at_the_main_size_goes_through_request_save(backend, cam):
    result = backend.capture(shot(quality=77), TIMEOUT)
    assert [c for c in cam.calls if c[0] == "save"] == [("save", "main", "jpeg", 77, 1)]
    assert cam.options["quality"] == 77
    image = decoded(result.data)
    assert image.format == "JPEG" and image.size == SENSOR
    assert (result.width, result.height, result.format) == (*SENSOR, "jpeg")
    assert not cam.unreleased


def test_capture_metadata_keeps_json_scalars(backend, cam):
    metadata = backend.capture(shot(), TIMEOUT).metadata
    assert metadata == {"ExposureTime": 9_876, "AnalogueGain": 1.5, "DigitalGain": 1.01, "Lux": 412.5,
                        "ColourTemperature": 5_100, "SensorTimestamp": 123_456_789,
                        "FrameDuration": 33_333}
    json.dumps(metadata)


def test_capture_at_another_size_resizes_with_pillow(backend, cam):
    result = backend.capture(shot(width=320, height=100, quality=60), TIMEOUT)
    image = decoded(result.data)
    assert image.format == "JPEG" and image.size == (320, 100)  # the client's aspect ratio
    assert cam.count("make_image") == 1 and cam.count("save") == 0
    assert (result.width, result.height) == (320, 100)
    assert not cam.unreleased


def test_jpeg_quality_reaches_the_pillow_encoder(backend, cam):
    small = backend.capture(shot(width=320, height=240, quality=5), TIMEOUT)
    large = backend.capture(shot(width=320, height=240, quality=95), TIMEOUT)
    assert len(small.data) < len(large.data)


@pytest.mark.parametrize("size", [SENSOR, (200, 150)])
def test_png_at_any_size(backend, cam, size):
    result = backend.capture(shot(width=size[0], height=size[1], format="png"), TIMEOUT)
    image = decoded(result.data)
    assert image.format == "PNG" and image.size == size
    assert result.format == "png"
    assert cam.options["compress_level"] == 1
    if size == SENSOR:
        assert [c[2] for c in cam.calls if c[0] == "save"] == ["png"]
    assert not cam.unreleased


def test_flips_reconfigure_only_when_they_change(backend, cam):
    def switches():
        return cam.count("stop"), cam.count("configure"), cam.count("start")

    backend.capture(shot(), TIMEOUT)
    assert switches() == (0, 1, 1)  # the open's configure/start only
    backend.capture(shot(hflip=True), TIMEOUT)
    assert switches() == (1, 2, 2)
    transform = cam.camera_config["transform"]
    assert (transform.hflip, transform.vflip) == (True, False)
    backend.capture(shot(hflip=True), TIMEOUT)
    backend.capture(shot(hflip=True, quality=50), TIMEOUT)
    assert switches() == (1, 2, 2)
    backend.capture(shot(hflip=True, vflip=True), TIMEOUT)
    assert switches() == (2, 3, 3)
    assert [(t.hflip, t.vflip) for t in FakeTransform.made[-2:]] == [(True, False), (True, True)]
    assert cam.args("start") == [False, False, False]
    assert cam.started


def test_controls_are_sent_only_when_they_change_and_then_a_fresh_frame_is_taken(backend, cam):
    backend.capture(shot(controls={"Brightness": 0.5, "AwbMode": 3}), TIMEOUT)
    backend.capture(shot(controls={"Brightness": 0.5, "AwbMode": 3}), TIMEOUT)
    backend.capture(shot(controls={"Brightness": 0.25, "AwbMode": 3}), TIMEOUT)
    assert cam.args("set_controls") == [{"Brightness": 0.5, "AwbMode": 3},
                                        {"Brightness": 0.25, "AwbMode": 3}]
    assert [a["flush"] for a in cam.args("capture_request")] == [True, None, True]


def test_dropped_controls_go_back_to_their_defaults(backend, cam):
    backend.capture(shot(controls={"Brightness": 0.5, "ExposureTime": 20_000,
                                   "ColourGains": [1.5, 1.8], "AeEnable": False}), TIMEOUT)
    backend.capture(shot(controls={}), TIMEOUT)
    assert cam.args("set_controls")[-1] == {"Brightness": 0.0, "ExposureTime": 0,
                                            "ColourGains": [0.0, 0.0], "AeEnable": True}
    backend.capture(shot(controls={}), TIMEOUT)
    assert cam.count("set_controls") == 2


def test_json_numbers_become_ints_for_integer_controls(backend, cam):
    backend.capture(shot(controls={"ExposureTime": 20000.0, "ScalerCrop": [0.0, 0.0, 320.0, 240.0],
                                   "Brightness": 1.0}), TIMEOUT)
    sent = cam.args("set_controls")[-1]
    assert sent == {"ExposureTime": 20000, "ScalerCrop": [0, 0, 320, 240], "Brightness": 1.0}
    assert type(sent["ExposureTime"]) is int and type(sent["Brightness"]) is float
    assert all(type(v) is int for v in sent["ScalerCrop"])


def test_a_flip_change_carries_the_controls_into_the_new_configuration(backend, cam):
    backend.capture(shot(controls={"Contrast": 2.0}), TIMEOUT)
    backend.capture(shot(vflip=True, controls={"Contrast": 3.0}), TIMEOUT)
    assert cam.camera_config["controls"]["Contrast"] == 3.0
    assert cam.args("set_controls") == [{"Contrast": 2.0}]
    backend.capture(shot(vflip=True, controls={"Contrast": 3.0}), TIMEOUT)
    assert cam.count("set_controls") == 1


def test_every_capture_waits_with_the_given_timeout(backend, cam):
    for timeout, settings in ((TIMEOUT, shot()), (0.75, shot(width=100, height=100)),
                              (4.0, shot(hflip=True, controls={"Contrast": 2.0}))):
        backend.capture(settings, timeout)
    assert [a["wait"] for a in cam.args("capture_request")] == [TIMEOUT, 0.75, 4.0]


@pytest.mark.parametrize("fault", ["save_error", "make_image_error"])
def test_requests_are_released_even_when_encoding_fails(backend, cam, world, fault):
    setattr(world, fault, RuntimeError("ISP buffer went away"))
    size = SENSOR if fault == "save_error" else (100, 100)
    with pytest.raises(CaptureFailed, match="ISP buffer went away"):
        backend.capture(shot(width=size[0], height=size[1]), TIMEOUT)
    assert cam.count("capture_request") == 1
    assert not cam.unreleased
    setattr(world, fault, None)
    backend.capture(shot(), TIMEOUT)  # the camera still works
    assert not cam.unreleased


def test_unknown_control_is_a_capture_failure(backend, cam):
    with pytest.raises(CaptureFailed, match="not advertised"):
        backend.capture(shot(controls={"Nonsense": 1}), TIMEOUT)
    assert cam.count("capture_request") == 0


def test_other_library_errors_during_capture_are_capture_failures(backend, cam, world):
    world.capture_error = RuntimeError("Stream 'main' is not defined")
    with pytest.raises(CaptureFailed, match="not defined"):
        backend.capture(shot(), TIMEOUT)


def test_capture_timeout_cancels_the_job_and_raises_capture_timeout(backend, cam, world):
    world.hang = True
    with pytest.raises(CaptureTimeout) as info:
        backend.capture(shot(), 0.5)
    assert isinstance(info.value, TimeoutError)
    assert "0.5" in info.value.detail
    assert cam.count("cancel_all_and_flush") == 1
    assert cam.args("capture_request")[0]["wait"] == 0.5


# -- open failures ----------------------------------------------------------------


def test_no_camera_attached_is_unavailable(backend, world):
    world.cameras = []
    with pytest.raises(CameraUnavailable, match="no camera attached"):
        backend.open()
    assert world.instances == []


def test_bad_camera_number_is_unavailable(world):
    backend = Picamera2Camera({"camera_num": 1, "capture_timeout_s": 10.0})
    with pytest.raises(CameraUnavailable, match="camera number 1") as info:
        backend.open()
    assert not isinstance(info.value, CameraBusy)
    assert isinstance(info.value.__cause__, IndexError)


def _busy_wrapped():
    try:
        try:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        except RuntimeError as cause:
            raise RuntimeError("Camera __init__ sequence did not complete.") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize("error", [
    _busy_wrapped(),  # what picamera2 raises: the busy error is the cause
    RuntimeError("Failed to acquire camera: Device or resource busy"),
], ids=["chained", "direct"])
def test_busy_camera_is_camera_busy_naming_the_other_process(backend, world, error):
    world.init_error = error
    with pytest.raises(CameraBusy) as info:
        backend.open()
    detail = info.value.detail
    assert "another process" in detail and "rpicam" in detail
    assert "Device or resource busy" in detail
    assert info.value.status == 503


def test_other_open_errors_are_unavailable(backend, world):
    try:
        try:
            raise RuntimeError("Failed to initialize camera")
        except RuntimeError as cause:
            raise RuntimeError("Camera __init__ sequence did not complete.") from cause
    except RuntimeError as exc:
        world.init_error = exc
    with pytest.raises(CameraUnavailable) as info:
        backend.open()
    assert not isinstance(info.value, CameraBusy)
    assert "Failed to initialize camera" in info.value.detail


def test_a_camera_that_opens_but_does_not_start_is_released_and_unavailable(backend, world):
    world.start_error = RuntimeError("Failed to start camera: Broken pipe")
    with pytest.raises(CameraUnavailable, match="did not start.*Broken pipe"):
        backend.open()
    assert not world.instances[0].is_open  # not left acquired, so a reopen can work
    world.start_error = None
    backend.open()
    assert world.instances[1].started


def test_missing_picamera2_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # None makes the import fail
    with pytest.raises(CameraUnavailable, match="picamera2 cannot be imported"):
        Picamera2Camera({"camera_num": 0}).open()


# -- close and reopen ---------------------------------------------------------------


def test_close_is_idempotent(backend, world):
    backend.close()  # before open
    backend.open()
    cam = world.instances[0]
    backend.close()
    backend.close()
    assert (cam.count("stop"), cam.count("close")) == (1, 1)
    assert not cam.is_open
    with pytest.raises(CameraUnavailable):
        backend.capture(shot(), TIMEOUT)


def test_close_swallows_a_failing_stop(backend, cam, monkeypatch):
    real_stop, failures = cam.stop, []

    def stop_failing_once():
        if not failures:
            failures.append(1)
            raise RuntimeError("camera wedged")
        real_stop()
    monkeypatch.setattr(cam, "stop", stop_failing_once)
    backend.close()
    assert failures and cam.count("close") == 1 and not cam.is_open


def test_a_failing_close_is_reported_once_and_leaves_the_backend_closed(backend, cam, monkeypatch):
    def broken_close():
        raise RuntimeError("camera.release() failed")
    monkeypatch.setattr(cam, "close", broken_close)
    with pytest.raises(CameraUnavailable, match="release"):
        backend.close()
    backend.close()  # nothing left to close
    with pytest.raises(CameraUnavailable, match="not open"):
        backend.capture(shot(), TIMEOUT)


def test_owner_reopens_a_new_picamera2_after_a_timeout(world):
    backend = Picamera2Camera({"camera_num": 0, "capture_timeout_s": 0.5})
    owner = CameraOwner(backend, timeout=0.5, retry_after=7, reopen_backoff=0)
    try:
        world.hang = True
        with pytest.raises(CaptureTimeout) as info:
            owner.capture(shot())
        assert info.value.retry_after == 7
        first = world.instances[0]
        assert not first.is_open and first.count("cancel_all_and_flush") == 1
        world.hang = False
        result = owner.capture(shot(width=320, height=240))
        assert len(world.instances) == 2
        second = world.instances[1]
        assert second is not first and second.is_open and second.started
        assert decoded(result.data).size == (320, 240)
        assert not first.unreleased and not second.unreleased
    finally:
        owner.close()


# -- streaming ----------------------------------------------------------------------

STREAM = (320, 240)


def streamed(**kw) -> CaptureSettings:
    kw.setdefault("width", STREAM[0])
    kw.setdefault("height", STREAM[1])
    kw.setdefault("quality", 75)
    return CaptureSettings(**kw)


def use_cases(cam) -> list[str]:
    return [config["use_case"] for config in cam.args("configure")]


def test_streaming_runs_a_video_configuration_with_hardware_mjpeg_on_lores(backend, cam):
    frame = backend.stream_frame(streamed(), 15.0, TIMEOUT)
    (args,) = cam.args("create_video_configuration")
    assert args["main"] == {"size": SENSOR, "format": "BGR888"}
    assert args["lores"] == {"size": STREAM, "format": "YUV420"}
    assert args["buffer_count"] == 4
    assert cam.camera_config["controls"]["FrameRate"] == 15.0
    (started,) = cam.args("start_encoder")
    assert type(started["encoder"]) is FakeMJPEGEncoder and started["name"] == "lores"
    assert started["quality"] is FakeQuality.VERY_HIGH  # the level nearest quality 75
    assert decoded(frame.data).size == STREAM and frame.format == "jpeg"
    backend.stream_frame(streamed(), 15.0, TIMEOUT)
    assert use_cases(cam) == ["still", "video"]  # later frames just come from the encoder
    assert cam.started and cam.args("start")[-1] is False


def test_a_pi_5_streams_with_the_software_jpeg_encoder(backend, cam, world):
    world.platform = FakePlatform.PISP
    backend.stream_frame(streamed(quality=60), 10.0, TIMEOUT)
    (started,) = cam.args("start_encoder")
    assert type(started["encoder"]) is FakeJpegEncoder and started["encoder"].q == 60


def test_a_hardware_encoder_that_fails_to_start_falls_back_to_software(backend, cam, world):
    # picamera2's probe says VC4 when it cannot tell, as on a Pi 5 with /dev/video* unreadable.
    world.hw_encoder_error = OSError(2, "No such file or directory: '/dev/video11'")
    frame = backend.stream_frame(streamed(), 10.0, TIMEOUT)
    decoded(frame.data)
    assert [type(a["encoder"]) for a in cam.args("start_encoder")] == [FakeMJPEGEncoder,
                                                                        FakeJpegEncoder]
    backend.stop_stream(STREAM)
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    assert type(cam.args("start_encoder")[-1]["encoder"]) is FakeJpegEncoder


def test_stills_that_fit_the_main_stream_come_from_the_running_stream(backend, cam):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    for size in ((320, 200), SENSOR):
        result = backend.capture(shot(width=size[0], height=size[1]), TIMEOUT)
        assert decoded(result.data).size == size
    assert use_cases(cam) == ["still", "video"] and cam.count("stop_encoder") == 0
    backend.stream_frame(streamed(), 10.0, TIMEOUT)  # the stream went on
    assert not cam.unreleased


def test_a_still_larger_than_the_main_stream_pauses_the_stream_and_resumes_it(
        backend, cam, monkeypatch):
    monkeypatch.setattr(pi, "VIDEO_MAIN_COVERS", (320, 240))
    backend.stream_frame(streamed(width=160, height=120), 10.0, TIMEOUT)
    assert cam.camera_config["main"]["size"] == (320, 240)
    result = backend.capture(shot(quality=88), TIMEOUT)  # the full sensor
    assert decoded(result.data).size == SENSOR
    assert [c for c in cam.calls if c[0] == "save"] == [("save", "main", "jpeg", 88, 1)]
    assert use_cases(cam) == ["still", "video", "still", "video"]
    assert (cam.count("stop_encoder"), cam.count("start_encoder")) == (1, 2)
    assert len(cam.encoders) == 1 and cam.started
    frame = backend.stream_frame(streamed(width=160, height=120), 10.0, TIMEOUT)
    assert decoded(frame.data).size == (160, 120)
    assert not cam.unreleased


def test_a_second_stream_size_is_encoded_from_the_main_stream(backend, cam):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    other = backend.stream_frame(streamed(width=160, height=120), 10.0, TIMEOUT)
    assert decoded(other.data).size == (160, 120)
    assert cam.count("start_encoder") == 1 and cam.count("make_image") == 1


def test_a_new_rate_is_a_frame_rate_control_not_a_restart(backend, cam):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    backend.stream_frame(streamed(), 25.0, TIMEOUT)
    assert cam.args("set_controls") == [{"FrameRate": 25.0}]
    assert use_cases(cam) == ["still", "video"]


def test_new_flips_restart_the_stream_with_its_encoder(backend, cam):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    backend.stream_frame(streamed(vflip=True), 10.0, TIMEOUT)
    assert use_cases(cam) == ["still", "video", "video"]
    assert cam.camera_config["transform"].vflip
    assert cam.count("start_encoder") == 2 and len(cam.encoders) == 1


def test_stop_stream_goes_back_to_the_still_configuration(backend, cam):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    backend.stop_stream((160, 120))  # not the size being encoded: nothing to stop
    assert cam.camera_config["use_case"] == "video"
    backend.stop_stream(STREAM)
    assert cam.camera_config["use_case"] == "still" and cam.camera_config["main"]["size"] == SENSOR
    assert not cam.encoders and cam.started


def test_an_encoder_that_writes_nothing_is_a_capture_timeout(backend, cam, world):
    world.encoder_silent = True
    with pytest.raises(CaptureTimeout, match="MJPEG encoder"):
        backend.stream_frame(streamed(), 10.0, 0.2)


def test_closing_while_streaming_stops_the_encoder_and_reopening_takes_stills(backend, cam, world):
    backend.stream_frame(streamed(), 10.0, TIMEOUT)
    backend.close()
    assert not cam.encoders and not cam.is_open
    backend.open()
    assert world.instances[-1].camera_config["use_case"] == "still"


def test_the_owner_streams_through_the_backend_and_ends_the_stream(world):
    owner = CameraOwner(Picamera2Camera({"camera_num": 0}), timeout=TIMEOUT, retry_after=5)
    try:
        frame = owner.stream_frame(streamed(), 10.0)
        assert decoded(frame.data).size == STREAM and owner.captures == 1
        cam = world.instances[0]
        owner.end_stream(STREAM)
        assert cam.camera_config["use_case"] == "still" and not cam.encoders
    finally:
        owner.close()


def test_the_frame_sink_hands_out_each_frame_once():
    sink = pi._FrameSink()
    assert sink.writable()
    sink.write(b"one")
    sink.write(b"two")
    assert sink.next_frame(0.01) == b"two"  # the newest; older ones are skipped
    assert sink.next_frame(0.01) is None
    sink.write(memoryview(b"three"))
    assert sink.next_frame(0.01) == b"three"


# -- import hygiene ---------------------------------------------------------------


def test_importing_the_backend_does_not_import_picamera2():
    # A fresh interpreter where picamera2/libcamera cannot be imported at all,
    # as on a machine without them.
    code = textwrap.dedent("""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("picamera2", "libcamera"):
                    raise ImportError("blocked: " + name)
                return None

        sys.meta_path.insert(0, Block())
        import picam_api.camera.pi
        import picam_api.camera
        backend = picam_api.camera.pi.Picamera2Camera({"camera_num": 0})
        assert "picamera2" not in sys.modules and "libcamera" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
