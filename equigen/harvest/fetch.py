"""`equigen fetch`: discovery (MusicBrainz) and cover download (Cover Art Archive) until every genre
can be balanced, resumable.

Fetch works in rounds (the decisions are pure functions in planning.py): plan how many covers
each genre still needs to try, search tags for the genres that lack candidates, download the
chosen covers (downloader.py), then plan again from what the downloads gave. Discovery and
downloads run together in one event loop: every page of search results is stored with its paging
cursor in one transaction and its chosen covers are queued for download at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from equigen.core.catalog import Catalog
from equigen.core.config import Settings
from equigen.core.errors import EquigenError
from equigen.core.lock import data_folder_lock
from equigen.core.options import FetchOptions, Goal
from equigen.core.storage import ensure_writable
from equigen.core.taxonomy import AMBIGUOUS, UNLABELLED, Taxonomy, load_taxonomy, normalize_tag
from equigen.harvest.downloader import (
    ConcurrentCoverDownloads,
    DownloadStats,
    cover_downloads,
    download_catalog_covers,
    progress_display,
)
from equigen.harvest.dump import MAX_LINE_BYTES, DumpCounts, ingest_dump
from equigen.harvest.forkserver import start_forkserver_early
from equigen.harvest.musicbrainz import PAGE_SIZE, MusicBrainzClient
from equigen.harvest.planning import (
    MAX_SEARCH_OFFSET,
    TRIED_STATUSES,
    Cursor,
    GenreProgress,
    RoundSelector,
    canonical_mask,
    dry_genres,
    next_search,
    plan_round,
    subsumed,
    usable_table,
)

logger = logging.getLogger(__name__)


@dataclass
class FetchStats:
    """What one `equigen fetch` did, and what the catalog now holds for the goal."""

    mb_requests: int = 0
    downloaded: int = 0  # covers that reached a final status in this run
    ok: int = 0
    failed: int = 0
    bytes: int = 0
    download_seconds: float = 0.0
    wall_seconds: float = 0.0
    new_release_groups: int = 0
    malformed: int = 0  # search results skipped as not usable release groups
    repeated_searches: int = 0  # searches stopped because a page brought nothing the search had not returned
    rounds: int = 0
    dump: dict = field(default_factory=dict)  # fetch --from-dump: harvest/dump.py's DumpCounts of the dump
    by_status: dict = field(default_factory=dict)
    usable: dict = field(default_factory=dict)  # genre -> covers balance can use (see planning.usable_table)
    duplicates: dict = field(default_factory=dict)  # genre -> ok covers dedup will drop (stored, not counted)
    over_cap: dict = field(default_factory=dict)  # genre -> canonical covers beyond the artist cap (not counted)
    shortfalls: dict = field(default_factory=dict)  # genre -> covers missing for --per-genre when its tags ran out
    # genre -> usable covers, when its tags ran out between --per-genre and the target (no room for near-duplicates)
    tight: dict = field(default_factory=dict)
    failed_by_genre: dict = field(default_factory=dict)  # covers whose download failed (the next run retries them)
    exhausted: set = field(default_factory=set)  # genres with every tag searched and no candidate left
    dry: dict = field(default_factory=dict)  # genres stopped after planning.DRY_TRIES tried covers without an ok one
    stored: int = 0  # ok covers in the catalog's target genres after the run
    published: int = 0  # covers balance --per-genre will publish (per genre: min(per_genre, usable))

    @property
    def covers_per_second(self) -> float:
        return self.downloaded / self.download_seconds if self.download_seconds > 0 else 0.0

    def add_downloads(self, d: DownloadStats) -> None:
        self.downloaded, self.ok, self.failed, self.bytes = d.downloaded, d.ok, d.failed, d.bytes
        self.download_seconds, self.by_status = d.seconds, dict(d.by_status)

    @property
    def stored_per_published(self) -> float:
        return self.stored / self.published if self.published else 0.0


def run_fetch(settings: Settings, options: FetchOptions | None = None, *, console: Console | None = None) -> FetchStats:
    """Fetch with the data folder locked (see lock.py): one writer per folder. The options were checked when they
    were built and the dump is looked for first, so a rejected fetch creates no folder and no lock."""
    options = options or FetchOptions()
    if options.searches:
        settings.for_musicbrainz()
    if options.from_dump is not None and not Path(options.from_dump).is_file():
        raise EquigenError(f"--from-dump {options.from_dump}: no such file")
    with data_folder_lock(settings.data_dir, "fetch"):
        return _run_fetch_unlocked(settings, options, console or Console(stderr=True))


def _run_fetch_unlocked(settings: Settings, options: FetchOptions, console: Console) -> FetchStats:
    """Harvest until every genre holds enough usable covers for `balance --per-genre N`, or its candidates run out.

    Usable: what `dedup --threshold T` then `balance` will find (planning.usable_table): ok, one per exact or
    near-duplicate cluster, labelled (confidence >= min_confidence), within the artist cap balance applies;
    the target adds `margin` as a small safety. `discover=False` only downloads the covers already in the
    catalog (all of them).
    """
    goal = options.goal
    if not options.discover:
        start_forkserver_early()  # its imports overlap the catalog reads below
    taxonomy = fetch_taxonomy(settings)
    targets = _target_genres(taxonomy, options.genres)
    ensure_writable(settings.data_dir)
    with Catalog(settings.catalog_path) as catalog:
        _relabel_if_taxonomy_changed(catalog, taxonomy, console)
        # dedup, balance and split label with what the catalog was harvested with
        catalog.remember_taxonomy(taxonomy if settings.taxonomy_path is not None else None)
        catalog.ensure_discovery_rows((g, t) for g in targets for t in taxonomy.search_names(g))
        started = time.monotonic()
        if options.discover:
            stats = asyncio.run(harvest(settings, catalog, taxonomy, genres=targets, options=options, console=console))
        else:
            stats = FetchStats()
            stats.add_downloads(
                asyncio.run(download_catalog_covers(settings, catalog, genres=targets, console=console))
            )
        stats.wall_seconds = time.monotonic() - started
        _final_counts(catalog, targets, goal, stats, options.discover and options.download)
        _remember_last_fetch(catalog, options, targets, stats)
        console.print(summary_table(catalog, taxonomy, stats, goal if options.discover else None))
        _print_outcome(console, options, stats)
    return stats


def _remember_last_fetch(catalog: Catalog, options: FetchOptions, targets: tuple[str, ...], stats: FetchStats) -> None:
    goal = options.goal
    catalog.set_meta(
        "last_fetch",
        json.dumps(
            {
                "per_genre": goal.per_genre,
                "margin": goal.margin,
                "artist_cap": goal.cap,
                "min_confidence": goal.min_confidence,
                "threshold": goal.threshold,
                "genres": list(targets),
                "from_dump": str(options.from_dump) if options.from_dump is not None else None,
                "mb_requests": stats.mb_requests,
                "rounds": stats.rounds,
                "malformed": stats.malformed,
                "dump": stats.dump,
                "downloaded": stats.downloaded,
                "stored": stats.stored,
                "published": stats.published,
                "usable": stats.usable,
                "duplicates": stats.duplicates,
                "over_cap": stats.over_cap,
                "wall_seconds": round(stats.wall_seconds, 2),
                "covers_per_second": round(stats.covers_per_second, 1),
                "shortfalls": stats.shortfalls,
                "tight": stats.tight,
            }
        ),
    )


def _print_outcome(console: Console, options: FetchOptions, stats: FetchStats) -> None:
    """The lines under the summary table: requests and downloads, then what balance will find, then each short genre."""
    goal = options.goal
    console.print(
        f"wall {stats.wall_seconds:.1f} s | MusicBrainz requests {stats.mb_requests} | "
        f"covers downloaded {stats.downloaded} ({stats.covers_per_second:.1f}/s, {stats.bytes / 1e6:.1f} MB) | "
        f"new release groups {stats.new_release_groups}"
        + (f" | malformed results skipped {stats.malformed}" if stats.malformed else "")
        + (f" | searches stopped for repeating pages {stats.repeated_searches}" if stats.repeated_searches else ""),
        highlight=False,
    )
    if stats.dump:
        d = stats.dump
        console.print(
            f"dump: {d['lines']} lines, {d['candidates']} labelled album candidates, {d['filtered']} other types, "
            f"{d['unlabelled']} unlabelled or ambiguous; skipped {d['not_json']} not JSON, {d['bad_mbid']} bad MBIDs, "
            f"{d['malformed']} malformed, {d['too_long']} over {MAX_LINE_BYTES:,} bytes",
            highlight=False,
        )
    if options.discover and not options.download:
        console.print("discovery only (--skip-download): run fetch again without it to download the covers")
        return
    if not options.discover:
        return
    spent = "every candidate of the dump tried" if options.from_dump is not None else "every tag searched"
    console.print(
        f"covers stored {stats.stored} for {stats.published} to publish: "
        f"{stats.stored_per_published:.2f} stored per published cover ({stats.rounds} rounds); "
        f"{sum(stats.duplicates.values())} of them duplicates (exact or near: pHash within {goal.threshold}) "
        f"and {sum(stats.over_cap.values())} over the artist cap of {goal.cap}, not counted as usable",
        highlight=False,
    )
    for genre, missing in stats.shortfalls.items():
        failed = stats.failed_by_genre.get(genre, 0)
        advice = (
            f"{failed} downloads failed: re-run the same command to retry them"
            if failed
            else "balance with a lower --per-genre or --allow-short"
        )
        if genre in stats.dry:
            searched = f"searches stopped after {stats.dry[genre]} tried covers in a row brought no ok one"
        else:
            searched = spent
        console.print(
            f"[yellow]short:[/] {escape(genre)}: {searched}, {stats.usable.get(genre, 0)} usable covers "
            f"for --per-genre {goal.per_genre} (short by {missing}); {advice}",
            highlight=False,
        )
    for genre, usable in stats.tight.items():
        # Usable already counts what dedup and the artist cap take; only what fetch cannot know (a larger
        # --threshold for dedup, covers added later) could still take the genre under --per-genre.
        console.print(
            f"[yellow]tight:[/] {escape(genre)}: {spent}, {usable} usable covers, under the "
            f"target of {goal.target} (--per-genre {goal.per_genre} plus --margin): balance will reach "
            f"--per-genre if dedup runs with --threshold {goal.threshold} or less and no cover is added",
            highlight=False,
        )


def fetch_taxonomy(settings: Settings) -> Taxonomy:
    """--taxonomy if given (a catalog harvested under another one is relabelled), else the catalog's own."""
    if settings.taxonomy_path is not None or not settings.catalog_path.exists():
        return load_taxonomy(settings.taxonomy_path)
    with Catalog.existing(settings.catalog_path) as catalog:
        return catalog.taxonomy()


