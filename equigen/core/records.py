"""Typed records passed between the HTTP clients, the catalog and the verbs (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ReleaseGroup:
    """One release group as discovered (or as a manifest publishes it), with its label and evidence."""

    mbid: str
    title: str
    primary_type: str | None
    secondary_types: tuple[str, ...]
    first_release_date: str | None
    artist_mbid: str | None
    artist_name: str | None
    tags: tuple[tuple[str, int], ...]
    genre: str  # a genre name, 'ambiguous' or 'unlabelled'
    label_votes: int | None = None  # genre votes over all mapped tags (None: unknown, e.g. an old manifest)
    label_confidence: float | None = None  # the leading genre's share of label_votes


@dataclass(frozen=True)
class CoverResult:
    mbid: str
    status: str
    http_status: int | None = None
    error: str | None = None
    sha256: str | None = None
    phash: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    format: str | None = None
    path: str | None = None
    source_url: str | None = None


def require_columns(frame: pd.DataFrame, columns: Iterable[str], who: str) -> None:
    """A frame passed between layers must carry the columns its reader needs: name the missing ones
    (a ValueError, a programming error) instead of failing later with a bare KeyError."""
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"{who} needs columns {missing}, got {list(frame.columns)}")
