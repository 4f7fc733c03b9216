"""A zip of a time-lapse's frames, streamed as it is built.

zipfile writes data descriptors when its file cannot seek, so the archive goes
out chunk by chunk: nothing is built in memory or on disk first. Frames are
already compressed images, so they are stored, not deflated.
"""
from __future__ import annotations

import zipfile
from typing import Iterable, Iterator

from ..errors import NotFound
from ..storage import EXTENSIONS, Photo, PhotoStore

CHUNK = 64 * 1024


class _Pipe:
    """A write-only file whose contents are taken out as they arrive."""

    def __init__(self):
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def zip_stream(frames: Iterable[Photo], photos: PhotoStore) -> Iterator[bytes]:
    """Yield a zip of ``frames``, each named by its sequence number (000001.jpg, ...)."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as archive:
        for photo in frames:
            try:
                source = photos.open_image(photo)
            except NotFound:  # deleted while the archive was being sent
                continue
            info = zipfile.ZipInfo(f"{photo.sequence:06d}.{EXTENSIONS[photo.format]}",
                                   date_time=photo.taken_at_datetime.timetuple()[:6])
            with source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield pipe.take()
    yield pipe.take()