def _relabel_if_taxonomy_changed(catalog: Catalog, taxonomy: Taxonomy, console: Console) -> None:
    """A catalog harvested under another taxonomy gets every label re-resolved from its stored tags."""
    fingerprint = taxonomy.fingerprint()
    stored = catalog.get_meta("taxonomy_fingerprint")
    if stored != fingerprint:
        if stored is not None or catalog.has_release_groups():
            changed = catalog.relabel(taxonomy.label)
            if changed:
                console.print(
                    f"the taxonomy changed: {changed} release groups relabelled from their stored tags; "
                    "run dedup and balance again after this fetch"
                )
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
    table = usable_table(rows, targets, goal.cap, goal.min_confidence, goal.threshold).set_index("genre")
    stats.usable = {g: int(table.loc[g, "usable"]) for g in targets}
    stats.duplicates = {g: int(table.loc[g, "duplicates"]) for g in targets}
    stats.over_cap = {g: int(table.loc[g, "over_cap"]) for g in targets}
    stats.stored = int(((rows["status"] == "ok") & rows["genre"].isin(targets)).sum())
    stats.published = sum(min(goal.per_genre, n) for n in stats.usable.values())
    stats.shortfalls = {
        g: goal.per_genre - n
        for g, n in stats.usable.items()
        if harvested and n < goal.per_genre and g in stats.exhausted
    }
    stats.tight = {
        g: n
        for g, n in stats.usable.items()
        if harvested and goal.per_genre <= n < goal.target and g in stats.exhausted
    }
    failed = rows[(rows["status"] == "failed") & rows["genre"].isin(targets)]
    stats.failed_by_genre = failed.groupby("genre").size().to_dict()


