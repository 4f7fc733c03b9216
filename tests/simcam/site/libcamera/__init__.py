"""The simulated libcamera binding (tests only): see tests/simcam/__init__.py."""
from simcam import seams as _seams

from ._libcamera import *  # noqa: F401,F403
from ._libcamera import controls, properties  # noqa: F401

_seams.install()
