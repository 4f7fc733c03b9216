"""The cameras the simulator can attach: sensor modes, properties and advertised controls.

Figures are what a Raspberry Pi reports (``rpicam-hello --list-cameras``,
``Picamera2.sensor_modes`` and ``camera_controls`` as printed in the picamera2
manual and issues) for the Raspberry Pi IPA in libcamera's ``ipa_base.cpp`` and
the sensor helpers; exposure limits are per mode, as the IPA advertises them
after ``configure``.

Where the advertised defaults changed between libcamera releases, ``controls_for``
follows the release given:

* v0.4 and older: no ``ExposureTimeMode``/``AnalogueGainMode``; ``ExposureTime``,
  ``AnalogueGain`` and ``FrameDurationLimits`` have no default;
* v0.5: the modes exist, ``ExposureTime``/``AnalogueGain`` default to 20000/1.0,
  ``FrameDurationLimits``' default is a scalar (the default minimum duration);
* v0.6 and newer: ``FrameDurationLimits``' default is a pair.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# ControlType names as the binding's enum has them (py_enums.cpp).
BOOL, BYTE, INT32, INT64, FLOAT, STRING, RECTANGLE, SIZE = (
    "Bool", "Byte", "Integer32", "Integer64", "Float", "String", "Rectangle", "Size")
# (type, isArray, size) of every control the simulator knows, as control_ids_*.yaml
# declares them; size 0 is a dynamic array.
CONTROL_TYPES: dict[str, tuple[str, bool, int]] = {
    "AeEnable": (BOOL, False, 0), "AeLocked": (BOOL, False, 0),
    "AeMeteringMode": (INT32, False, 0), "AeConstraintMode": (INT32, False, 0),
    "AeExposureMode": (INT32, False, 0), "AeFlickerMode": (INT32, False, 0),
    "AeFlickerPeriod": (INT32, False, 0),
    "ExposureValue": (FLOAT, False, 0), "ExposureTime": (INT32, False, 0),
    "ExposureTimeMode": (INT32, False, 0), "AnalogueGain": (FLOAT, False, 0),
    "AnalogueGainMode": (INT32, False, 0), "Brightness": (FLOAT, False, 0),
    "Contrast": (FLOAT, False, 0), "Lux": (FLOAT, False, 0), "AwbEnable": (BOOL, False, 0),
    "AwbMode": (INT32, False, 0), "AwbLocked": (BOOL, False, 0),
    "ColourGains": (FLOAT, True, 2), "ColourTemperature": (INT32, False, 0),
    "Saturation": (FLOAT, False, 0), "SensorBlackLevels": (INT32, True, 4),
    "Sharpness": (FLOAT, False, 0), "FocusFoM": (INT32, False, 0),
    "ColourCorrectionMatrix": (FLOAT, True, 9), "ScalerCrop": (RECTANGLE, False, 0),
    "DigitalGain": (FLOAT, False, 0), "FrameDuration": (INT64, False, 0),
    "FrameDurationLimits": (INT64, True, 2), "SensorTemperature": (FLOAT, False, 0),
    "SensorTimestamp": (INT64, False, 0), "AfMode": (INT32, False, 0),
    "AfRange": (INT32, False, 0), "AfSpeed": (INT32, False, 0), "AfMetering": (INT32, False, 0),
    "AfWindows": (RECTANGLE, True, 0), "AfTrigger": (INT32, False, 0),
    "AfPause": (INT32, False, 0), "LensPosition": (FLOAT, False, 0),
    "AfState": (INT32, False, 0), "AfPauseState": (INT32, False, 0),
    "HdrMode": (INT32, False, 0), "HdrChannel": (INT32, False, 0),
    "StatsOutputEnable": (BOOL, False, 0), "ScalerCrops": (RECTANGLE, True, 0),
    "SyncMode": (INT32, False, 0), "SyncFrames": (INT32, False, 0),
    "NoiseReductionMode": (INT32, False, 0),
}
DRAFT = {"NoiseReductionMode"}
RPI = {"StatsOutputEnable", "ScalerCrops", "SyncMode", "SyncFrames"}
# Enumerated controls: name -> (enum class name in the binding, members).
ENUMS = {
    "AeMeteringMode": ["MeteringCentreWeighted", "MeteringSpot", "MeteringMatrix", "MeteringCustom"],
    "AeConstraintMode": ["ConstraintNormal", "ConstraintHighlight", "ConstraintShadows",
                         "ConstraintCustom"],
    "AeExposureMode": ["ExposureNormal", "ExposureShort", "ExposureLong", "ExposureCustom"],
    "ExposureTimeMode": ["Auto", "Manual"], "AnalogueGainMode": ["Auto", "Manual"],
    "AwbMode": ["AwbAuto", "AwbIncandescent", "AwbTungsten", "AwbFluorescent", "AwbIndoor",
                "AwbDaylight", "AwbCloudy", "AwbCustom"],
    "AfMode": ["Manual", "Auto", "Continuous"], "AfRange": ["Normal", "Macro", "Full"],
    "AfSpeed": ["Normal", "Fast"], "AfMetering": ["Auto", "Windows"],
    "AfTrigger": ["Start", "Cancel"], "AfPause": ["Immediate", "Deferred", "Resume"],
    "AfState": ["Idle", "Scanning", "Focused", "Failed"],
    "AfPauseState": ["Running", "Pausing", "Paused"],
    "HdrMode": ["Off", "MultiExposureUnmerged", "MultiExposure", "SingleExposure", "Night"],
    "NoiseReductionMode": ["Off", "Fast", "HighQuality", "Minimal", "ZSL"],
    "AeFlickerMode": ["FlickerOff", "FlickerManual", "FlickerAuto"],
}


@dataclass(frozen=True)
class Mode:
    """One sensor mode: raw size and format, fastest frame, field of view, exposure range."""

    size: tuple[int, int]
    format: str
    fps: float
    crop: tuple[int, int, int, int]
    exposure: tuple[int, int]

    @property
    def bit_depth(self) -> int:
        return int(self.format.split("_")[0][-2:])

    @property
    def min_frame_us(self) -> int:
        return int(1e6 / self.fps)


@dataclass(frozen=True)
class Sensor:
    """A camera module as libcamera describes it."""

    model: str
    pixel_array: tuple[int, int]
    modes: tuple[Mode, ...]
    max_gain: float
    i2c: str
    bayer: str = "RGGB"
    rotation: int = 180
    autofocus: bool = False
    hdr_modes: tuple[Mode, ...] = ()
    lens_range: tuple[float, float, float] = (0.0, 15.0, 1.0)  # dioptres: min, max, default
    extra: dict = field(default_factory=dict)


def _modes(fmt: str, *rows) -> tuple[Mode, ...]:
    return tuple(Mode(size, fmt if len(r) == 4 else r[4], fps, crop, exposure)
                 for r in rows for size, fps, crop, exposure in [r[:4]])


SENSORS: dict[str, Sensor] = {
    # Camera Module 3: 16:9, phase-detect autofocus, an HDR mode at half resolution.
    "imx708": Sensor(
        "imx708", (4608, 2592),
        _modes("SRGGB10_CSI2P",
               ((1536, 864), 120.13, (768, 432, 3072, 1728), (9, 77193582)),
               ((2304, 1296), 56.03, (0, 0, 4608, 2592), (13, 112015443)),
               ((4608, 2592), 14.35, (0, 0, 4608, 2592), (26, 220417486))),
        16.0, "imx708@1a", autofocus=True,
        hdr_modes=_modes("SRGGB10_CSI2P",
                         ((2304, 1296), 30.01, (0, 0, 4608, 2592), (1, 66512109)))),
    # HQ camera: 4:3, 12-bit, very long exposures.
    "imx477": Sensor(
        "imx477", (4056, 3040),
        (Mode((1332, 990), "SRGGB10_CSI2P", 120.05, (696, 528, 2664, 1980), (31, 667244877)),
         Mode((2028, 1080), "SRGGB12_CSI2P", 50.03, (0, 440, 4056, 2160), (60, 674181621)),
         Mode((2028, 1520), "SRGGB12_CSI2P", 40.01, (0, 0, 4056, 3040), (60, 674181621)),
         Mode((4056, 3040), "SRGGB12_CSI2P", 10.0, (0, 0, 4056, 3040), (114, 694422939))),
        22.26, "imx477@1a"),
    # Camera Module 2: 4:3.
    "imx219": Sensor(
        "imx219", (3280, 2464),
        _modes("SRGGB10_CSI2P",
               ((640, 480), 103.33, (1000, 752, 1280, 960), (75, 11766829)),
               ((1640, 1232), 41.85, (0, 0, 3280, 2464), (75, 11766829)),
               ((1920, 1080), 47.57, (680, 692, 1920, 1080), (75, 11766829)),
               ((3280, 2464), 21.19, (0, 0, 3280, 2464), (75, 11766829))),
        10.666, "imx219@10"),
    # Camera Module 1: 4:3, the oldest; no autofocus.
    "ov5647": Sensor(
        "ov5647", (2592, 1944),
        _modes("SGBRG10_CSI2P",
               ((640, 480), 58.92, (16, 0, 2560, 1920), (130, 969249)),
               ((1296, 972), 43.25, (0, 0, 2592, 1944), (130, 1103823)),
               ((1920, 1080), 30.62, (348, 434, 1928, 1080), (130, 1103823)),
               ((2592, 1944), 15.63, (0, 0, 2592, 1944), (130, 3066985))),
        63.9375, "ov5647@36", bayer="GBRG", rotation=0),
}

# The default frame rate the IPA starts with (ipa_base.cpp defaultMinFrameDuration).
DEFAULT_MIN_FRAME_US = 33333
DEFAULT_MAX_FRAME_US = 250000


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def controls_for(sensor: Sensor, mode: Mode, version: str, pisp: bool) -> dict[str, tuple]:
    """``{name: (min, max, default)}`` in Python terms, as the IPA advertises after configure.

    Rectangles are 4-tuples here; the binding turns them into Rectangle objects.
    """
    v = version_tuple(version)
    new = v >= (0, 5)
    frame_min = mode.min_frame_us
    default_frame = max(DEFAULT_MIN_FRAME_US, frame_min)
    if v >= (0, 6):
        frame_default = (default_frame, default_frame)
    elif new:
        frame_default = default_frame
    else:
        frame_default = None
    controls = {
        "AeEnable": (False, True, True if new else None),
        "AeMeteringMode": (0, 3, 0), "AeConstraintMode": (0, 3, 0), "AeExposureMode": (0, 3, 0),
        "AeFlickerMode": (0, 1, 0), "AeFlickerPeriod": (100, 1000000, None),
        "ExposureValue": (-8.0, 8.0, 0.0),
        "ExposureTime": (mode.exposure[0], mode.exposure[1], 20000 if new else None),
        "AnalogueGain": (1.0, sensor.max_gain, 1.0 if new else None),
        "Brightness": (-1.0, 1.0, 0.0), "Contrast": (0.0, 32.0, 1.0),
        "Saturation": (0.0, 32.0, 1.0), "Sharpness": (0.0, 16.0, 1.0),
        "AwbEnable": (False, True, True if new else None), "AwbMode": (0, 7, 0),
        "ColourGains": (0.0, 32.0, None),
        "ColourCorrectionMatrix": (0.0, 8.0, None),
        "ScalerCrop": ((0, 0, 64, 64), mode.crop, mode.crop),
        "FrameDurationLimits": (frame_min, 1000000000 if new else DEFAULT_MAX_FRAME_US * 4000,
                                frame_default),
        "NoiseReductionMode": (0, 4, 0),
        "HdrMode": (0, 4, 0),
        "StatsOutputEnable": (False, True, False),
    }
    if new:
        controls.update({"ExposureTimeMode": (0, 1, 0), "AnalogueGainMode": (0, 1, 0),
                         "ColourTemperature": (100, 100000, None),
                         "SyncMode": (0, 2, 0), "SyncFrames": (1, 1000000, 100)})
    if pisp:
        controls["ScalerCrops"] = ((0, 0, 64, 64), mode.crop, [mode.crop])
    if sensor.autofocus:
        lo, hi, default = sensor.lens_range
        controls.update({
            "AfMode": (0, 2, 0), "AfRange": (0, 2, 0), "AfSpeed": (0, 1, 0),
            "AfMetering": (0, 1, 0), "AfTrigger": (0, 1, 0), "AfPause": (0, 2, 0),
            "AfWindows": ((0, 0, 0, 0), (65535, 65535, 65535, 65535), [(0, 0, 0, 0)]),
            "LensPosition": (lo, hi, default),
        })
    return controls


def properties_for(sensor: Sensor) -> dict[str, object]:
    """The camera's properties (Python terms; Size/Rectangle as tuples)."""
    width, height = sensor.pixel_array
    return {
        "Model": sensor.model, "Location": 2, "Rotation": sensor.rotation,
        "PixelArraySize": (width, height),
        "PixelArrayActiveAreas": [(0, 0, width, height)],
        "ScalerCropMaximum": (0, 0, width, height),
        "UnitCellSize": (1400, 1400),
        "ColorFilterArrangement": {"RGGB": 0, "GRBG": 1, "GBRG": 2, "BGGR": 3}[sensor.bayer],
        "SystemDevices": (20749, 20737, 20738, 20739),
        "SensorSensitivity": 1.0,
    }