async def harvest(
    settings: Settings,
    catalog: Catalog,
    taxonomy: Taxonomy,
    *,
    genres: tuple[str, ...],
    options: FetchOptions,
    console: Console,
) -> FetchStats:
    """Rounds of (plan -> discover while short -> download the chosen covers) until no genre of `genres`
    needs more for the options' goal. Discovery searches MusicBrainz, or with `from_dump` takes each genre's
    candidates of the dump in their seeded order (no MusicBrainz request); `download=False` only discovers.

    Each round's quota and chosen covers are stored before anything is fetched for them, and every
    decision is read back from the catalog, so a killed run resumes the same round and ends exactly
    where an uninterrupted run ends. Only a run that starts after a finished one (or with another
    goal) gives failed covers another chance.
    """
    stats = FetchStats()
    with progress_display(console) as progress:
        if options.from_dump is not None:
            stats.dump = asdict(_ingest(catalog, taxonomy, options, progress))
        key = _plan_key(catalog, taxonomy, genres, options)
        round_no, quota, stored_key, finished = catalog.load_plan()
        same_run = stored_key == key and catalog.get_meta("fetch_complete") != key
        resuming = same_run and not finished and bool(quota)
        if not same_run:
            catalog.reopen_unfinished()
        catalog.set_meta("fetch_complete", "")
        plan = _RoundPlan(key, genres, options.goal, options.download, round_no, quota, resuming)
        async with (
            _discovery(settings, catalog, taxonomy, genres, options) as discovery,
            cover_downloads(settings, catalog, progress, expected=0, show=options.download) as downloader,
        ):
            try:
                await _rounds(catalog, discovery, downloader, progress, stats, plan)
            finally:
                stats.mb_requests = discovery.requests
                stats.repeated_searches = discovery.repeats
    stats.add_downloads(downloader.stats)
    return stats


