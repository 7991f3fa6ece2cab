"""`equigen fetch`: discovery (MusicBrainz) and cover download (Cover Art Archive), resumable.

Discovery and downloads run together in one event loop: every page of search results is stored
with its paging cursor in one transaction and its new covers are queued for download at once.
Cover results are stored after the image file is in place, in small batches: a kill loses at most
the last batch's bookkeeping, and those covers are simply downloaded again (same bytes, same path).
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import signal
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from equigen.catalog import Catalog, CoverResult
from equigen.config import Settings
from equigen.coverart import cover_url, download_cover
from equigen.errors import EquigenError
from equigen.images import BadImage, inspect_image
from equigen.musicbrainz import DEFAULT_SKIPPED_SECONDARY, MusicBrainzClient
from equigen.storage import ensure_writable, store_image
from equigen.taxonomy import AMBIGUOUS, UNLABELLED, Taxonomy, load_taxonomy

FLUSH_EVERY = 64          # cover results per catalog transaction
FLUSH_SECONDS = 0.5
# Validation, hashing and storing run in worker processes, so they don't compete with the event loop
# for the GIL (measured by benchmarks/bench_download.py: threads left the second core half idle).
# A run with fewer covers than this uses threads instead (no process start-up for small runs).
PROCESS_POOL_MIN_COVERS = 256


@dataclass
class FetchStats:
    mb_requests: int = 0
    downloaded: int = 0       # covers that reached a final status in this run
    ok: int = 0
    failed: int = 0
    bytes: int = 0
    discovery_seconds: float = 0.0
    download_seconds: float = 0.0
    wall_seconds: float = 0.0
    new_release_groups: int = 0
    by_status: dict = field(default_factory=dict)

    @property
    def covers_per_second(self) -> float:
        return self.downloaded / self.download_seconds if self.download_seconds > 0 else 0.0


def run_fetch(settings: Settings, per_genre: int = 4000, oversample: float = 1.5, genres: Sequence[str] | None = None,
              include_secondary: Sequence[str] | None = None, discover: bool = True, download: bool = True,
              manifest: Path | None = None, console: Console | None = None) -> FetchStats:
    """Harvest until each genre holds per_genre x oversample candidates (or its tags run out)."""
    console = console or Console(stderr=True)
    if manifest is None and discover:
        settings = settings.for_musicbrainz()  # a manifest rebuild talks to the Cover Art Archive only
    if per_genre < 1 or oversample < 1:
        raise EquigenError("--per-genre must be at least 1 and --oversample at least 1.0")
    taxonomy = load_taxonomy(settings.taxonomy_path)
    targets = _target_genres(taxonomy, genres)
    ensure_writable(settings.data_dir)
    skipped = tuple(s for s in DEFAULT_SKIPPED_SECONDARY if s not in {x.lower() for x in include_secondary or ()})
    with Catalog(settings.catalog_path) as catalog:
        if manifest is not None:
            from equigen.rebuild import run_manifest_fetch

            return run_manifest_fetch(settings, catalog, taxonomy, manifest, console)
        catalog.ensure_discovery_rows((g, t) for g in targets for t in taxonomy.tags[g])
        target = math.ceil(per_genre * oversample)
        started = time.monotonic()
        stats = asyncio.run(_harvest(settings, catalog, taxonomy, targets, target, skipped, discover, download, console))
        stats.wall_seconds = time.monotonic() - started
        catalog.set_meta("last_fetch", json.dumps({
            "per_genre": per_genre, "oversample": oversample, "genres": list(targets), "mb_requests": stats.mb_requests,
            "downloaded": stats.downloaded, "wall_seconds": round(stats.wall_seconds, 2),
            "covers_per_second": round(stats.covers_per_second, 1),
        }))
        console.print(summary_table(catalog, taxonomy))
        console.print(
            f"wall {stats.wall_seconds:.1f} s | MusicBrainz requests {stats.mb_requests} | "
            f"covers downloaded {stats.downloaded} ({stats.covers_per_second:.1f}/s, {stats.bytes / 1e6:.1f} MB) | "
            f"new release groups {stats.new_release_groups}"
        )
        _warn_short(catalog, targets, per_genre, console)
    return stats


def _target_genres(taxonomy: Taxonomy, genres: Sequence[str] | None) -> tuple[str, ...]:
    if not genres:
        return taxonomy.genres
    by_lower = {g.lower(): g for g in taxonomy.genres}
    unknown = [g for g in genres if g.lower() not in by_lower]
    if unknown:
        raise EquigenError(f"unknown genre(s) {', '.join(unknown)}; the taxonomy has: {', '.join(taxonomy.genres)}")
    return tuple(by_lower[g.lower()] for g in genres)


async def _harvest(settings: Settings, catalog: Catalog, taxonomy: Taxonomy, targets: tuple[str, ...], target: int,
                   skipped: tuple[str, ...], discover: bool, download: bool, console: Console) -> FetchStats:
    stats = FetchStats()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    enqueued: set[str] = set()
    target_set = set(targets)
    if download:
        for mbid in catalog.covers_to_fetch(targets):
            enqueued.add(mbid)
            queue.put_nowait(mbid)

    timeout = aiohttp.ClientTimeout(total=settings.timeout, sock_connect=min(10.0, settings.timeout))
    mb_connector = aiohttp.TCPConnector(limit=2)
    caa_connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=settings.per_host, ttl_dns_cache=300)
    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        disable=not console.is_terminal,  # logs and pipes get the summary table only
    )
    with progress, _validation_pool(0 if discover else len(enqueued)) as pool:
        async with aiohttp.ClientSession(timeout=timeout, connector=mb_connector) as mb_session, \
                aiohttp.ClientSession(timeout=timeout, connector=caa_connector) as caa_session:
            mb = MusicBrainzClient(mb_session, settings.musicbrainz_url, settings.user_agent, settings.mb_interval)
            dl_task = progress.add_task("covers", total=len(enqueued), info="", visible=download)

            def enqueue(mbids):
                fresh = [m for m in mbids if m not in enqueued]
                enqueued.update(fresh)
                for m in fresh:
                    queue.put_nowait(m)
                progress.update(dl_task, total=len(enqueued))

            downloader = _Downloader(settings, catalog, caa_session, pool, stats, progress, dl_task)
            workers = [asyncio.create_task(downloader.worker(queue)) for _ in range(settings.concurrency)] if download else []
            flusher = asyncio.create_task(downloader.flush_periodically())
            t0 = time.monotonic()
            try:
                if discover:
                    await _discover(mb, catalog, taxonomy, targets, target, skipped, progress,
                                    enqueue if download else None, target_set, stats)
                stats.discovery_seconds = time.monotonic() - t0
                for _ in workers:
                    queue.put_nowait(None)
                await asyncio.gather(*workers)
            finally:
                for w in workers:
                    w.cancel()
                flusher.cancel()
                await asyncio.gather(*workers, flusher, return_exceptions=True)
                downloader.flush()
                stats.mb_requests = mb.requests
                stats.download_seconds = downloader.active_seconds()
    return stats


async def _discover(mb: MusicBrainzClient, catalog: Catalog, taxonomy: Taxonomy, targets, target: int, skipped,
                    progress: Progress, enqueue, target_set: set, stats: FetchStats) -> None:
    """Page through each genre's tags until the genre holds `target` candidates or its tags run out."""
    progress_rows = catalog.discovery_progress()
    cursor = {(r.genre, r.tag): (int(r.next_offset), bool(r.exhausted)) for r in progress_rows.itertuples()}
    counts = catalog.genre_counts()
    tasks = {g: progress.add_task(f"discover {g}", total=target, completed=min(counts.get(g, 0), target), info="")
             for g in targets}
    for genre in targets:
        for tag in taxonomy.tags[genre]:
            offset, exhausted = cursor.get((genre, tag), (0, False))
            while not exhausted and counts.get(genre, 0) < target:
                progress.update(tasks[genre], info=f"tag {tag!r} @ {offset}")
                page = await mb.search_tag(tag, offset, taxonomy.resolve, skipped)
                offset += page.returned
                exhausted = page.returned == 0 or offset >= page.count
                stats.new_release_groups += catalog.record_page(genre, tag, page.groups, offset, page.count, exhausted)
                counts = catalog.genre_counts()
                for g in targets:
                    progress.update(tasks[g], completed=min(counts.get(g, 0), target))
                if enqueue is not None:
                    enqueue([g.mbid for g in page.groups if g.genre in target_set])
        progress.update(tasks[genre], info="done" if counts.get(genre, 0) >= target else "tags exhausted")


