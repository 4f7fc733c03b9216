"""Motion detection on small luma frames: detector, event rules, masks, and the service."""
from .service import MotionService

__all__ = ["MotionService"]