def _ingest(catalog: Catalog, taxonomy: Taxonomy, options: FetchOptions, progress: Progress) -> DumpCounts:
    """The dump's candidates into the catalog (once per dump, seed, filter and taxonomy), a bar over its bytes."""
    assert options.from_dump is not None
    bar = progress.add_task(escape(f"dump {Path(options.from_dump).name}"), total=None, info="reading")

    def show(done: int, total: int) -> None:
        progress.update(bar, completed=done, total=total)

    counts = ingest_dump(
        catalog,
        Path(options.from_dump),
        label=taxonomy.label,
        skipped_secondary=options.skipped_secondary,
        seed=options.seed or 0,
        taxonomy_fingerprint=taxonomy.fingerprint(),
        on_progress=show,
    )
    progress.update(bar, info=f"{counts.candidates} candidates, {counts.skipped} lines skipped")
    return counts


def _plan_key(catalog: Catalog, taxonomy: Taxonomy, targets: tuple[str, ...], options: FetchOptions) -> str:
    """What a stored round plan belongs to: a resumed run continues it only when every part is the same."""
    goal = options.goal
    return json.dumps(
        {
            "goal": [goal.target, goal.cap, goal.min_confidence, goal.threshold],
            "genres": list(targets),
            "skipped": list(options.skipped_secondary),
            "taxonomy": taxonomy.fingerprint(),
            "source": catalog.dump_state().get("key") if options.from_dump is not None else "search",
        }
    )


@dataclass(frozen=True)
class _RoundPlan:
    """Where the round loop starts: the plan key, the goal and the stored round (a killed run resumes it)."""

    key: str
    targets: tuple[str, ...]
    goal: Goal
    download: bool
    round_no: int
    quota: dict
    resuming: bool


