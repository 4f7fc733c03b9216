"""A camera with no hardware: draws a real test pattern with Pillow.

The picture carries colour bars, a grey ramp, a dot that moves with time, the
capture time, a frame counter and the settings used, so every frame differs and
every setting shows: flips mirror the picture, Brightness/Contrast/Saturation/
Sharpness/ExposureValue go through ``ImageEnhance``, AwbMode tints it and
ScalerCrop zooms.

Faults for tests come from ``[camera.mock]`` in the config and can be changed on
the instance while it runs: ``fail_rate``, ``delay_s``, ``hang``, ``missing``.

Motion detection reads ``luma_frame``: the Y plane of the scripted scene
(``mock_scene``: an object on a path, noise, flicker, a brightness ramp,
clouds, from ``[camera.mock.scene]``), without the caption and the clock dot,
which change in every frame as nothing in a real scene does. Stills show the
scene's object too.

Video (``start_encoder``) draws the same pattern at the encoder's rate and
encodes it with libx264 through PyAV (``mock_video``); stills keep working.
"""
from __future__ import annotations

import datetime as dt
import functools
import io
import random
import threading
import time

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from ..errors import CameraUnavailable, CaptureFailed, CaptureTimeout
from .base import (CameraBackend, Capabilities, Capture, CaptureSettings, ControlInfo,
                   LumaFrame, VideoSettings)
from .mock_scene import Scene

