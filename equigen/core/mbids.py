"""MBID validation: every MBID is checked as a UUID before it touches a URL or a path."""

from __future__ import annotations

import re

from equigen.core.errors import EquigenError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VARIOUS_ARTISTS = "89ad4ac3-39f7-470e-963a-56509c546377"


def is_mbid(value: object) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


def require_mbid(value: object, what: str = "MBID") -> str:
    if not is_mbid(value):
        shown = repr(value)[:60]
        raise EquigenError(f"invalid {what} {shown}: not a lowercase UUID; refusing to use it")
    return value  # type: ignore[return-value]
