"""Concurrent cover downloads into the catalog: fetch's rounds and a manifest rebuild share this engine.

Each cover: one download (coverart.py), validated, hashed and stored in a worker (images.py,
storage.py), its result recorded in the catalog in small batches (catalog.py). Results are stored
after the image file is in place: a kill loses at most the last batch's bookkeeping, and those
covers are simply downloaded again (same bytes, same path).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from equigen.catalog import Catalog
from equigen.config import Settings
from equigen.coverart import GlobalOnlyResolver, cover_url, download_cover, is_local_url
from equigen.errors import EquigenError
from equigen.images import BadImage, inspect_image
from equigen.records import CoverResult
from equigen.storage import store_image

FLUSH_EVERY = 64  # cover results per catalog transaction
FLUSH_SECONDS = 0.5
THUMBNAIL_SLACK = 2  # a front-500 answer may be at most 1000 px a side
FAILED_IN_A_ROW_LIMIT = 64  # failed downloads (each after its retries) in a row that stop a harvest
# Validation, hashing and storing run in worker processes, so they don't compete with the event loop
# for the GIL (measured by benchmarks/bench_download.py: threads left the second core half idle).
# A run with fewer covers than this uses threads instead (no process start-up for small runs).
PROCESS_POOL_MIN_COVERS = 256
T = TypeVar("T")


@dataclass
class DownloadStats:
    downloaded: int = 0  # covers that reached a final status in this run
    ok: int = 0
    failed: int = 0  # every status but ok (no_art, bad_image, refused, failed)
    bytes: int = 0
    seconds: float = 0.0  # busy time: at least one download in flight
    by_status: dict = field(default_factory=dict)

    @property
    def covers_per_second(self) -> float:
        return self.downloaded / self.seconds if self.seconds > 0 else 0.0


def progress_display(console: Console) -> Progress:
    """The bars fetch and a rebuild show on a terminal (logs and pipes get the summary only)."""
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


@asynccontextmanager
async def cover_downloads(
    settings: Settings, catalog: Catalog, progress: Progress, *, expected: int, show: bool = True
) -> AsyncIterator[CoverDownloader]:
    """A started downloader (session, workers, validation pool) for about `expected` covers; stopped on exit,
    its recorded results flushed. `expected` >= PROCESS_POOL_MIN_COVERS validates in worker processes."""
    timeout = aiohttp.ClientTimeout(total=settings.timeout, sock_connect=min(10.0, settings.timeout))
    # Redirects may only leave the global internet when the configured archive is itself local (simulator, mirror).
    resolver = None if is_local_url(settings.coverart_url) else GlobalOnlyResolver()
    connector = aiohttp.TCPConnector(
        limit=settings.concurrency, limit_per_host=settings.per_host, ttl_dns_cache=300, resolver=resolver
    )
    with validation_pool(expected) as pool:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            task = progress.add_task("covers", total=0, info="", visible=show)
            downloader = CoverDownloader(settings, catalog, session, pool, DownloadStats(), progress, task)
            downloader.start()
            try:
                yield downloader
            finally:
                await downloader.stop()
                downloader.stats.seconds = downloader.active_seconds()


async def download_catalog_covers(
    settings: Settings, catalog: Catalog, *, genres: Sequence[str], console: Console
) -> DownloadStats:
    """Download every pending or failed cover of `genres` already in the catalog (no discovery)."""
    mbids = catalog.covers_to_fetch(genres)
    with progress_display(console) as progress:
        async with cover_downloads(settings, catalog, progress, expected=len(mbids)) as downloader:
            downloader.enqueue(mbids)
            await downloader.drain()
    return downloader.stats


class CoverDownloader:
    """Concurrent cover downloads from a queue; results reach the catalog in batches."""

    def __init__(self, settings: Settings, catalog: Catalog, session, pool, stats: DownloadStats, progress, task):
        self.settings = settings
        self.catalog = catalog
        self.session = session
        self.pool = pool
        self.stats = stats
        self.progress = progress
        self.task = task
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.enqueued: set[str] = set()
        self.workers: list[asyncio.Task] = []
        self.flusher: asyncio.Task | None = None
        self.pending: list[tuple[CoverResult, int]] = []
        self.headers = {"User-Agent": settings.user_agent}
        # Busy time (at least one download in flight): the honest denominator for covers/s
        # when downloads wait on discovery's 1 request/s.
        self.in_flight = 0
        self.busy_since = 0.0
        self.busy_seconds = 0.0
        self.failed_in_a_row = 0
        self.fatal: OSError | None = None

    def raise_if_broken(self) -> None:
        """Many failed downloads in a row: the Cover Art Archive is unreachable; stop rather than try them all.
        A local error (disk full) stops the harvest too, after the results so far are recorded."""
        if self.fatal is not None:
            self.flush()
            raise self.fatal
        if self.failed_in_a_row >= FAILED_IN_A_ROW_LIMIT:
            raise EquigenError(
                f"the last {self.failed_in_a_row} cover downloads all failed: is the Cover Art Archive "
                f"at {self.settings.coverart_url} reachable? Re-run the same command to resume"
            )

    def start(self) -> None:
        self.workers = [asyncio.create_task(self.worker()) for _ in range(self.settings.concurrency)]
        self.flusher = asyncio.create_task(self.flush_periodically())

    def enqueue(self, mbids) -> None:
        fresh = [m for m in mbids if m not in self.enqueued]
        self.enqueued.update(fresh)
        for m in fresh:
            self.queue.put_nowait(m)
        self.progress.update(self.task, total=len(self.enqueued))

    async def drain(self) -> None:
        """Wait until every queued cover has its result (a worker's error is raised here)."""
        join = asyncio.ensure_future(self.queue.join())
        while not join.done():
            await asyncio.wait([join, *self.workers], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for w in self.workers:
                if w.done() and not w.cancelled() and w.exception() is not None:
                    join.cancel()
                    raise w.exception()
            if self.failed_in_a_row >= FAILED_IN_A_ROW_LIMIT:
                join.cancel()
                self.raise_if_broken()
        self.raise_if_broken()
        self.flush()

    async def stop(self) -> None:
        for w in self.workers:
            w.cancel()
        if self.flusher is not None:
            self.flusher.cancel()
        await asyncio.gather(*self.workers, *([self.flusher] if self.flusher else []), return_exceptions=True)
        self.flush()

    def active_seconds(self) -> float:
        return self.busy_seconds + (time.monotonic() - self.busy_since if self.in_flight else 0.0)

    async def worker(self) -> None:
        while True:
            mbid = await self.queue.get()
            try:
                if self.fatal is None:
                    await self._one(mbid)
            except OSError as exc:  # disk full, the folder gone: stop every download, keep what is recorded
                self.fatal = exc
            finally:
                self.queue.task_done()

    async def _one(self, mbid: str) -> None:
        loop = asyncio.get_running_loop()
        if self.in_flight == 0:
            self.busy_since = time.monotonic()
        self.in_flight += 1
        try:
            url = cover_url(self.settings.coverart_url, mbid, self.settings.thumbnail)
            outcome = await download_cover(
                self.session,
                url,
                headers=self.headers,
                max_bytes=self.settings.max_bytes,
                max_attempts=self.settings.max_attempts,
                allow_private=is_local_url(self.settings.coverart_url),
            )
            if outcome.status == "ok":
                result = await loop.run_in_executor(
                    self.pool,
                    validate_and_store,
                    self.settings.data_dir,
                    self.settings.max_pixels,
                    self.settings.min_side,
                    mbid,
                    url,
                    outcome.http_status,
                    outcome.data,
                    THUMBNAIL_SLACK * self.settings.thumbnail,
                )
            else:
                result = CoverResult(mbid, outcome.status, outcome.http_status, outcome.error, source_url=url)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.busy_seconds += time.monotonic() - self.busy_since
        self.pending.append((result, outcome.attempts))
        stats = self.stats
        stats.downloaded += 1
        stats.by_status[result.status] = stats.by_status.get(result.status, 0) + 1
        if result.status == "ok":
            stats.ok += 1
            stats.bytes += result.bytes or 0
        else:
            stats.failed += 1
        self.failed_in_a_row = self.failed_in_a_row + 1 if result.status == "failed" else 0
        if result.status == "ok":  # the bar's text names the other statuses only: unchanged by an ok
            self.progress.advance(self.task)
        else:
            self.progress.update(self.task, advance=1, info=_status_info(stats.by_status))
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        if self.pending:
            batch, self.pending = self.pending, []
            self.catalog.record_covers(batch)


def validate_and_store(
    data_dir: Path,
    max_pixels: int,
    min_side: int,
    mbid: str,
    url: str,
    http_status: int | None,
    data: bytes | None,
    max_side: int | None = None,
) -> CoverResult:
    """Validate and hash downloaded bytes and store them (runs in a worker process or thread).

    max_side: a thumbnail far larger than the size asked for is not what the archive serves there.
    """
    data = data or b""
    try:
        info = inspect_image(data, max_pixels, min_side)
        if max_side is not None and max(info.width, info.height) > max_side:
            raise BadImage(f"{info.width}x{info.height} is far larger than the thumbnail asked for")
    except BadImage as exc:
        return CoverResult(mbid, "bad_image", http_status, str(exc)[:300], bytes=len(data), source_url=url)
    path = store_image(data_dir, info.sha256, info.ext, data)
    return CoverResult(
        mbid,
        "ok",
        http_status,
        None,
        info.sha256,
        info.phash,
        info.width,
        info.height,
        len(data),
        info.format,
        path,
        url,
    )


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop's faster event loop when it is installed (`pip install 'equigen[fast]'`;
    benchmarks/bench_download.py measures both)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle (it flushes the catalog); workers just finish or get shut down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def validation_pool(expected: int) -> Executor:
    """Worker processes (one per core) for a download-only run of `expected` >= PROCESS_POOL_MIN_COVERS covers;
    else two threads (discovery paces downloads at one search page a second, which threads keep up with).

    forkserver, not fork: the parent runs an event loop and threads (fork would copy held locks).
    """
    workers = os.cpu_count() or 1
    if expected < PROCESS_POOL_MIN_COVERS or workers < 2:
        return ThreadPoolExecutor(max_workers=2)
    try:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["equigen.downloader"])
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)
    except (ValueError, OSError, NotImplementedError):  # no forkserver on this platform
        return ThreadPoolExecutor(max_workers=2)


def _status_info(by_status: dict) -> str:
    bad = {k: v for k, v in by_status.items() if k != "ok"}
    return " ".join(f"{k}={v}" for k, v in sorted(bad.items())) if bad else ""
