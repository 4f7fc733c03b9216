"""Everything ``libcamera._libcamera`` exports, gathered for site/libcamera."""
from .camera import (Camera, CameraConfiguration, CameraManager, FrameBuffer, FrameMetadata,
                     Request, SensorConfiguration, SizeRange, Stream, StreamConfiguration,
                     StreamFormats, StreamRole)
from .controls import ControlId, ControlInfo, ControlType, controls, properties
from .geometry import ColorSpace, Orientation, PixelFormat, Point, Rectangle, Size, Transform

__all__ = ["Camera", "CameraConfiguration", "CameraManager", "ColorSpace", "ControlId",
           "ControlInfo", "ControlType", "FrameBuffer", "FrameMetadata", "Orientation",
           "PixelFormat", "Point", "Rectangle", "Request", "SensorConfiguration", "Size",
           "SizeRange", "Stream", "StreamConfiguration", "StreamFormats", "StreamRole",
           "Transform", "controls", "properties"]
