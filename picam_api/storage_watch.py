"""Free space in the data dir, watched: ``storage.low`` when it falls, ``storage.ok`` when it is back."""
from __future__ import annotations

import shutil
from pathlib import Path

from .events import NO_EVENTS

MIB = 2**20


class StorageWatch:
    """Checks free space on each ``tick()`` and publishes the changes.

    Low means below ``low_bytes`` (or the capture reserve, if that is higher);
    it is ok again only 10 % (at least 10 MiB) above that, so a disk hovering at
    the line does not flap.
    """

    def __init__(self, root: Path, low_bytes: int, reserve_bytes: int, events=NO_EVENTS):
        self.root = root
        self.threshold = max(low_bytes, reserve_bytes)
        self.margin = max(self.threshold // 10, 10 * MIB)
        self.events = events
        self.low: bool | None = None

    def tick(self) -> None:
        usage = shutil.disk_usage(self.root)
        low = usage.free < self.threshold if not self.low else usage.free < self.threshold + self.margin
        if low != self.low:
            if low or self.low is not None:  # a disk that starts fine says nothing
                self.events.publish("storage.low" if low else "storage.ok",
                                    {"free_bytes": usage.free, "total_bytes": usage.total,
                                     "threshold_bytes": self.threshold})
            self.low = low