@dataclass
class _RoundState:
    """What the catalog says before a round: its rows, one clustering, usable covers and spent genres."""

    rows: pd.DataFrame
    canonical: pd.Series
    usable: dict
    exhausted: set
    dry: dict


def _read_round_state(catalog: Catalog, discovery, plan: _RoundPlan, round_no: int) -> _RoundState:
    goal, targets = plan.goal, plan.targets
    rows = catalog.planning_rows(targets)
    # One clustering per round, as `equigen dedup` would cluster the catalog now (every cover here is final).
    canonical = canonical_mask(rows, goal.threshold)
    table = usable_table(rows, targets, goal.cap, goal.min_confidence, goal.threshold, canonical=canonical)
    usable = dict(zip(table["genre"], table["usable"].astype(int)))
    # Exhausted: every source spent (stored in the catalog) and no untried candidate an artist slot admits.
    probe = RoundSelector.start(
        rows, round_no + 1, {g: 1 for g in targets}, goal.cap, goal.min_confidence, goal.threshold, canonical
    )
    exhausted = {g for g in discovery.spent_genres() if probe.untried(g) == 0}
    dry = dry_genres(rows, targets)  # a service that answers for ever with albums without art stops here
    return _RoundState(rows, canonical, usable, exhausted | set(dry), dry)


def _next_quota(state: _RoundState, plan: _RoundPlan) -> dict:
    """Each genre's attempts this round (planning.plan_round); tried: a final answer about the art (a failed
    download says nothing about it)."""
    rows = state.rows
    tried = rows[rows["planned_round"].notna() & rows["status"].isin(TRIED_STATUSES)].groupby("genre").size()
    return plan_round(
        [GenreProgress(g, state.usable[g], int(tried.get(g, 0)), g in state.exhausted) for g in plan.targets],
        plan.goal.target,
    )


async def _rounds(
    catalog: Catalog, discovery, downloader: ConcurrentCoverDownloads, progress, stats, plan: _RoundPlan
) -> None:
    """The round loop of `harvest` (its docstring says how a killed run resumes)."""
    goal, targets, round_no, quota, resuming = plan.goal, plan.targets, plan.round_no, plan.quota, plan.resuming
    bars = {g: progress.add_task(escape(f"usable {g}"), total=goal.target, info="") for g in targets}
    while True:
        state = _read_round_state(catalog, discovery, plan, round_no)
        stats.exhausted, stats.dry = state.exhausted, state.dry
        _show_usable(progress, bars, state, goal.target)
        if not resuming:
            quota = _next_quota(state, plan)
            if not any(quota.values()):
                catalog.set_meta("fetch_complete", plan.key)
                return
            round_no += 1
            catalog.start_round(round_no, quota, plan.key)
        resuming = False
        stats.rounds += 1
        logger.info("fetch round %d: quota %s", round_no, {g: n for g, n in quota.items() if n})
        selector = RoundSelector.start(
            state.rows, round_no, quota, goal.cap, goal.min_confidence, goal.threshold, state.canonical
        )  # resuming: the selector clusters again without this round's covers
        queue = downloader if plan.download else None
        if queue is not None:
            queue.enqueue(catalog.planned_pending(round_no))
        _choose(selector, catalog, queue, round_no)
        await _discover_while_short(selector, catalog, discovery, downloader, queue, progress, bars, stats, round_no)
        if queue is None:
            # Discovery only: the chosen covers stay untried candidates, and the next run plans afresh.
            catalog.reopen_unfinished()
            catalog.finish_round(round_no)
            return
        await downloader.drain()
        catalog.finish_round(round_no)


def _show_usable(progress: Progress, bars: dict, state: _RoundState, target: int) -> None:
    for g, bar in bars.items():
        short = g in state.exhausted and state.usable[g] < target
        progress.update(bar, completed=min(state.usable[g], target), info="short: candidates spent" if short else "")


async def _discover_while_short(selector, catalog, discovery, downloader, queue, progress, bars, stats, round_no):
    """Pages of new candidates for each genre the selector still lacks covers for, chosen as they come."""
    for genre in list(selector.quota):
        while selector.short(genre):
            downloader.raise_if_broken()
            page = await discovery.next_page(genre, progress, bars[genre])
            if page is None:
                break
            stats.malformed += page.malformed
            stats.new_release_groups += len(page.new)
            selector.add(page.new)
            _choose(selector, catalog, queue, round_no)


