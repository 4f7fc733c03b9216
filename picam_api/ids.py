"""Resource ids: time-ordered, so sorting by id sorts by creation time."""
from __future__ import annotations

import datetime as dt
import re
import secrets

ID_PATTERN = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")


def new_id(when: dt.datetime) -> str:
    """An id for a resource made at ``when`` (UTC): the time, then 32 random bits."""
    return f"{when.astimezone(dt.timezone.utc):%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}"


def is_id(value: str | None) -> bool:
    return bool(value) and ID_PATTERN.fullmatch(value) is not None
