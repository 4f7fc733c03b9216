"""A stand-in for pykms, the DRM/KMS binding picamera2's DRM preview imports at import
time (seam 4). picam-api never starts a preview: only the names the preview module
reads while it is imported exist (its format table), and no display can be opened."""
import enum


class PixelFormat(enum.Enum):
    RGB888 = "RG24"
    BGR888 = "BG24"
    XRGB8888 = "XR24"
    XBGR8888 = "XB24"
    YUYV = "YUYV"
    YVYU = "YVYU"
    YUV420 = "YU12"
    YVU420 = "YV12"
    NV12 = "NV12"


class Card:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("no DRM device in the simulator")
