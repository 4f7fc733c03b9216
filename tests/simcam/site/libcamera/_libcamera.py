"""Stands in for the compiled ``_libcamera`` module (tests only)."""
from simcam.binding import *  # noqa: F401,F403
from simcam.binding import controls, properties  # noqa: F401
