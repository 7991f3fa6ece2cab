"""MusicBrainz ws/2 discovery client: release-group search by tag, politely.

One shared rate limiter spaces every MusicBrainz request (default 1/s, their published rule);
503 answers honour Retry-After, else back off exponentially with jitter. aiohttp rather than
musicbrainzngs (README: "Why not musicbrainzngs"): it is synchronous, speaks XML by default, spaces requests
with a process-global rate lock and ignores Retry-After, whereas discovery runs in the same event loop as the
concurrent cover downloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import aiohttp

from equigen.core.defaults import DEFAULT_SKIPPED_SECONDARY
from equigen.core.errors import EquigenError, first_line
from equigen.core.mbids import require_mbid
from equigen.core.records import ReleaseGroup
from equigen.core.taxonomy import Label

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # the most MusicBrainz search returns per request
MAX_ANSWER_BYTES = 16_000_000  # decoded bytes of one JSON answer (a full search page is ~0.3 MB)
RETRY_STATUSES = {429, 500, 502, 503, 504}  # 429 from a proxy in front of the service is handled like 503


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
    count: int  # total matches for the query
    offset: int
    groups: list[ReleaseGroup]  # parsed, filtered, genre-resolved
    returned: int  # items in the raw page (before filtering), drives paging
    malformed: int = 0  # items skipped because they were not usable release groups
    ids: tuple[str, ...] = ()  # every parsed item's MBID, before filtering (to notice a server repeating pages)


def tag_query(tag: str) -> str:
    """Lucene query for album release groups carrying `tag` (quoted, escaped)."""
    escaped = tag.replace("\\", "\\\\").replace('"', '\\"')
    return f'tag:"{escaped}" AND primarytype:album'


MAX_TEXT = 1000  # characters kept of a title or an artist name
_SURROGATES = re.compile("[\ud800-\udfff]")
MAX_TAGS = 500  # tags kept per release group
MAX_TAG_NAME = 200  # characters of a tag name


class MalformedItem(ValueError):
    """One search result that is not a usable release group (skipped and counted, never fatal)."""


def _text(value, limit: int = MAX_TEXT) -> str | None:
    """A capped string field; lone surrogates (not storable as UTF-8) become U+FFFD."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    text = str(value)[:limit]
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def _tags(raw_tags) -> tuple[tuple[str, int], ...]:
    if raw_tags is None:
        return ()
    if not isinstance(raw_tags, list):
        raise MalformedItem("tags is not a list")
    out = []
    for tag in raw_tags[:MAX_TAGS]:
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            raise MalformedItem("a tag without a name")
        count = tag.get("count", 0)
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not abs(count) < 1e12:  # NaN, inf
            raise MalformedItem(f"tag {tag['name'][:40]!r} has a non-numeric count")
        out.append((_text(tag["name"], MAX_TAG_NAME).strip().lower(), int(count)))
    return tuple(out)


def parse_release_group(raw: dict, label: Callable[[Iterable[tuple[str, int]]], Label]) -> ReleaseGroup:
    """One ws/2 JSON release group -> ReleaseGroup with its label and evidence.

    Raises MalformedItem for anything that is not a release group we can trust: not an object, an id
    or artist id that is not an MBID (it never reaches a URL or a path), malformed tags.
    Field shapes follow real answers (tests/fixtures/musicbrainz/): `secondary-types` and `tags` are
    omitted when empty, `artist-credit` is a list of {name, artist: {id, name}}.
    """
    if not isinstance(raw, dict):
        raise MalformedItem("a search result that is not an object")
    try:
        mbid = require_mbid(raw.get("id"), "release-group MBID from MusicBrainz")
        credits = raw.get("artist-credit") or []
        first = credits[0] if isinstance(credits, list) and credits and isinstance(credits[0], dict) else {}
        artist = first.get("artist") if isinstance(first.get("artist"), dict) else {}
        artist_mbid = artist.get("id")
        if artist_mbid is not None:
            artist_mbid = require_mbid(artist_mbid, "artist MBID from MusicBrainz")
    except EquigenError as exc:
        raise MalformedItem(str(exc)) from None
    secondary = raw.get("secondary-types") or []
    if not isinstance(secondary, list):
        raise MalformedItem("secondary-types is not a list")
    tags = _tags(raw.get("tags"))
    verdict = label(tags)
    return ReleaseGroup(
        mbid=mbid,
        title=_text(raw.get("title")) or "",
        primary_type=_text(raw.get("primary-type"), 40),
        secondary_types=tuple(t for t in (_text(x, 40) for x in secondary[:20]) if t),
        first_release_date=_text(raw.get("first-release-date"), 10) or None,
        artist_mbid=artist_mbid,
        artist_name=_text(artist.get("name")) or _text(first.get("name")),
        tags=tags,
        genre=verdict.genre,
        label_votes=verdict.votes,
        label_confidence=round(verdict.confidence, 6),
    )


