"""Cover Art Archive downloader: aiohttp, bounded concurrency, redirects, retries, size caps.

`download_cover` answers one cover's fate as a CoverResult-ready Outcome; the caller validates,
hashes and stores the bytes (images.py, storage.py) and records the result (catalog.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from urllib.parse import urljoin, urlparse

import aiohttp

from equigen.mbids import require_mbid

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Outcome:
    status: str                 # ok | no_art | bad_image | failed
    attempts: int
    http_status: int | None = None
    data: bytes | None = None
    final_url: str | None = None
    error: str | None = None


class Retryable(Exception):
    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class Refused(Exception):
    """Not retried: a bad redirect, a body over the cap."""

    def __init__(self, status: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.status = status
        self.http_status = http_status


def cover_url(coverart_url: str, mbid: str, thumbnail: int) -> str:
    return f"{coverart_url.rstrip('/')}/release-group/{require_mbid(mbid)}/front-{thumbnail}"


async def download_cover(session: aiohttp.ClientSession, url: str, *, headers: dict, max_bytes: int,
                         max_attempts: int = 4, backoff: float = 0.5) -> Outcome:
    """GET `url` following at most MAX_REDIRECTS http(s) redirects; retry transient failures."""
    last_error, last_status = "", None
    for attempt in range(1, max_attempts + 1):
        try:
            status, data, final_url = await _get_following(session, url, headers, max_bytes)
        except Retryable as exc:
            last_error, last_status = str(exc), exc.http_status
        except Refused as exc:
            return Outcome(exc.status, attempt, exc.http_status, error=str(exc))
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            last_error, last_status = f"{type(exc).__name__}: {exc}".strip(": "), None
        else:
            if status == 404:
                return Outcome("no_art", attempt, 404, final_url=final_url, error="no front cover (404)")
            if status == 200:
                return Outcome("ok", attempt, 200, data=data, final_url=final_url)
            return Outcome("failed", attempt, status, final_url=final_url, error=f"HTTP {status}")
        if attempt < max_attempts:
            delay = backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            logger.info("cover %s: %s; retry %d of %d in %.1f s", url, last_error[:80], attempt, max_attempts - 1, delay)
            await asyncio.sleep(delay)
    return Outcome("failed", max_attempts, last_status, error=last_error[:300] or "failed")


async def _get_following(session, url: str, headers: dict, max_bytes: int) -> tuple[int, bytes | None, str]:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        async with session.get(current, headers=headers, allow_redirects=False) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.headers.get("Location")
                if not location:
                    raise Refused("failed", f"redirect without Location from {current}", resp.status)
                nxt = urljoin(current, location)
                if urlparse(nxt).scheme not in ("http", "https"):
                    raise Refused("failed", f"refused redirect to non-http(s) URL {nxt[:80]}", resp.status)
                logger.debug("redirect %d %s -> %s", resp.status, current, nxt)
                current = nxt
                continue
            if resp.status in RETRYABLE_STATUS:
                raise Retryable(f"HTTP {resp.status}", resp.status)
            if resp.status != 200:
                return resp.status, None, current
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise Refused("bad_image", f"body of {length} bytes exceeds the cap of {max_bytes}", 200)
            if length is not None:
                # Declared size within the cap: one read, no per-chunk loop (aiohttp stops at the
                # declared length; a connection closed early gives fewer bytes or a payload error).
                data = await resp.read()
                if len(data) != length:
                    raise Retryable(f"body cut short: {len(data)} of {length} bytes", 200)
                return 200, data, current
            chunks, total = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise Refused("bad_image", f"body exceeds the cap of {max_bytes} bytes", 200)
                chunks.append(chunk)
            return 200, b"".join(chunks), current
    raise Refused("failed", f"more than {MAX_REDIRECTS} redirects from {url}", None)