class _Downloader:
    def __init__(self, settings: Settings, catalog: Catalog, session, pool, stats: FetchStats, progress, task):
        self.settings = settings
        self.catalog = catalog
        self.session = session
        self.pool = pool
        self.stats = stats
        self.progress = progress
        self.task = task
        self.pending: list[tuple[CoverResult, int]] = []
        self.headers = {"User-Agent": settings.user_agent}
        # Busy time (at least one download in flight): the honest denominator for covers/s
        # when downloads wait on discovery's 1 request/s.
        self.in_flight = 0
        self.busy_since = 0.0
        self.busy_seconds = 0.0

    def active_seconds(self) -> float:
        return self.busy_seconds + (time.monotonic() - self.busy_since if self.in_flight else 0.0)

    async def worker(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            mbid = await queue.get()
            if mbid is None:
                return
            if self.in_flight == 0:
                self.busy_since = time.monotonic()
            self.in_flight += 1
            url = cover_url(self.settings.coverart_url, mbid, self.settings.thumbnail)
            outcome = await download_cover(self.session, url, headers=self.headers, max_bytes=self.settings.max_bytes,
                                           max_attempts=self.settings.max_attempts)
            if outcome.status == "ok":
                result = await loop.run_in_executor(self.pool, validate_and_store, self.settings.data_dir,
                                                    self.settings.max_pixels, self.settings.min_side, mbid, url,
                                                    outcome.http_status, outcome.data)
            else:
                result = CoverResult(mbid, outcome.status, outcome.http_status, outcome.error, source_url=url)
            self.pending.append((result, outcome.attempts))
            self.stats.downloaded += 1
            self.stats.by_status[result.status] = self.stats.by_status.get(result.status, 0) + 1
            if result.status == "ok":
                self.stats.ok += 1
                self.stats.bytes += result.bytes or 0
            else:
                self.stats.failed += 1
            self.in_flight -= 1
            if self.in_flight == 0:
                self.busy_seconds += time.monotonic() - self.busy_since
            self.progress.update(self.task, advance=1, info=_status_info(self.stats.by_status))
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


def validate_and_store(data_dir: Path, max_pixels: int, min_side: int, mbid: str, url: str,
                       http_status: int | None, data: bytes | None) -> CoverResult:
    """Validate and hash downloaded bytes and store them (runs in a worker process or thread)."""
    data = data or b""
    try:
        info = inspect_image(data, max_pixels, min_side)
    except BadImage as exc:
        return CoverResult(mbid, "bad_image", http_status, str(exc)[:300], bytes=len(data), source_url=url)
    path = store_image(data_dir, info.sha256, info.ext, data)
    return CoverResult(mbid, "ok", http_status, None, info.sha256, info.phash, info.width, info.height,
                       len(data), info.format, path, url)


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle (it flushes the catalog); workers just finish or get shut down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _validation_pool(expected: int) -> Executor:
    """Worker processes (one per core) for a download-only run of `expected` >= PROCESS_POOL_MIN_COVERS covers;
    else two threads (discovery paces downloads at one search page a second, which threads keep up with).

    forkserver, not fork: the parent runs an event loop and threads (fork would copy held locks).
    """
    workers = os.cpu_count() or 1
    if expected < PROCESS_POOL_MIN_COVERS or workers < 2:
        return ThreadPoolExecutor(max_workers=2)
    try:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["equigen.images", "equigen.storage", "equigen.catalog"])
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_sigint)
    except (ValueError, OSError, NotImplementedError):  # no forkserver on this platform
        return ThreadPoolExecutor(max_workers=2)


