"""Videos: time-lapse movies and recorded clips, all MP4 (H.264) through PyAV."""
from .service import VideoService
from .store import Video

__all__ = ["Video", "VideoService"]
