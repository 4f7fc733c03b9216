"""Retention across the library: photo and video counts, and one byte budget for both."""
from __future__ import annotations

import logging

from .storage import PhotoStore
from .video.store import VideoStore

log = logging.getLogger(__name__)

# Deletions per run; the retention worker runs again after storage.retention_interval_s.
MAX_PER_RUN = 1000


def enforce(photos: PhotoStore, videos: VideoStore, max_photos: int, max_videos: int,
            max_bytes: int) -> int:
    """Delete the oldest until every limit holds (0 = no limit); return how many went.

    Counts apply to each kind; ``max_bytes`` to photos and ready videos together,
    oldest first whichever kind it is. Videos still rendering or recording are kept.
    """
    deleted = photos.enforce_retention(max_photos, 0) if max_photos else 0
    if max_videos:
        excess = videos.stats()["count"] - max_videos
        for video in videos.oldest_ready(max(0, excess)) if excess > 0 else []:
            videos.delete(video)
            deleted += 1
    while max_bytes and deleted < MAX_PER_RUN:
        if photos.stats()["bytes"] + videos.stats()["bytes"] <= max_bytes:
            break
        oldest_video = next(iter(videos.oldest_ready(1)), None)
        oldest_photo = photos.oldest_id()
        if oldest_video is not None and (oldest_photo is None or oldest_video.id < oldest_photo):
            videos.delete(oldest_video)
            log.info("retention deleted video %s", oldest_video.id)
        elif oldest_photo is not None:
            photos.delete(oldest_photo)
        else:
            break
        deleted += 1
    return deleted
