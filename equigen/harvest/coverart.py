"""Cover Art Archive client for one cover: aiohttp, redirects (http(s) only, global addresses), retries, size caps.

`get_cover_bytes` answers one cover's fate as a CoverResult-ready Outcome; the caller validates,
hashes and stores the bytes (images.py, storage.py) and records the result (catalog.py). How many covers
download at once (the bounded concurrency, download processes) is downloader.py's job, not this module's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

import aiohttp
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from equigen.core.mbids import require_mbid

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
# Content-Encodings aiohttp inflates (br and zstd with their optional modules); libcurl fails on any other
DECODED = {"gzip", "deflate", "br", "zstd"}
# A host name as DNS and libcurl take it (libcurl refuses spaces and most punctuation: "Bad hostname")
HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | no_art | bad_image | failed
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


class NotGlobalAddress(OSError):
    """A host that resolves only to loopback, private, link-local or other non-global addresses."""


class GlobalOnlyResolver(ThreadedResolver):
    """Resolves like aiohttp's default and drops every non-global address, for every hop and connection,
    so a redirect (or a DNS answer) cannot point our requests at 127.0.0.1, 10.x or 169.254.169.254
    (SSRF). Checking at connect time, not per URL, leaves no gap for DNS rebinding."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        results = await super().resolve(host, port, family)
        allowed = [r for r in results if is_global_address(r["host"])]
        if not allowed:
            raise NotGlobalAddress(
                f"{host[:80]} resolves to no global address ({results[0]['host'] if results else '-'})"
            )
        return allowed


def is_global_address(address: str) -> bool:
    """An IP address on the public internet: the only kind a hop may reach when the archive is not local (both
    clients ask this, GlobalOnlyResolver for aiohttp and the socket hook for libcurl)."""
    return ipaddress.ip_address(address).is_global