def _status_info(by_status: dict) -> str:
    bad = {k: v for k, v in by_status.items() if k != "ok"}
    return " ".join(f"{k}={v}" for k, v in sorted(bad.items())) if bad else ""


def summary_table(catalog: Catalog, taxonomy: Taxonomy) -> Table:
    """Per genre: candidates and cover statuses (ambiguous and unlabelled as their own rows)."""
    frame = catalog.status_table()
    pivot = frame.pivot_table(index="genre", columns="status", values="n", aggfunc="sum", fill_value=0)
    columns = ["ok", "no_art", "bad_image", "failed", "pending"]
    table = Table(title="equigen fetch: covers per genre")
    table.add_column("genre")
    table.add_column("candidates", justify="right")
    for c in columns:
        table.add_column(c, justify="right")
    totals = [0] * (len(columns) + 1)
    for genre in list(taxonomy.genres) + [AMBIGUOUS, UNLABELLED]:
        row = pivot.loc[genre] if genre in pivot.index else None
        values = [int(row.get(c, 0)) if row is not None else 0 for c in columns]
        cand = int(row.sum()) if row is not None else 0
        totals = [a + b for a, b in zip(totals, [cand] + values)]
        style = "dim" if genre in (AMBIGUOUS, UNLABELLED) else None
        table.add_row(genre, str(cand), *map(str, values), style=style)
    table.add_row("total", *map(str, totals), style="bold")
    return table


def _warn_short(catalog: Catalog, targets, per_genre: int, console: Console) -> None:
    ok = catalog.status_table()
    ok = ok[ok.status == "ok"].set_index("genre")["n"].to_dict()
    short = [f"{g} ({ok.get(g, 0)})" for g in targets if ok.get(g, 0) < per_genre]
    if short:
        console.print(f"[yellow]note:[/] fewer than {per_genre} ok covers in: {', '.join(short)}; "
                      "re-run fetch with a larger --oversample, or balance with --allow-short")
