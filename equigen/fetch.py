"""`equigen fetch`: discovery (MusicBrainz) and cover download (Cover Art Archive) until every genre
can be balanced, resumable.

Fetch works in rounds (the decisions are pure functions in planning.py): plan how many covers
each genre still needs to try, search tags for the genres that lack candidates, download the
chosen covers, then plan again from what the downloads gave. Discovery and downloads run together
in one event loop: every page of search results is stored with its paging cursor in one
transaction and its chosen covers are queued for download at once. Cover results are stored after
the image file is in place, in small batches: a kill loses at most the last batch's bookkeeping,
and those covers are simply downloaded again (same bytes, same path).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
import time
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager as contextmanager_async
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import aiohttp
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from equigen.balance import default_artist_cap
from equigen.catalog import Catalog
from equigen.config import Settings
from equigen.coverart import GlobalOnlyResolver, cover_url, download_cover, is_local_url
from equigen.errors import EquigenError
from equigen.lock import data_folder_lock
from equigen.images import BadImage, inspect_image
from equigen.musicbrainz import DEFAULT_SKIPPED_SECONDARY, MusicBrainzClient
from equigen.planning import (TRIED_STATUSES, Cursor, GenreProgress, RoundSelector, next_search, plan_round,
                               subsumed, usable_by_genre)
from equigen.records import CoverResult
from equigen.storage import ensure_writable, store_image
from equigen.taxonomy import AMBIGUOUS, UNLABELLED, Taxonomy, load_taxonomy, normalize_tag

logger = logging.getLogger(__name__)

DEFAULT_PER_GENRE = 4000
DEFAULT_MARGIN = 0.05     # 5 % more usable covers than balance needs: near-duplicates dedup will drop

FLUSH_EVERY = 64          # cover results per catalog transaction
THUMBNAIL_SLACK = 2       # a front-500 answer may be at most 1000 px a side
FAILED_IN_A_ROW_LIMIT = 64  # failed downloads (each after its retries) in a row that stop a harvest
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
    malformed: int = 0        # search results skipped as not usable release groups
    repeated_searches: int = 0  # searches stopped because a page brought nothing the search had not returned
    rounds: int = 0
    by_status: dict = field(default_factory=dict)
    usable: dict = field(default_factory=dict)     # genre -> covers balance can use (see planning.usable_by_genre)
    shortfalls: dict = field(default_factory=dict)  # genre -> covers missing for --per-genre when its tags ran out
    failed_by_genre: dict = field(default_factory=dict)  # covers whose download failed (the next run retries them)
    exhausted: set = field(default_factory=set)      # genres with every tag searched and no candidate left
    stored: int = 0           # ok covers in the catalog's target genres after the run
    published: int = 0        # covers balance --per-genre will publish (per genre: min(per_genre, usable))

    @property
    def covers_per_second(self) -> float:
        return self.downloaded / self.download_seconds if self.download_seconds > 0 else 0.0

    @property
    def stored_per_published(self) -> float:
        return self.stored / self.published if self.published else 0.0


@dataclass(frozen=True)
class Goal:
    """What `balance` will ask of the harvest: fetch stops when every genre can meet it."""
    per_genre: int
    margin: float = DEFAULT_MARGIN       # extra usable covers for near-duplicates that dedup will drop
    artist_cap: int | None = None        # None: balance's default for per_genre
    min_confidence: float = 0.0

    @property
    def cap(self) -> int:
        return default_artist_cap(self.per_genre) if self.artist_cap is None else self.artist_cap

    @property
    def target(self) -> int:
        return math.ceil(self.per_genre * (1 + self.margin))


def run_fetch(settings: Settings, per_genre: int = DEFAULT_PER_GENRE, margin: float = DEFAULT_MARGIN,
              artist_cap: int | None = None, min_confidence: float = 0.0, genres: Sequence[str] | None = None,
              include_secondary: Sequence[str] | None = None, discover: bool = True, download: bool = True,
              manifest: Path | None = None, console: Console | None = None) -> FetchStats:
    """Fetch with the data folder locked (see lock.py): one writer per folder."""
    with data_folder_lock(settings.data_dir, "fetch"):
        return _run_fetch_unlocked(settings, per_genre=per_genre, margin=margin, artist_cap=artist_cap,
                                   min_confidence=min_confidence, genres=genres, include_secondary=include_secondary,
                                   discover=discover, download=download, manifest=manifest, console=console)


def _run_fetch_unlocked(settings: Settings, per_genre: int = DEFAULT_PER_GENRE, margin: float = DEFAULT_MARGIN,
                        artist_cap: int | None = None, min_confidence: float = 0.0,
                        genres: Sequence[str] | None = None, include_secondary: Sequence[str] | None = None,
                        discover: bool = True, download: bool = True, manifest: Path | None = None,
                        console: Console | None = None) -> FetchStats:
    """Harvest until every genre holds enough usable covers for `balance --per-genre N`, or its tags run out.

    Usable: ok, distinct by sha256, labelled (confidence >= min_confidence), within the artist cap
    balance applies; the target adds `margin` for near-duplicates. `discover=False` only downloads
    the covers already in the catalog (all of them).
    """
    console = console or Console(stderr=True)
    if manifest is None and discover:
        settings = settings.for_musicbrainz()  # a manifest rebuild talks to the Cover Art Archive only
    if per_genre < 1:
        raise EquigenError(f"--per-genre must be at least 1, got {per_genre}")
    if not 0 <= margin <= 10:
        raise EquigenError(f"--margin must be between 0 and 10 (a fraction: 0.05 = 5 %), got {margin}")
    if artist_cap is not None and artist_cap < 1:
        raise EquigenError(f"--artist-cap must be at least 1, got {artist_cap}")
    if not 0 <= min_confidence <= 1:
        raise EquigenError(f"--min-confidence must be between 0 and 1, got {min_confidence}")
    goal = Goal(per_genre, margin, artist_cap, min_confidence)
    taxonomy = load_taxonomy(settings.taxonomy_path)
    targets = _target_genres(taxonomy, genres)
    ensure_writable(settings.data_dir)
    skipped = tuple(s for s in DEFAULT_SKIPPED_SECONDARY if s not in {x.lower() for x in include_secondary or ()})
    with Catalog(settings.catalog_path) as catalog:
        if manifest is not None:
            from equigen.rebuild import run_manifest_fetch

            return run_manifest_fetch(settings, catalog, taxonomy, manifest, console)
        _relabel_if_taxonomy_changed(catalog, taxonomy, console)
        catalog.ensure_discovery_rows((g, t) for g in targets for t in taxonomy.search_names(g))
        started = time.monotonic()
        if discover:
            stats = asyncio.run(_harvest(settings, catalog, taxonomy, targets, goal, skipped, download, console))
        else:
            stats = asyncio.run(download_catalog_covers(settings, catalog, targets, console))
        stats.wall_seconds = time.monotonic() - started
        _final_counts(catalog, targets, goal, stats, discover and download)
        catalog.set_meta("last_fetch", json.dumps({
            "per_genre": per_genre, "margin": margin, "artist_cap": goal.cap, "min_confidence": min_confidence,
            "genres": list(targets), "mb_requests": stats.mb_requests, "rounds": stats.rounds,
            "malformed": stats.malformed, "downloaded": stats.downloaded, "stored": stats.stored,
            "published": stats.published, "wall_seconds": round(stats.wall_seconds, 2),
            "covers_per_second": round(stats.covers_per_second, 1), "shortfalls": stats.shortfalls,
        }))
        console.print(summary_table(catalog, taxonomy, stats.usable, goal if discover else None))
        console.print(
            f"wall {stats.wall_seconds:.1f} s | MusicBrainz requests {stats.mb_requests} | "
            f"covers downloaded {stats.downloaded} ({stats.covers_per_second:.1f}/s, {stats.bytes / 1e6:.1f} MB) | "
            f"new release groups {stats.new_release_groups}"
            + (f" | malformed results skipped {stats.malformed}" if stats.malformed else "")
            + (f" | searches stopped for repeating pages {stats.repeated_searches}" if stats.repeated_searches else ""),
            highlight=False,
        )
        if discover and not download:
            console.print("discovery only (--skip-download): run fetch again without it to download the covers")
        elif discover:
            console.print(
                f"covers stored {stats.stored} for {stats.published} to publish: "
                f"{stats.stored_per_published:.2f} stored per published cover ({stats.rounds} rounds)", highlight=False)
            for genre, missing in stats.shortfalls.items():
                failed = stats.failed_by_genre.get(genre, 0)
                advice = (f"{failed} downloads failed: re-run the same command to retry them" if failed else
                          "balance with a lower --per-genre or --allow-short")
                console.print(
                    f"[yellow]short:[/] {escape(genre)}: every tag searched, {stats.usable.get(genre, 0)} usable covers "
                    f"for --per-genre {per_genre} (short by {missing}); {advice}", highlight=False)
    return stats


def _taxonomy_fingerprint(taxonomy: Taxonomy) -> str:
    payload = json.dumps([sorted(taxonomy.tag_to_genre.items()), taxonomy.ambiguity_ratio, taxonomy.min_votes])
    return hashlib.sha256(payload.encode()).hexdigest()


def _relabel_if_taxonomy_changed(catalog: Catalog, taxonomy: Taxonomy, console: Console) -> None:
    """A catalog harvested under another taxonomy gets every label re-resolved from its stored tags."""
    fingerprint = _taxonomy_fingerprint(taxonomy)
    stored = catalog.get_meta("taxonomy_fingerprint")
    if stored != fingerprint:
        if stored is not None or catalog.conn.execute("SELECT 1 FROM release_groups LIMIT 1").fetchone():
            changed = catalog.relabel(taxonomy.label)
            if changed:
                console.print(f"the taxonomy changed: {changed} release groups relabelled from their stored tags; "
                              "run dedup and balance again after this fetch")
        catalog.set_meta("taxonomy_fingerprint", fingerprint)


def _target_genres(taxonomy: Taxonomy, genres: Sequence[str] | None) -> tuple[str, ...]:
    if not genres:
        return taxonomy.genres
    by_lower = {g.lower(): g for g in taxonomy.genres}
    unknown = [g for g in genres if g.lower() not in by_lower]
    if unknown:
        raise EquigenError(f"unknown genre(s) {', '.join(unknown)}; the taxonomy has: {', '.join(taxonomy.genres)}")
    return tuple(by_lower[g.lower()] for g in genres)


def _final_counts(catalog: Catalog, targets: tuple[str, ...], goal: Goal, stats: FetchStats, harvested: bool) -> None:
    rows = catalog.planning_rows(targets)
    stats.usable = usable_by_genre(rows, targets, goal.cap, goal.min_confidence)
    stats.stored = int((rows["status"] == "ok").sum())
    stats.published = sum(min(goal.per_genre, n) for n in stats.usable.values())
    stats.shortfalls = {g: goal.per_genre - n for g, n in stats.usable.items()
                        if harvested and n < goal.per_genre and g in stats.exhausted}
    stats.failed_by_genre = rows[rows["status"] == "failed"].groupby("genre").size().to_dict()


@contextmanager_async
async def _clients(settings: Settings, console: Console, total: int, download: bool, pool_size: int):
    """Sessions, the download workers and the progress display shared by a harvest and a download-only run."""
    timeout = aiohttp.ClientTimeout(total=settings.timeout, sock_connect=min(10.0, settings.timeout))
    mb_connector = aiohttp.TCPConnector(limit=2)
    # Redirects may only leave the global internet when the configured archive is itself local (simulator, mirror).
    resolver = None if is_local_url(settings.coverart_url) else GlobalOnlyResolver()
    caa_connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=settings.per_host,
                                         ttl_dns_cache=300, resolver=resolver)
    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        disable=not console.is_terminal,  # logs and pipes get the summary table only
    )
    stats = FetchStats()
    with progress, _validation_pool(pool_size) as pool:
        async with aiohttp.ClientSession(timeout=timeout, connector=mb_connector) as mb_session, \
                aiohttp.ClientSession(timeout=timeout, connector=caa_connector) as caa_session:
            mb = MusicBrainzClient(mb_session, settings.musicbrainz_url, settings.user_agent, settings.mb_interval)
            task = progress.add_task("covers", total=total, info="", visible=download)
            downloader = _Downloader(settings, None, caa_session, pool, stats, progress, task)
            try:
                yield mb, downloader, progress, stats
            finally:
                await downloader.stop()
                stats.mb_requests = mb.requests
                stats.download_seconds = downloader.active_seconds()


async def download_catalog_covers(settings: Settings, catalog: Catalog, targets: Sequence[str], console: Console) -> FetchStats:
    """Download every pending or failed cover of `targets` already in the catalog (no discovery)."""
    mbids = catalog.covers_to_fetch(targets)
    async with _clients(settings, console, len(mbids), True, len(mbids)) as (_mb, downloader, _progress, stats):
        downloader.catalog = catalog
        downloader.start()
        downloader.enqueue(mbids)
        await downloader.drain()
    return stats


async def _harvest(settings: Settings, catalog: Catalog, taxonomy: Taxonomy, targets: tuple[str, ...], goal: Goal,
                   skipped: tuple[str, ...], download: bool, console: Console) -> FetchStats:
    """Rounds of (plan -> discover while short -> download the chosen covers) until no genre needs more.

    Each round's quota and chosen covers are stored before anything is fetched for them, and every
    decision is read back from the catalog, so a killed run resumes the same round and ends exactly
    where an uninterrupted run ends. Only a run that starts after a finished one (or with another
    goal) gives failed covers another chance.
    """
    key = json.dumps({"goal": [goal.target, goal.cap, goal.min_confidence], "genres": list(targets),
                      "skipped": list(skipped), "taxonomy": _taxonomy_fingerprint(taxonomy)})
    round_no, quota, stored_key, finished = catalog.load_plan()
    same_run = stored_key == key and catalog.get_meta("fetch_complete") != key
    resuming = same_run and not finished and bool(quota)
    if not same_run:
        catalog.reopen_unfinished()
    catalog.set_meta("fetch_complete", "")
    discovery = _Discovery(catalog, taxonomy, targets, skipped)
    async with _clients(settings, console, 0, download, 0) as (mb, downloader, progress, stats):
        downloader.catalog = catalog
        if download:
            downloader.start()
        bars = {g: progress.add_task(escape(f"usable {g}"), total=goal.target, info="") for g in targets}
        t0 = time.monotonic()
        while True:
            rows = catalog.planning_rows(targets)
            usable = usable_by_genre(rows, targets, goal.cap, goal.min_confidence)
            # Exhausted: every tag searched (stored in the catalog) and no untried candidate an artist slot admits.
            probe = RoundSelector.start(rows, round_no + 1, {g: 1 for g in targets}, goal.cap, goal.min_confidence)
            stats.exhausted = {g for g in discovery.spent_genres() if probe.untried(g) == 0}
            for g in targets:
                progress.update(bars[g], completed=min(usable[g], goal.target),
                                info="short: tags spent" if g in stats.exhausted and usable[g] < goal.target else "")
            if not resuming:
                # Tried: a final answer about the art. A failed download says nothing about it.
                tried = rows[rows["planned_round"].notna() & rows["status"].isin(TRIED_STATUSES)].groupby("genre").size()
                quota = plan_round([GenreProgress(g, usable[g], int(tried.get(g, 0)), g in stats.exhausted)
                                    for g in targets], goal.target)
                if not any(quota.values()):
                    catalog.set_meta("fetch_complete", key)
                    break
                round_no += 1
                catalog.start_round(round_no, quota, key)
            resuming = False
            stats.rounds += 1
            logger.info("fetch round %d: quota %s", round_no, {g: n for g, n in quota.items() if n})
            selector = RoundSelector.start(rows, round_no, quota, goal.cap, goal.min_confidence)
            if download:
                downloader.enqueue(catalog.planned_pending(round_no))

            def choose() -> None:
                chosen = selector.choose()
                if chosen:
                    catalog.mark_planned(chosen, round_no)
                    if download:
                        downloader.enqueue(chosen)

            choose()
            for genre in targets:
                while selector.short(genre):
                    downloader.raise_if_broken()
                    page = await discovery.next_page(mb, genre, progress, bars[genre])
                    if page is None:
                        break
                    stats.malformed += page.malformed
                    stats.new_release_groups += len(page.new)
                    selector.add(page.new)
                    choose()
            stats.discovery_seconds = time.monotonic() - t0
            if not download:
                # Discovery only: the chosen covers stay untried candidates, and the next run plans afresh.
                catalog.reopen_unfinished()
                catalog.finish_round(round_no)
                break
            await downloader.drain()
            catalog.finish_round(round_no)
        stats.repeated_searches = discovery.repeats
    return stats


@dataclass
class _Page:
    new: list           # new candidates (records with mbid, genre, artist_mbid, seq, label_confidence)
    malformed: int


@dataclass
class _Candidate:
    mbid: str
    genre: str
    artist_mbid: str | None
    seq: int
    label_confidence: float | None


class _Discovery:
    """Tag searches for short genres: which tag next (planning.next_search), paging, storing each page."""

    def __init__(self, catalog: Catalog, taxonomy: Taxonomy, targets, skipped) -> None:
        self.catalog, self.taxonomy, self.targets, self.skipped = catalog, taxonomy, targets, skipped
        progress = catalog.discovery_progress()
        self.cursors: dict[tuple[str, str], Cursor] = {
            (r.genre, r.tag): Cursor(int(r.next_offset), None if pd.isna(r.total) else int(r.total), bool(r.exhausted))
            for r in progress.itertuples()}
        self.seen: Counter = Counter()
        self.returned: dict[tuple[str, str], set[str]] = {}   # MBIDs each search returned in this run
        self.repeats = 0                                       # searches stopped for repeating themselves
        for (tags_json,) in catalog.conn.execute("SELECT tags FROM release_groups"):
            self._count_tags(tags_json)

    def _count_tags(self, tags) -> None:
        try:
            pairs = json.loads(tags) if isinstance(tags, str) else tags
            self.seen.update({normalize_tag(str(p[0])) for p in pairs})
        except (ValueError, TypeError, IndexError):
            pass

    def spent_genres(self) -> set[str]:
        """Genres whose every search name is exhausted (searched to the end, or covered by a broader search)."""
        return {g for g in self.targets
                if all(self.cursors.get((g, t), Cursor()).exhausted for t in self.taxonomy.search_names(g))}

    def exhausted_searches(self) -> list[str]:
        return [t for (_, t), c in self.cursors.items() if c.exhausted and c.total is not None]

    async def next_page(self, mb: MusicBrainzClient, genre: str, progress, bar) -> _Page | None:
        tags = self.taxonomy.search_names(genre)
        cursors = {t: self.cursors.get((genre, t), Cursor()) for t in tags}
        done = self.exhausted_searches()
        tag = next_search(tags, self.taxonomy.broad_names(genre), cursors, self.seen, done)
        if tag is None:
            return None
        cursor = cursors[tag]
        progress.update(bar, info=escape(f"search {tag!r} @ {cursor.next_offset}"))
        page = await mb.search_tag(tag, cursor.next_offset, self.taxonomy.label, self.skipped)
        offset = cursor.next_offset + page.returned
        exhausted = page.returned == 0 or offset >= page.count
        earlier = self.returned.setdefault((genre, tag), set())
        if page.ids and earlier.issuperset(page.ids):
            # A server whose pages repeat what this search already returned would be paged for ever.
            logger.warning("search %r @ %d brought nothing new (count %d): stopping this tag", tag,
                           cursor.next_offset, page.count)
            self.repeats += 1
            exhausted = True
        earlier.update(page.ids)
        if (not exhausted and cursor.next_offset == 0 and subsumed(tag, done)
                and self.catalog.known_mbids([g.mbid for g in page.groups]) == {g.mbid for g in page.groups}):
            # A broader search already returned what this one finds (the search tokenizes tag names):
            # one page shows it; paging on would only repeat known albums.
            logger.info("search %r brought nothing new: an earlier search covered it", tag)
            exhausted = True
        new = self.catalog.record_page(genre, tag, page.groups, offset, page.count, exhausted)
        self.cursors[(genre, tag)] = Cursor(offset, page.count, exhausted)
        for group, _ in new:  # as a resumed run counts them: each release group once
            self.seen.update({normalize_tag(n) for n, _ in group.tags})
        return _Page([_Candidate(g.mbid, g.genre, g.artist_mbid, seq, g.label_confidence) for g, seq in new],
                     page.malformed)


class _Downloader:
    """Concurrent cover downloads from a queue; results reach the catalog in batches."""

    def __init__(self, settings: Settings, catalog: Catalog | None, session, pool, stats: FetchStats, progress, task):
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
            raise EquigenError(f"the last {self.failed_in_a_row} cover downloads all failed: is the Cover Art Archive "
                               f"at {self.settings.coverart_url} reachable? Re-run the same command to resume")

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
            except OSError as exc:   # disk full, the folder gone: stop every download, keep what is recorded
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
            outcome = await download_cover(self.session, url, headers=self.headers, max_bytes=self.settings.max_bytes,
                                           max_attempts=self.settings.max_attempts,
                                           allow_private=is_local_url(self.settings.coverart_url))
            if outcome.status == "ok":
                result = await loop.run_in_executor(self.pool, validate_and_store, self.settings.data_dir,
                                                    self.settings.max_pixels, self.settings.min_side, mbid, url,
                                                    outcome.http_status, outcome.data,
                                                    THUMBNAIL_SLACK * self.settings.thumbnail)
            else:
                result = CoverResult(mbid, outcome.status, outcome.http_status, outcome.error, source_url=url)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.busy_seconds += time.monotonic() - self.busy_since
        self.pending.append((result, outcome.attempts))
        self.stats.downloaded += 1
        self.stats.by_status[result.status] = self.stats.by_status.get(result.status, 0) + 1
        if result.status == "ok":
            self.stats.ok += 1
            self.stats.bytes += result.bytes or 0
        else:
            self.stats.failed += 1
        self.failed_in_a_row = self.failed_in_a_row + 1 if result.status == "failed" else 0
        self.progress.update(self.task, advance=1, info=_status_info(self.stats.by_status))
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        if self.pending and self.catalog is not None:
            batch, self.pending = self.pending, []
            self.catalog.record_covers(batch)


def validate_and_store(data_dir: Path, max_pixels: int, min_side: int, mbid: str, url: str,
                       http_status: int | None, data: bytes | None, max_side: int | None = None) -> CoverResult:
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


def summary_table(catalog: Catalog, taxonomy: Taxonomy, usable: dict | None = None, goal: Goal | None = None) -> Table:
    """Per genre: candidates, cover statuses and (for a harvest) usable covers against the target."""
    frame = catalog.status_table()
    pivot = frame.pivot_table(index="genre", columns="status", values="n", aggfunc="sum", fill_value=0)
    columns = ["ok", "no_art", "bad_image", "refused", "failed", "pending"]
    table = Table(title="equigen fetch: covers per genre")
    table.add_column("genre")
    table.add_column("candidates", justify="right")
    for c in columns:
        table.add_column(c, justify="right")
    if goal is not None:
        table.add_column(f"usable (target {goal.target})", justify="right")
    totals = [0] * (len(columns) + 1)
    for genre in list(taxonomy.genres) + [AMBIGUOUS, UNLABELLED]:
        row = pivot.loc[genre] if genre in pivot.index else None
        values = [int(row.get(c, 0)) if row is not None else 0 for c in columns]
        cand = int(row.sum()) if row is not None else 0
        totals = [a + b for a, b in zip(totals, [cand] + values)]
        style = "dim" if genre in (AMBIGUOUS, UNLABELLED) else None
        extra = []
        if goal is not None:
            extra = [str(usable[genre]) if usable and genre in usable else ""]
        table.add_row(escape(genre), str(cand), *map(str, values), *extra, style=style)
    table.add_row("total", *map(str, totals), *([str(sum((usable or {}).values()))] if goal is not None else []),
                  style="bold")
    return table
