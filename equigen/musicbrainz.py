"""MusicBrainz ws/2 discovery client: release-group search by tag, politely.

One shared rate limiter spaces every MusicBrainz request (default 1/s, their published rule);
503 answers honour Retry-After, else back off exponentially with jitter. aiohttp rather than
musicbrainzngs: musicbrainzngs is synchronous, speaks the XML API only and has its own global
limiter, whereas discovery runs in the same event loop as the concurrent cover downloads.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import aiohttp

from equigen.catalog import ReleaseGroup
from equigen.errors import EquigenError
from equigen.mbids import require_mbid

PAGE_SIZE = 100  # the most MusicBrainz search returns per request
DEFAULT_SKIPPED_SECONDARY = ("compilation", "live", "soundtrack")


class RateLimiter:
    """Spaces request starts at least `interval` seconds apart, for all callers together."""

    def __init__(self, interval: float):
        self.interval = interval
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            delay = self._next - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            # 50 ms over the interval: scheduling jitter on a busy machine must never land two requests in one second
            self._next = loop.time() + self.interval + 0.05

    def push_back(self, seconds: float) -> None:
        """Delay the next request (after a 503), for every caller."""
        loop = asyncio.get_running_loop()
        self._next = max(self._next, loop.time() + seconds)


@dataclass(frozen=True)
class SearchPage:
    count: int                    # total matches for the query
    offset: int
    groups: list[ReleaseGroup]    # parsed, filtered, genre-resolved
    returned: int                 # items in the raw page (before filtering), drives paging


def tag_query(tag: str) -> str:
    """Lucene query for album release groups carrying `tag` (quoted, escaped)."""
    escaped = tag.replace("\\", "\\\\").replace('"', '\\"')
    return f'tag:"{escaped}" AND primarytype:album'


def parse_release_group(raw: dict, resolve: Callable[[Iterable[tuple[str, int]]], str]) -> ReleaseGroup:
    """One ws/2 JSON release group -> ReleaseGroup; invalid MBIDs raise EquigenError."""
    mbid = require_mbid(raw.get("id"), "release-group MBID from MusicBrainz")
    credits = raw.get("artist-credit") or []
    artist = (credits[0].get("artist") or {}) if credits else {}
    artist_mbid = artist.get("id")
    if artist_mbid is not None:
        require_mbid(artist_mbid, "artist MBID from MusicBrainz")
    tags = tuple((str(t.get("name", "")).lower(), int(t.get("count") or 0)) for t in raw.get("tags") or [])
    return ReleaseGroup(
        mbid=mbid,
        title=str(raw.get("title") or ""),
        primary_type=raw.get("primary-type"),
        secondary_types=tuple(raw.get("secondary-types") or ()),
        first_release_date=raw.get("first-release-date") or None,
        artist_mbid=artist_mbid,
        artist_name=artist.get("name") or (credits[0].get("name") if credits else None),
        tags=tags,
        genre=resolve(tags),
    )


def keep(group: ReleaseGroup, skipped_secondary: Sequence[str]) -> bool:
    skipped = {s.lower() for s in skipped_secondary}
    return (group.primary_type or "").lower() == "album" and not any(
        s.lower() in skipped for s in group.secondary_types
    )


class MusicBrainzClient:
    """Async ws/2 client sharing one aiohttp session and one rate limiter."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, user_agent: str, interval: float = 1.0,
                 max_retries: int = 8, on_request: Callable[[], None] | None = None):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self.limiter = RateLimiter(interval)
        self.max_retries = max_retries
        self.requests = 0
        self.on_request = on_request

    async def get_json(self, path: str, params: dict) -> dict:
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            await self.limiter.wait()
            self.requests += 1
            if self.on_request:
                self.on_request()
            try:
                async with self.session.get(url, params=params, headers=self.headers) as resp:
                    if resp.status == 503 or resp.status >= 500:
                        retry_after = _retry_after(resp.headers.get("Retry-After"))
                        delay = retry_after if retry_after is not None else _backoff(attempt)
                        self.limiter.push_back(delay)
                        continue
                    body = await resp.read()
                    if resp.status != 200:
                        raise EquigenError(
                            f"MusicBrainz answered {resp.status} for {resp.url}: {_short(body)}"
                        )
                    try:
                        return json.loads(body)
                    except ValueError:
                        raise EquigenError(f"MusicBrainz at {self.base_url} sent a non-JSON answer for {path}") from None
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt >= 2:
                    raise EquigenError(f"cannot reach MusicBrainz at {self.base_url}: {_describe(exc)}") from None
                self.limiter.push_back(_backoff(attempt))
        raise EquigenError(f"MusicBrainz at {self.base_url} kept answering 503 after {self.max_retries} retries; try later")

    async def search_tag(self, tag: str, offset: int, resolve, skipped_secondary=DEFAULT_SKIPPED_SECONDARY,
                         limit: int = PAGE_SIZE) -> SearchPage:
        data = await self.get_json(
            "/ws/2/release-group", {"query": tag_query(tag), "limit": str(limit), "offset": str(offset), "fmt": "json"}
        )
        raw_groups = data.get("release-groups")
        if not isinstance(raw_groups, list) or not isinstance(data.get("count"), int):
            raise EquigenError(f"MusicBrainz at {self.base_url} sent an unexpected search answer (no count/release-groups)")
        parsed = [parse_release_group(g, resolve) for g in raw_groups]
        return SearchPage(
            count=data["count"],
            offset=offset,
            groups=[g for g in parsed if keep(g, skipped_secondary)],
            returned=len(raw_groups),
        )

    async def lookup(self, mbid: str, resolve) -> ReleaseGroup:
        require_mbid(mbid, "release-group MBID")
        data = await self.get_json(f"/ws/2/release-group/{mbid}", {"inc": "artist-credits tags", "fmt": "json"})
        return parse_release_group(data, resolve)


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), 120.0) if value is not None else None
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return min(60.0, 1.0 * 2**attempt) * random.uniform(0.5, 1.5)


def _short(body: bytes) -> str:
    return " ".join(body[:120].decode("utf-8", "replace").split())


def _describe(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
