"""Concurrent cover downloads into the catalog: fetch's rounds and a manifest rebuild share this engine.

The three layers of a download: coverart.get_cover_bytes GETs one cover's bytes (redirects, retries, caps);
download_workers.download_and_store_cover does that, then validates, hashes and stores the cover;
ConcurrentCoverDownloads (here) runs many of those at once and records their results in the catalog in
small batches (catalog.py). Results are recorded after the image file is in place: a kill
loses at most the last batch's bookkeeping, and those covers are simply downloaded again (same bytes, same
path). Where the downloads run: as tasks on this process's event loop (small runs, and downloads beside
discovery, which paces them at a search page a second), or, for a large download-only run, in one download
process per core, each with its own libcurl transfers (download_workers.process_main), this process handing out
MBIDs and recording what comes back.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from equigen.core.catalog import Catalog
from equigen.core.config import Settings
from equigen.core.errors import EquigenError
from equigen.core.records import CoverResult
from equigen.harvest.download_workers import (
    CoverJob,
    download_and_store_cover,
    libcurl_available,
    new_session,
    one_blas_thread,
    process_main,
)
from equigen.harvest.forkserver import FORKSERVER_PRELOAD

logger = logging.getLogger(__name__)

FLUSH_EVERY = 64  # cover results per catalog transaction
FLUSH_SECONDS = 0.5
FAILED_IN_A_ROW_LIMIT = 64  # failed downloads (each after its retries) in a row that stop a harvest
# A download-only run of at least this many covers starts download processes (one per core); smaller runs
# download on this event loop (no process start-up for a handful of covers).
DOWNLOAD_PROCESSES_MIN_COVERS = 256


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
) -> AsyncIterator[ConcurrentCoverDownloads]:
    """A started downloader for about `expected` covers; stopped on exit, its recorded results flushed.
    `expected` >= DOWNLOAD_PROCESSES_MIN_COVERS downloads in download processes (download_process_count)."""
    task = progress.add_task("covers", total=0, info="", visible=show)
    downloader = ConcurrentCoverDownloads(catalog, DownloadStats(), progress, task, settings.coverart_url)
    job = CoverJob.of(settings)
    processes = download_process_count(expected, settings.concurrency, settings.per_host)
    if processes:
        backend: _Backend = _DownloadProcesses(job, settings.concurrency, settings.per_host, processes)
    else:
        backend = _OnThisLoop(job, settings.concurrency, settings.per_host)
    downloader.start(backend)
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


def download_process_count(expected: int, connections: int, per_host: int) -> int:
    """Download processes for a download-only run of `expected` covers: one per core this process may use
    (at most one per connection allowed to a host), or 0 (on this loop)."""
    try:
        cores = len(os.sched_getaffinity(0))  # a container's CPU set, not the host's
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    count = min(cores, connections, per_host)
    if expected < DOWNLOAD_PROCESSES_MIN_COVERS or count < 2:
        return 0
    try:
        multiprocessing.get_context("forkserver")
    except ValueError:  # no forkserver on this platform
        return 0
    if not libcurl_available():
        logger.info("pycurl is not installed: downloading on this event loop, not in download processes")
        return 0
    return count


class ConcurrentCoverDownloads:
    """Covers queued by MBID, downloaded concurrently by a backend; results reach the catalog in batches."""

    def __init__(self, catalog: Catalog, stats: DownloadStats, progress: Progress, task, coverart_url: str):
        self.catalog = catalog
        self.stats = stats
        self.progress = progress
        self.task = task
        self.coverart_url = coverart_url
        self.backend: _Backend | None = None
        self.enqueued: set[str] = set()
        self.outstanding = 0  # queued or downloading, no result yet
        self.idle = asyncio.Event()
        self.idle.set()
        self.flusher: asyncio.Task | None = None
        self.pending: list[tuple[CoverResult, int]] = []
        # Busy time (a cover queued or downloading): the honest denominator for covers/s when downloads
        # wait on discovery's 1 request/s.
        self.busy_since = 0.0
        self.busy_seconds = 0.0
        self.failed_in_a_row = 0
        self.fatal: BaseException | None = None

    def start(self, backend: _Backend) -> None:
        self.backend = backend
        backend.start(self)
        self.flusher = asyncio.create_task(self.flush_periodically())

    def enqueue(self, mbids) -> None:
        fresh = [m for m in mbids if m not in self.enqueued]
        if not fresh or self.fatal is not None:  # a broken run downloads nothing more: they stay pending
            return
        self.enqueued.update(fresh)
        if self.outstanding == 0:
            self.busy_since = time.monotonic()
        self.outstanding += len(fresh)
        self.idle.clear()
        self.progress.update(self.task, total=len(self.enqueued))
        self.backend.submit(fresh)

    def record(self, result: CoverResult, attempts: int) -> None:
        """One cover's final result (called by the backend on the event loop)."""
        self._done()
        self.pending.append((result, attempts))
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

    def fail(self, exc: BaseException, *, cover_done: bool = True) -> None:
        """A download could not be stored (disk full, the folder gone) or a download process broke: the run
        stops at the next check, after the results so far are recorded."""
        if cover_done:
            self._done()
        if self.fatal is None:
            self.fatal = exc
        self.idle.set()

    def _done(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.busy_seconds += time.monotonic() - self.busy_since
            self.idle.set()

    def raise_if_broken(self) -> None:
        """Many failed downloads in a row: the Cover Art Archive is unreachable; stop rather than try them all.
        A local error (disk full) stops the harvest too, after the results so far are recorded."""
        if self.backend is not None:
            self.backend.check()  # the download processes' watchdog runs while discovery pages too
        if self.fatal is not None:
            self.flush()
            raise self.fatal
        if self.failed_in_a_row >= FAILED_IN_A_ROW_LIMIT:
            raise EquigenError(
                f"the last {self.failed_in_a_row} cover downloads all failed: is the Cover Art Archive "
                f"at {self.coverart_url} reachable? Re-run the same command to resume"
            )

    async def drain(self) -> None:
        """Wait until every queued cover has its result (a download's error is raised here)."""
        while not self.idle.is_set():
            try:
                await asyncio.wait_for(self.idle.wait(), timeout=1.0)
            except TimeoutError:
                pass
            self.backend.check()
            if self.fatal is not None or self.failed_in_a_row >= FAILED_IN_A_ROW_LIMIT:
                self.raise_if_broken()
        self.backend.check()
        self.raise_if_broken()
        self.flush()

    async def stop(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            await asyncio.gather(self.flusher, return_exceptions=True)
        if self.backend is not None:
            await self.backend.stop()
        self.flush()

    def active_seconds(self) -> float:
        return self.busy_seconds + (time.monotonic() - self.busy_since if self.outstanding > 0 else 0.0)

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception as exc:  # the catalog cannot be written: stop the run with that error
                self.fail(exc, cover_done=False)
                return

    def flush(self) -> None:
        if self.pending:
            self.catalog.record_covers(self.pending)  # one transaction: all of the batch or none of it
            self.pending = []


class _Backend:
    """Where the downloads run. Results go to ConcurrentCoverDownloads.record (or .fail), on the event loop."""

    def start(self, downloader: ConcurrentCoverDownloads) -> None: ...
    def submit(self, mbids: list[str]) -> None: ...
    def check(self) -> None:
        """Raise a download's unexpected error, if one happened."""

    async def stop(self) -> None: ...


class _OnThisLoop(_Backend):
    """Downloads as tasks on this event loop; validation in two threads (libjpeg-turbo, sha256 and the file
    write release the GIL)."""

    def __init__(self, job: CoverJob, connections: int, per_host: int):
        self.job, self.connections, self.per_host = job, connections, per_host
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.workers: list[asyncio.Task] = []

    def start(self, downloader: ConcurrentCoverDownloads) -> None:
        self.downloader = downloader
        self.session = new_session(self.job, self.connections, self.per_host)
        self.validator = ThreadPoolExecutor(max_workers=2)
        self.blas_limit = one_blas_thread()  # undone in stop(): discovery's planning keeps its BLAS threads after
        self.blas_limit.__enter__()
        self.workers = [asyncio.create_task(self.worker()) for _ in range(self.connections)]

    def submit(self, mbids: list[str]) -> None:
        for m in mbids:
            self.queue.put_nowait(m)

    async def worker(self) -> None:
        while True:
            mbid = await self.queue.get()
            if self.downloader.fatal is not None:
                continue  # the run is stopping: leave the rest pending for the next run
            try:
                result, attempts = await download_and_store_cover(self.session, self.validator, self.job, mbid)
            except OSError as exc:  # disk full, the folder gone: stop every download, keep what is recorded
                self.downloader.fail(exc)
                continue
            self.downloader.record(result, attempts)

    def check(self) -> None:
        for w in self.workers:
            if w.done() and not w.cancelled() and w.exception() is not None:
                raise w.exception()

    async def stop(self) -> None:
        for w in self.workers:
            w.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        await self.session.close()
        self.validator.shutdown(wait=True)
        self.blas_limit.__exit__(None, None, None)


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    capacity: int  # MBIDs sent and not answered, at most: enough to keep its connections busy
    outstanding: int = 0
    alive: bool = True
    heard: float = 0.0  # monotonic time of its last message, or of the work handed to it while it held none


class _DownloadProcesses(_Backend):
    """One download process per core (download_workers.process_main), fed MBIDs a few at a time so that
    none sits on a long queue while another idles, and so that what a later round adds flows in."""

    def __init__(self, job: CoverJob, connections: int, per_host: int, count: int):
        self.job, self.count = job, count
        self.connections = [connections // count + (i < connections % count) for i in range(count)]
        self.per_host = [per_host // count + (i < per_host % count) for i in range(count)]  # count <= per_host
        self.waiting: deque[str] = deque()
        self.children: list[_Child] = []
        self.stopping = False

    def start(self, downloader: ConcurrentCoverDownloads) -> None:
        self.downloader = downloader
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("forkserver")
        # forkserver, not fork: this process runs an event loop and threads (fork would copy held locks).
        context.set_forkserver_preload(FORKSERVER_PRELOAD)  # already running after start_forkserver_early
        level = logging.getLogger("equigen").getEffectiveLevel()
        for connections, per_host in zip(self.connections, self.per_host):
            if connections < 1:
                continue
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=process_main, args=(theirs, self.job, connections, per_host, level), daemon=True
            )
            process.start()
            theirs.close()
            child = _Child(process, mine, capacity=2 * connections)
            self.children.append(child)
            loop.add_reader(mine.fileno(), self._receive, child)
        logger.info("downloading in %d processes, %s connections", len(self.children), self.connections)

    def submit(self, mbids: list[str]) -> None:
        self.waiting.extend(mbids)
        self._hand_out()

    def _hand_out(self) -> None:
        for child in sorted(self.children, key=lambda c: c.outstanding):
            room = child.capacity - child.outstanding
            if not self.waiting or not child.alive or room <= 0 or self.downloader.fatal is not None:
                continue
            batch = [self.waiting.popleft() for _ in range(min(room, len(self.waiting)))]
            try:
                child.conn.send(batch)
            except OSError:  # it died: _receive reports it
                self.waiting.extendleft(reversed(batch))
                continue
            if child.outstanding == 0:
                child.heard = time.monotonic()
            child.outstanding += len(batch)

    def _receive(self, child: _Child) -> None:
        try:
            while True:
                try:
                    if not child.conn.poll():
                        break
                    message = child.conn.recv()
                except (EOFError, OSError):
                    self._lost(child)
                    return
                child.heard = time.monotonic()
                self._handle(child, message)
            self._hand_out()
        except Exception as exc:  # recording failed (the catalog): the run stops with that error at the next check
            self.downloader.fail(exc, cover_done=False)

    def _handle(self, child: _Child, message: tuple) -> None:
        kind = message[0]
        if kind == "results":
            for result, attempts in message[1]:
                child.outstanding -= 1
                self.downloader.record(result, attempts)
        elif kind == "log":
            logging.getLogger(message[1]).log(message[2], "%s", message[3])
        elif kind == "fatal":
            child.outstanding -= 1
            self.downloader.fail(OSError(message[2], message[3], message[4]))
        elif kind == "crash":
            error, text = message[1], message[2]
            if not isinstance(error, EquigenError):  # a bug: its traceback, from the download process
                error = RuntimeError(f"a download process failed:\n{text}")
            self.downloader.fail(error, cover_done=False)

    def stall_limit(self) -> float:
        """Seconds a download process holding covers may stay silent: each of its covers ends within its attempts'
        request timeouts (three hops each) and backoffs, and it holds several at once, so silence this long means
        it hangs (a decoder stuck on a crafted image), which no HTTP timeout would end."""
        return 3 * self.job.timeout * self.job.max_attempts + 10.0

    def check(self) -> None:
        """The watchdog: a download process that holds covers and has said nothing for stall_limit() stops the
        run in one line (re-running resumes; what was recorded stays)."""
        now, limit = time.monotonic(), self.stall_limit()
        for child in self.children:
            if child.alive and child.outstanding > 0 and now - child.heard > limit and self.downloader.fatal is None:
                child.process.kill()
                self.downloader.fail(
                    EquigenError(
                        f"a download process held {child.outstanding} covers without answering for {limit:.0f} s "
                        "(hung): stopped it; re-run the same command to resume"
                    ),
                    cover_done=False,
                )

    def _lost(self, child: _Child) -> None:
        asyncio.get_running_loop().remove_reader(child.conn.fileno())
        child.alive = False
        if not self.stopping and self.downloader.fatal is None:
            child.process.join(timeout=1)
            self.downloader.fail(
                EquigenError(
                    f"a download process exited unexpectedly (exit code {child.process.exitcode}): "
                    "re-run the same command to resume"
                ),
                cover_done=False,
            )

    async def stop(self) -> None:
        self.stopping = True
        loop = asyncio.get_running_loop()
        for child in self.children:
            if child.alive:
                loop.remove_reader(child.conn.fileno())
            try:
                child.conn.send(None)  # stop now: what is in flight stays pending in the catalog
            except OSError:
                pass
        for child in self.children:
            await loop.run_in_executor(None, child.process.join, 10)
            if child.process.is_alive():
                child.process.kill()
                await loop.run_in_executor(None, child.process.join, 5)
            child.conn.close()


def _status_info(by_status: dict) -> str:
    bad = {k: v for k, v in by_status.items() if k != "ok"}
    return " ".join(f"{k}={v}" for k, v in sorted(bad.items())) if bad else ""
