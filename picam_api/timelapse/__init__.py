"""Time-lapse jobs: scheduled, drift-free, persistent across restarts."""
from .jobs import Job
from .service import TimelapseService

__all__ = ["Job", "TimelapseService"]