def is_local_url(url: str) -> bool:
    """A base URL on this machine or a private network (the simulator, a mirror): redirects may stay there."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def _private_literal(url: URL) -> bool:
    try:
        return not is_global_address(url.raw_host or "")
    except ValueError:
        return False  # a host name: the resolver decides


def cover_url(coverart_url: str, mbid: str, thumbnail: int) -> str:
    return f"{coverart_url.rstrip('/')}/release-group/{require_mbid(mbid)}/front-{thumbnail}"


async def get_cover_bytes(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    max_bytes: int,
    max_attempts: int = 4,
    backoff: float = 0.5,
    allow_private: bool = True,
) -> Outcome:
    """GET `url` following at most MAX_REDIRECTS http(s) redirects; retry transient failures.

    allow_private=False refuses any hop to a non-global IP literal ("refused"); host names are
    checked by the session's GlobalOnlyResolver. headers: added to the session's own (a download process's
    session carries the User-Agent, so its requests merge no headers).
    """
    last_error, last_status = "", None
    for attempt in range(1, max_attempts + 1):
        try:
            status, data, final_url = await _get_following(session, url, headers, max_bytes, allow_private)
        except Retryable as exc:
            last_error, last_status = str(exc), exc.http_status
        except Refused as exc:
            return Outcome(exc.status, attempt, exc.http_status, error=str(exc))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, NotGlobalAddress):
                logger.info("refused %s: %s", url, exc.os_error)
                return Outcome("refused", attempt, None, error=f"refused: {exc.os_error}"[:300])
            last_error, last_status = f"{type(exc).__name__}: {exc}".strip(": "), None
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            last_error, last_status = f"{type(exc).__name__}: {exc}".strip(": "), None
        else:
            if status == 404:
                return Outcome("no_art", attempt, 404, final_url=final_url, error="no front cover (404)")
            if status == 200:
                return Outcome("ok", attempt, 200, data=data, final_url=final_url)
            return Outcome("failed", attempt, status, final_url=final_url, error=f"HTTP {status}")
        if attempt < max_attempts:
            delay = retry_delay(backoff, attempt)
            log_retry(url, last_error, attempt, max_attempts, delay)
            await asyncio.sleep(delay)
    return Outcome("failed", max_attempts, last_status, error=last_error[:300] or "failed")


def retry_delay(backoff: float, attempt: int) -> float:
    """Seconds before the attempt after `attempt`: exponential, jittered so that many covers failing together
    do not all come back at once."""
    return backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)


def log_retry(url: str, error: str, attempt: int, max_attempts: int, delay: float) -> None:
    logger.info("cover %s: %s; retry %d of %d in %.1f s", url, error[:80], attempt, max_attempts - 1, delay)


def parse_url(url: str) -> URL:
    try:
        return URL(url)
    except ValueError:
        raise Refused("failed", f"malformed URL {url[:100]}") from None


def check_hop(url: URL, allow_private: bool) -> None:
    """Before each request: a hop to a non-global IP literal is refused unless the archive is local (host names
    are checked where they resolve: GlobalOnlyResolver, or the libcurl engine's socket hook)."""
    if not allow_private and _private_literal(url):
        raise Refused("refused", f"refused a request to a non-global address: {str(url)[:100]}")


def next_hop(current: URL, status: int, location: str | None) -> URL:
    """Where a redirect answer sends us: the Location resolved against the current URL (as urljoin does),
    http(s) only, to a well-formed host, without credentials. A missing, malformed or non-http(s) target fails
    this cover (not retried). Both clients hand over the raw Location header (libcurl's engine reads it from the
    header lines), so that one function decides every hop for both."""
    if not location:
        raise Refused("failed", f"redirect without Location from {current}", status)
    if not location.isascii() or "\t" in location:
        location = _escape_raw(location)
    try:
        nxt = current.join(URL(location))
        scheme, host = nxt.scheme, nxt.raw_host
    except ValueError:  # e.g. "http://[::1/x": not a URL
        raise Refused("failed", f"redirect to a malformed URL from {current}", status) from None
    if scheme not in ("http", "https"):
        raise Refused("failed", f"refused redirect to non-http(s) URL {str(nxt)[:80]}", status)
    if not _well_formed_host(host):
        raise Refused("failed", f"redirect to a malformed URL from {current}", status)
    if nxt.raw_user is not None or nxt.raw_password is not None:
        nxt = nxt.with_user(None)  # a redirect does not get to make us send credentials (libcurl drops them too)
    logger.debug("redirect %d %s -> %s", status, current, nxt)
    return nxt


def _escape_raw(location: str) -> str:
    """Bytes of a Location outside printable ASCII, percent-encoded as libcurl encodes them: aiohttp decodes
    header bytes as UTF-8 (surrogates for the rest), and yarl would drop a byte that is not UTF-8 (and a tab),
    silently asking for another file."""
    raw = location.encode("utf-8", "surrogateescape")
    return "".join(chr(byte) if 0x20 <= byte < 0x7F else f"%{byte:02X}" for byte in raw)


def _well_formed_host(host: str | None) -> bool:
    """A DNS name or a canonical IP address. Legacy numeric IPv4 forms (2130706433, 0177.0.0.1, 127.1, 0x7f.1)
    are refused: aiohttp refuses the decimal ones at connect time (after a retry each), libcurl reads them all as
    addresses; refused here, both answer the same, and no obfuscated address is requested."""
    if not host:
        return False
    if ":" in host:  # IPv6 (yarl gives it without brackets)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True
    if HOST_NAME.fullmatch(host) is None:
        return False
    try:
        socket.inet_aton(host)
    except OSError:
        return True  # a name, not an address
    try:
        ipaddress.IPv4Address(host)  # dotted quad, no leading zeros
    except ValueError:
        return False
    return True


async def _get_following(
    session, url: str, headers: Mapping[str, str] | None, max_bytes: int, allow_private: bool = True
) -> tuple[int, bytes | None, str]:
    # One parsed URL per hop, handed to aiohttp as is: a string would be parsed again by every request, and
    # urljoin + urlparse per redirect cost more than the yarl join (0.1 ms of CPU per cover on loopback).
    current = parse_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        check_hop(current, allow_private)
        async with session.get(current, headers=headers, allow_redirects=False) as resp:
            if resp.status in REDIRECT_STATUS:
                locations = resp.headers.getall("Location", ())
                if len(locations) > 1:  # ambiguous: libcurl calls it a weird server reply (retried, no status)
                    raise Retryable(f"redirect with {len(locations)} Location headers")
                current = next_hop(current, resp.status, locations[0] if locations else None)
                continue
            if resp.status in RETRYABLE_STATUS:
                raise Retryable(f"HTTP {resp.status}", resp.status)
            if resp.status != 200:
                return resp.status, None, str(current)
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise Refused("bad_image", f"body of {length} bytes exceeds the cap of {max_bytes}", 200)
            encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
            encoded = encoding not in ("", "identity")
            if encoded and encoding not in DECODED:  # aiohttp would hand on the bytes as they came: a bad answer
                raise Retryable(f"unrecognized Content-Encoding {encoding[:40]!r}")
            if length is not None and not encoded:
                # Declared size within the cap: one read, no per-chunk loop (aiohttp stops at the
                # declared length; a connection closed early gives fewer bytes or a payload error).
                data = await resp.read()
                if len(data) != length:
                    raise Retryable(f"body cut short: {len(data)} of {length} bytes", 200)
                return 200, data, str(current)
            # Unknown length, or compressed (aiohttp inflates it): count the *decoded* bytes as they come,
            # so a small gzip body that inflates to gigabytes stops at the cap.
            chunks, total = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise Refused("bad_image", f"decoded body exceeds the cap of {max_bytes} bytes", 200)
                chunks.append(chunk)
            return 200, b"".join(chunks), str(current)
    raise too_many_redirects(url)


def too_many_redirects(url: str) -> Refused:
    return Refused("failed", f"more than {MAX_REDIRECTS} redirects from {url}", None)