def _choose(
    selector: RoundSelector, catalog: Catalog, downloader: ConcurrentCoverDownloads | None, round_no: int
) -> None:
    """Store the covers the selector admits now as planned for this round, then queue them (stored first:
    a killed run resumes with the same choice)."""
    chosen = selector.choose()
    if chosen:
        catalog.mark_planned(chosen, round_no)
        if downloader is not None:
            downloader.enqueue(chosen)


@dataclass
class _Page:
    new: list  # new candidates (records with mbid, genre, artist_mbid, seq, label_confidence)
    malformed: int


@dataclass
class _Candidate:
    mbid: str
    genre: str
    artist_mbid: str | None
    seq: int
    label_confidence: float | None


@asynccontextmanager
async def _discovery(
    settings: Settings, catalog: Catalog, taxonomy: Taxonomy, targets: tuple[str, ...], options: FetchOptions
) -> AsyncIterator[_Discovery | _DumpDiscovery]:
    """Where new candidates come from: the dump's (no session to MusicBrainz at all), or tag searches."""
    if options.from_dump is not None:
        yield _DumpDiscovery(catalog, targets)
        return
    timeout = aiohttp.ClientTimeout(total=settings.timeout, sock_connect=min(10.0, settings.timeout))
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=2)) as session:
        mb = MusicBrainzClient(session, settings.musicbrainz_url, settings.user_agent, settings.mb_interval)
        yield _Discovery(catalog, taxonomy, targets, options.skipped_secondary, mb)


class _DumpDiscovery:
    """A dump's candidates as discovery: each page is the genre's next PAGE_SIZE candidates in seeded order."""

    requests = 0  # to MusicBrainz: none
    repeats = 0

    def __init__(self, catalog: Catalog, targets: tuple[str, ...]) -> None:
        self.catalog, self.targets = catalog, targets

    def spent_genres(self) -> set[str]:
        return {g for g, n in self.catalog.dump_remaining(self.targets).items() if n == 0}

    async def next_page(self, genre: str, progress, bar) -> _Page | None:
        progress.update(bar, info="dump candidates")
        new = self.catalog.promote_dump_candidates(genre, PAGE_SIZE, f"{genre}/dump")
        if not new:
            return None
        return _Page([_Candidate(g.mbid, g.genre, g.artist_mbid, seq, g.label_confidence) for g, seq in new], 0)