BARS = [(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
        (192, 0, 192), (192, 0, 0), (0, 0, 192)]
# AwbMode 0..7 (Auto, Incandescent, Tungsten, Fluorescent, Indoor, Daylight,
# Cloudy, Custom) as an RGB tint: warm light uncorrected looks orange, etc.
AWB_TINTS = [(1.0, 1.0, 1.0), (1.25, 1.0, 0.7), (1.2, 1.0, 0.75), (0.95, 1.05, 1.0),
             (1.1, 1.0, 0.85), (1.0, 1.0, 1.0), (0.9, 0.95, 1.15), (1.0, 1.0, 1.0)]


class MockCamera(CameraBackend):
    """A Pillow-drawn camera with the controls of a Camera Module 3."""

    name = "mock"

    def __init__(self, camera_config: dict):
        mock = camera_config["mock"]
        self.sensor = tuple(mock["sensor"])
        self.fail_rate = mock["fail_rate"]
        self.delay_s = mock["delay_s"]
        self.hang = mock["hang"]
        self.missing = mock["missing"]
        self._random = random.Random(None if mock["seed"] < 0 else mock["seed"])
        self._closed = threading.Event()
        self.frames = 0
        self.opens = 0
        self.encoders: set = set()  # running MockEncoders
        self.scene = Scene.from_config({**mock["scene"], "seed": mock["seed"]})
        self.luma_frames = 0
        self._scene_epoch = time.monotonic()
        self.encoders_started = 0  # ever: a test counts the encodes a feature costs

    def open(self) -> Capabilities:
        if self.missing:
            raise CameraUnavailable("no camera attached (mock camera told to be missing)")
        self._closed.clear()
        self.opens += 1
        self._scene_epoch = time.monotonic()
        width, height = self.sensor
        controls = {
            "AeEnable": ControlInfo(False, True, True),
            "AwbEnable": ControlInfo(False, True, True),
            "AwbMode": ControlInfo(0, 7, 0),
            "Brightness": ControlInfo(-1.0, 1.0, 0.0),
            "Contrast": ControlInfo(0.0, 32.0, 1.0),
            "Saturation": ControlInfo(0.0, 32.0, 1.0),
            "Sharpness": ControlInfo(0.0, 16.0, 1.0),
            "ExposureValue": ControlInfo(-8.0, 8.0, 0.0),
            "ExposureTime": ControlInfo(26, 220_417_486, 20_000),
            "AnalogueGain": ControlInfo(1.0, 16.0, 1.0),
            "ScalerCrop": ControlInfo([0, 0, 16, 16], [0, 0, width, height], [0, 0, width, height]),
        }
        return Capabilities(model="mock (Pillow test pattern)", sensor_size=(width, height),
                            controls=controls)

    def close(self) -> None:
        self._closed.set()
        for encoder in list(self.encoders):
            self.stop_encoder(encoder)

    def start_encoder(self, settings: VideoSettings, output, follow: bool = False):
        from .mock_video import MockEncoder
        if self.missing:
            raise CameraUnavailable("no camera attached (mock camera told to be missing)")
        encoder = MockEncoder(self, settings, output)
        encoder.begin()
        self.encoders.add(encoder)
        self.encoders_started += 1
        return encoder

    def stop_encoder(self, encoder) -> None:
        self.encoders.discard(encoder)
        encoder.stop()

    def request_keyframe(self, encoder) -> bool:
        encoder.keyframe_wanted.set()
        return True

    def capture(self, settings: CaptureSettings, timeout: float) -> Capture:
        # Behave like picamera2 with wait=timeout: a stuck frame ends in a timeout.
        if self.hang or self.delay_s > timeout:
            self._closed.wait(timeout)
            raise CaptureTimeout(f"no frame from the camera within {timeout:g} s")
        if self.delay_s:
            self._closed.wait(self.delay_s)
        if self.fail_rate and self._random.random() < self.fail_rate:
            raise CaptureFailed("the camera returned a failed frame (mock fail_rate)")
        self.frames += 1
        image = self.render(settings, self.frames, dt.datetime.now(dt.timezone.utc))
        buffer = io.BytesIO()
        if settings.format == "png":
            image.save(buffer, "PNG", compress_level=1)
        else:
            image.save(buffer, "JPEG", quality=settings.quality)
        return Capture(buffer.getvalue(), image.width, image.height, settings.format,
                       self._metadata(settings))

    def _metadata(self, settings: CaptureSettings) -> dict:
        """What a Camera Module 3 reports for a frame, with the controls asked for."""
        controls = settings.controls
        return {"FrameNumber": self.frames,
                "ExposureTime": controls.get("ExposureTime", 20_000),
                "AnalogueGain": controls.get("AnalogueGain", 1.0),
                "DigitalGain": 1.0, "ColourTemperature": 5100, "Lux": 400.0,
                "FocusFoM": 12000, "LensPosition": controls.get("LensPosition", 0.5),
                "SensorTimestamp": time.monotonic_ns()}

    def scene_time(self) -> float:
        """Seconds of scene time: since the camera last opened."""
        return time.monotonic() - self._scene_epoch

    def luma_frame(self, size: tuple[int, int], timeout: float) -> LumaFrame:
        if self.hang or self.delay_s > timeout:
            self._closed.wait(timeout)
            raise CaptureTimeout(f"no frame from the camera within {timeout:g} s")
        if self.missing:
            raise CameraUnavailable("no camera attached (mock camera told to be missing)")
        self.luma_frames += 1
        return LumaFrame(self.scene.luma(size[0], size[1], self.scene_time()), time.time(),
                         self.luma_frames)

    def render(self, settings: CaptureSettings, frame: int, when: dt.datetime) -> Image.Image:
        """Draw one frame for ``settings`` at time ``when``."""
        return render_frame(settings, frame, when, self.sensor,
                            scene=self.scene, scene_time=self.scene_time())


def render_frame(settings: CaptureSettings, frame: int, when: dt.datetime,
                 sensor: tuple[int, int], title: str = "MOCK CAMERA",
                 scene: Scene | None = None, scene_time: float = 0.0) -> Image.Image:
    """The test pattern for ``settings``: frame ``frame`` of a ``sensor``-sized camera,
    with ``scene``'s moving object (motion detection's tests) at ``scene_time``.

    The picamera2 simulator in tests/ draws its frames with this too, so both
    fakes show the same picture.
    """
    width, height = settings.width, settings.height
    image = _pattern(width, height).copy()
    draw = ImageDraw.Draw(image)
    # A dot that crosses the frame every 4 s, so consecutive frames differ.
    phase = (when.timestamp() % 4.0) / 4.0
    radius = max(2, min(width, height) // 12)
    cx = int(radius + phase * (width - 2 * radius))
    cy = height * 2 // 3 - radius - 2
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(255, 255, 255))
    if scene is not None:
        scene.draw(image, scene_time)
    controls = settings.controls
    lines = [f"{title}  frame {frame}",
             when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
             f"{width}x{height} {settings.format} q{settings.quality}"
             f"{' hflip' if settings.hflip else ''}{' vflip' if settings.vflip else ''}"]
    lines += [f"{name}={value}" for name, value in sorted(controls.items())]
    font = _font(max(8, height // 30))
    draw.multiline_text((radius // 2 + 2, 4), "\n".join(lines), fill=(255, 255, 255),
                        font=font, stroke_width=max(1, height // 400), stroke_fill=(0, 0, 0))
    image = _apply_controls(image, controls, sensor)
    if settings.hflip:
        image = ImageOps.mirror(image)
    if settings.vflip:
        image = ImageOps.flip(image)
    return image


def _apply_controls(image: Image.Image, controls: dict, sensor: tuple[int, int]) -> Image.Image:
    crop = controls.get("ScalerCrop")
    if crop:
        # ScalerCrop is in sensor pixels; scale it to this frame, then zoom back.
        # Like libcamera, clamp a crop that reaches past the sensor to it.
        sx, sy = image.width / sensor[0], image.height / sensor[1]
        x, y, w, h = crop
        left, top = min(int(x * sx), image.width - 1), min(int(y * sy), image.height - 1)
        box = (left, top, max(min(int((x + w) * sx), image.width), left + 1),
               max(min(int((y + h) * sy), image.height), top + 1))
        image = image.crop(box).resize(image.size)
    gain = 2 ** (controls.get("ExposureValue", 0.0) / 2)
    if not controls.get("AeEnable", True):
        gain *= controls.get("ExposureTime", 20_000) / 20_000 * controls.get("AnalogueGain", 1.0)
    brightness = (1.0 + controls.get("Brightness", 0.0)) * gain
    for enhancer, factor in ((ImageEnhance.Brightness, brightness),
                             (ImageEnhance.Contrast, controls.get("Contrast", 1.0)),
                             (ImageEnhance.Color, controls.get("Saturation", 1.0)),
                             (ImageEnhance.Sharpness, controls.get("Sharpness", 1.0))):
        if factor != 1.0:
            image = enhancer(image).enhance(factor)
    tint = AWB_TINTS[int(controls.get("AwbMode", 0))]
    if tint != (1.0, 1.0, 1.0):
        bands = [band.point(lambda v, f=f: min(255, int(v * f))) for band, f in zip(image.split(), tint)]
        image = Image.merge("RGB", bands)
    return image


@functools.lru_cache(maxsize=8)
def _pattern(width: int, height: int) -> Image.Image:
    """Colour bars over a grey ramp; cached because only the overlay changes."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    bar_bottom = height * 2 // 3
    for i, colour in enumerate(BARS):
        draw.rectangle((i * width // len(BARS), 0, (i + 1) * width // len(BARS), bar_bottom),
                       fill=colour)
    ramp = Image.linear_gradient("L").rotate(90).resize((width, height - bar_bottom))
    image.paste(ImageOps.mirror(ramp).convert("RGB"), (0, bar_bottom))
    return image


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