def keep(group: ReleaseGroup, skipped_secondary: Sequence[str]) -> bool:
    return wanted_type(group.primary_type, group.secondary_types, skipped_secondary)


def wanted_type(primary_type: str | None, secondary_types: Iterable[str], skipped_secondary: Iterable[str]) -> bool:
    """The type filter: an album with none of the skipped secondary types (compilation, live, ...)."""
    skipped = {s.lower() for s in skipped_secondary}
    return (primary_type or "").lower() == "album" and not any(s.lower() in skipped for s in secondary_types)


class MusicBrainzClient:
    """Async ws/2 client sharing one aiohttp session and one rate limiter."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        user_agent: str,
        interval: float = 1.0,
        max_retries: int = 8,
    ):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self.limiter = RateLimiter(interval)
        self.max_retries = max_retries
        self.requests = 0

    async def get_json(self, path: str, params: dict) -> dict:
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            await self.limiter.wait()
            self.requests += 1
            logger.debug("MusicBrainz GET %s %s", path, params)
            try:
                async with self.session.get(url, params=params, headers=self.headers, allow_redirects=False) as resp:
                    if resp.status in RETRY_STATUSES or resp.status >= 500:
                        retry_after = _retry_after(resp.headers.get("Retry-After"))
                        delay = retry_after if retry_after is not None else _backoff(attempt)
                        logger.info(
                            "MusicBrainz answered %d for %s; backing off %.1f s (retry %d of %d)",
                            resp.status,
                            path,
                            delay,
                            attempt + 1,
                            self.max_retries,
                        )
                        self.limiter.push_back(delay)
                        continue
                    if 300 <= resp.status < 400:
                        raise EquigenError(
                            f"MusicBrainz at {self.base_url} answered {resp.status} (a redirect) for "
                            f"{path}: point --musicbrainz-url at the service itself"
                        )
                    body = await _read_capped(resp, MAX_ANSWER_BYTES)
                    if body is None:
                        raise EquigenError(
                            f"MusicBrainz at {self.base_url} sent more than {MAX_ANSWER_BYTES:,} bytes "
                            f"for {path}: not a search answer"
                        )
                    if resp.status != 200:
                        raise EquigenError(f"MusicBrainz answered {resp.status} for {resp.url}: {_short(body)}")
                    try:
                        data = json.loads(body)
                    except (ValueError, RecursionError):
                        raise EquigenError(
                            f"MusicBrainz at {self.base_url} sent a non-JSON answer for {path}"
                        ) from None
                    if not isinstance(data, dict):  # ws/2 always answers an object; `[1,2]` or `null` is not one
                        raise EquigenError(
                            f"MusicBrainz at {self.base_url} sent JSON that is not an object for {path} "
                            f"({type(data).__name__}): not a ws/2 answer"
                        )
                    return data
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if attempt >= 2:
                    raise EquigenError(f"cannot reach MusicBrainz at {self.base_url}: {first_line(exc)}") from None
                delay = _backoff(attempt)
                logger.info("MusicBrainz connection error (%s); retrying in %.1f s", first_line(exc), delay)
                self.limiter.push_back(delay)
        raise EquigenError(
            f"MusicBrainz at {self.base_url} kept answering 503 after {self.max_retries} retries; try later"
        )

    async def search_tag(
        self, tag: str, offset: int, label, skipped_secondary=DEFAULT_SKIPPED_SECONDARY, limit: int = PAGE_SIZE
    ) -> SearchPage:
        data = await self.get_json(
            "/ws/2/release-group", {"query": tag_query(tag), "limit": str(limit), "offset": str(offset), "fmt": "json"}
        )
        raw_groups = data.get("release-groups")
        if not isinstance(raw_groups, list) or not isinstance(data.get("count"), int):
            raise EquigenError(
                f"MusicBrainz at {self.base_url} sent an unexpected search answer (no count/release-groups)"
            )
        parsed, malformed = [], 0
        for raw in raw_groups:
            try:
                parsed.append(parse_release_group(raw, label))
            except MalformedItem as exc:
                malformed += 1
                logger.warning(
                    "skipped a malformed release group in the answer to %s @ %d: %s", tag_query(tag), offset, exc
                )
        return SearchPage(
            count=data["count"],
            offset=offset,
            groups=[g for g in parsed if keep(g, skipped_secondary)],
            returned=len(raw_groups),
            malformed=malformed,
            ids=tuple(g.mbid for g in parsed),
        )


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The decoded body (aiohttp inflates gzip/deflate), read in chunks; None beyond `limit` bytes."""
    chunks, total = [], 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), 120.0) if value is not None else None
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return min(60.0, 1.0 * 2**attempt) * random.uniform(0.5, 1.5)


def _short(body: bytes) -> str:
    return " ".join(body[:120].decode("utf-8", "replace").split())