class _Discovery:
    """Tag searches for short genres: which tag next (planning.next_search), paging, storing each page."""

    def __init__(self, catalog: Catalog, taxonomy: Taxonomy, targets, skipped, mb: MusicBrainzClient) -> None:
        self.catalog, self.taxonomy, self.targets, self.skipped, self.mb = catalog, taxonomy, targets, skipped, mb
        progress = catalog.discovery_progress()
        self.cursors: dict[tuple[str, str], Cursor] = {
            (r.genre, r.tag): Cursor(int(r.next_offset), None if pd.isna(r.total) else int(r.total), bool(r.exhausted))
            for r in progress.itertuples()
        }
        self.seen: Counter = Counter()
        self.returned: dict[tuple[str, str], set[str]] = {}  # MBIDs each search returned in this run
        self.repeats = 0  # searches stopped for repeating themselves
        for tags_json in catalog.stored_tags():
            self._count_tags(tags_json)

    def _count_tags(self, tags) -> None:
        try:
            pairs = json.loads(tags) if isinstance(tags, str) else tags
            self.seen.update({normalize_tag(str(p[0])) for p in pairs})
        except (ValueError, TypeError, IndexError):
            pass

    def spent_genres(self) -> set[str]:
        """Genres whose every search name is exhausted (searched to the end, or covered by a broader search)."""
        return {
            g
            for g in self.targets
            if all(self.cursors.get((g, t), Cursor()).exhausted for t in self.taxonomy.search_names(g))
        }

    def exhausted_searches(self) -> list[str]:
        return [t for (_, t), c in self.cursors.items() if c.exhausted and c.total is not None]

    @property
    def requests(self) -> int:
        return self.mb.requests

    async def next_page(self, genre: str, progress, bar) -> _Page | None:
        tags = self.taxonomy.search_names(genre)
        cursors = {t: self.cursors.get((genre, t), Cursor()) for t in tags}
        done = self.exhausted_searches()
        tag = next_search(tags, self.taxonomy.broad_names(genre), cursors, self.seen, done)
        if tag is None:
            return None
        cursor = cursors[tag]
        progress.update(bar, info=escape(f"search {tag!r} @ {cursor.next_offset}"))
        page = await self.mb.search_tag(tag, cursor.next_offset, self.taxonomy.label, self.skipped)
        offset = cursor.next_offset + page.returned
        exhausted = page.returned == 0 or offset >= page.count or offset >= MAX_SEARCH_OFFSET
        earlier = self.returned.setdefault((genre, tag), set())
        if page.ids and earlier.issuperset(page.ids):
            # A server whose pages repeat what this search already returned would be paged for ever.
            logger.warning(
                "search %r @ %d brought nothing new (count %d): stopping this tag", tag, cursor.next_offset, page.count
            )
            self.repeats += 1
            exhausted = True
        earlier.update(page.ids)
        if (
            not exhausted
            and cursor.next_offset == 0
            and subsumed(tag, done)
            and self.catalog.known_mbids([g.mbid for g in page.groups]) == {g.mbid for g in page.groups}
        ):
            # A broader search already returned what this one finds (the search tokenizes tag names):
            # one page shows it; paging on would only repeat known albums.
            logger.info("search %r brought nothing new: an earlier search covered it", tag)
            exhausted = True
        new = self.catalog.record_page(genre, tag, page.groups, offset, page.count, exhausted)
        self.cursors[(genre, tag)] = Cursor(offset, page.count, exhausted)
        for group, _ in new:  # as a resumed run counts them: each release group once
            self.seen.update({normalize_tag(n) for n, _ in group.tags})
        return _Page(
            [_Candidate(g.mbid, g.genre, g.artist_mbid, seq, g.label_confidence) for g, seq in new], page.malformed
        )


def summary_table(
    catalog: Catalog, taxonomy: Taxonomy, stats: FetchStats | None = None, goal: Goal | None = None
) -> Table:
    """Per genre: candidates, cover statuses and (for a harvest) what dedup and the artist cap will take from the
    ok covers (stored, not counted) and the usable covers left against the target."""
    frame = catalog.status_table()
    pivot = frame.pivot_table(index="genre", columns="status", values="n", aggfunc="sum", fill_value=0)
    columns = ["ok", "no_art", "bad_image", "refused", "failed", "pending"]
    table = Table(title="equigen fetch: covers per genre")
    table.add_column("genre")
    table.add_column("candidates", justify="right")
    for c in columns:
        table.add_column(c, justify="right")
    counted = {}
    if goal is not None:
        stats = stats or FetchStats()
        counted = {
            "duplicates": stats.duplicates,
            "over cap": stats.over_cap,
            f"usable (target {goal.target})": stats.usable,
        }
        for name in counted:
            table.add_column(name, justify="right")
    totals = [0] * (len(columns) + 1)
    for genre in list(taxonomy.genres) + [AMBIGUOUS, UNLABELLED]:
        row = pivot.loc[genre] if genre in pivot.index else None
        values = [int(row.get(c, 0)) if row is not None else 0 for c in columns]
        cand = int(row.sum()) if row is not None else 0
        totals = [a + b for a, b in zip(totals, [cand] + values)]
        style = "dim" if genre in (AMBIGUOUS, UNLABELLED) else None
        extra = [str(by_genre[genre]) if genre in by_genre else "" for by_genre in counted.values()]
        table.add_row(escape(genre), str(cand), *map(str, values), *extra, style=style)
    table.add_row("total", *map(str, totals), *[str(sum(v.values())) for v in counted.values()], style="bold")
    return table
