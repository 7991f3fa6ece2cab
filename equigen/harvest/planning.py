"""What `equigen fetch` does next (pure: rows in, decisions out; no I/O).

Fetch works in rounds. At a round's start every planned cover has its final status, so the
round's plan is a function of the catalog alone: that is what makes a killed and resumed fetch
end exactly where an uninterrupted one ends.

- `usable_table` / `usable_by_genre`: covers that `dedup` + `balance` will keep -- ok, one per duplicate
  cluster (exact or near: `dedup.dedup_rows`, the function `equigen dedup` runs, with its radius and
  canonical pick, over every ok cover of the catalog), labelled, at or above the minimum confidence, at most
  `artist_cap` per artist within a genre (`balance.usable_counts`, the count `balance` selects from).
- `plan_round`: per genre, how many more covers to try: the shortfall against the target divided
  by the genre's observed yield (usable covers per tried cover, read optimistically; 1.0 before
  anything is known, so the first round never over-downloads).
- `RoundSelector`: which candidates to try, in discovery order, skipping artists that already
  fill the cap, until the genre has its quota for the round.
- `next_search`: which tag to search next for a genre that is still short.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from equigen.core.balance_rules import usable_counts
from equigen.core.dedup_rules import DEDUP_COLUMNS, dedup_rows
from equigen.core.defaults import DEFAULT_THRESHOLD
from equigen.core.records import require_columns
from equigen.core.search_analysis import mb_tokens, phrase_in
from equigen.core.taxonomy import normalize_tag

TRIED_STATUSES = ("ok", "no_art", "bad_image", "refused")  # a final answer about a cover ("failed" is not one)
MIN_YIELD = 0.05  # never plan more than 20 tries per missing cover, whatever the first tries showed
# A genre whose last DRY_TRIES tried covers brought not one ok cover stops searching: on the real archive about half
# of the albums have art, so 500 misses in a row mean a broken or hostile service, not bad luck (0.5**500).
DRY_TRIES = 500
MAX_SEARCH_OFFSET = 200_000  # per tag: 2,000 pages, far beyond what any genre of a harvest needs


# Every target-genre release group, and every ok cover of any genre: an ok cover of another genre can be the
# canonical member of a duplicate cluster and so take the cluster from a target genre, as in `equigen dedup`.
USABLE_COLUMNS = (
    "mbid",
    "genre",
    "artist_mbid",
    "status",
    "sha256",
    "phash",
    "width",
    "height",
    "first_release_date",
    "label_confidence",
    "seq",
)


def artist_key(artist_mbid, mbid) -> str:
    """The artist a cover counts against for the cap; a release group without one is its own artist."""
    return str(artist_mbid) if isinstance(artist_mbid, str) and artist_mbid else f"mbid:{mbid}"


def eligible_mask(rows: pd.DataFrame, genres: Sequence[str], min_confidence: float) -> pd.Series:
    """Rows labelled with one of `genres` whose label confidence reaches `min_confidence`.

    An unknown confidence (NaN: e.g. a row from an older catalog) passes only when no minimum is set.
    """
    mask = rows["genre"].isin(list(genres))
    if min_confidence > 0:
        mask &= rows["label_confidence"].fillna(-1.0) >= min_confidence
    return mask


def canonical_mask(rows: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD) -> pd.Series:
    """Per row: an ok cover that `equigen dedup --threshold T` would keep as its cluster's canonical member.

    The clustering is `dedup_rows` over the ok rows given (dedup clusters every ok cover of the catalog):
    same sha256 or pHash within `threshold` bits, chained; canonical = largest area, then earliest date,
    then smallest mbid. Rows that are not ok are False.
    """
    ok = (rows["status"] == "ok").to_numpy()
    out = pd.Series(False, index=rows.index)
    if ok.any():
        clusters = dedup_rows(rows.loc[ok, list(DEDUP_COLUMNS)], threshold)
        keep = dict(zip(clusters["mbid"], clusters["is_canonical"]))
        out[ok] = rows.loc[ok, "mbid"].map(keep).astype(bool).to_numpy()
    return out


def usable_table(
    rows: pd.DataFrame,
    genres: Sequence[str],
    artist_cap: int,
    min_confidence: float = 0.0,
    threshold: int = DEFAULT_THRESHOLD,
    canonical: pd.Series | None = None,
) -> pd.DataFrame:
    """Per genre, what `dedup` then `balance --artist-cap C --min-confidence M` will find: `balance.usable_counts`
    (columns genre, covers, duplicates, below_confidence, eligible, over_cap, usable) over `rows` clustered
    as `dedup` clusters them. `canonical`: canonical_mask(rows, threshold) if the caller has it already.

    rows: USABLE_COLUMNS.
    """
    require_columns(rows, USABLE_COLUMNS, "usable_by_genre")
    if canonical is None:
        canonical = canonical_mask(rows, threshold)
    return usable_counts(rows.assign(is_canonical=canonical), genres, artist_cap, min_confidence)


def usable_by_genre(
    rows: pd.DataFrame,
    genres: Sequence[str],
    artist_cap: int,
    min_confidence: float = 0.0,
    threshold: int = DEFAULT_THRESHOLD,
) -> dict[str, int]:
    """Per genre, the covers `balance` will be able to select after `dedup` (see usable_table)."""
    table = usable_table(rows, genres, artist_cap, min_confidence, threshold)
    return dict(zip(table["genre"], table["usable"].astype(int).tolist()))


def dry_genres(rows: pd.DataFrame, genres: Sequence[str], limit: int = DRY_TRIES) -> dict[str, int]:
    """Genres whose covers tried since their last ok one (by fetch round) number `limit` or more -> that number.

    A pure function of the catalog's rows (genre, status, planned_round), so a resumed fetch stops where an
    uninterrupted one stops.
    """
    require_columns(rows, ("genre", "status", "planned_round"), "dry_genres")
    out = {}
    planned = rows[rows["planned_round"].notna() & rows["genre"].isin(genres)]
    for genre, mine in planned.groupby("genre"):
        ok_rounds = mine.loc[mine["status"] == "ok", "planned_round"]
        since = mine["planned_round"] > (ok_rounds.max() if len(ok_rounds) else 0)
        misses = int((since & mine["status"].isin(TRIED_STATUSES)).sum())
        if misses >= limit:
            out[str(genre)] = misses
    return out


@dataclass(frozen=True)
class GenreProgress:
    genre: str
    usable: int  # usable_by_genre
    tried: int  # planned covers that reached a final status
    exhausted: bool  # no tag left to search and no untried candidate left


def plan_round(progress: Iterable[GenreProgress], target: int, prior_yield: float = 1.0) -> dict[str, int]:
    """Per genre, the covers to try this round: ceil(shortfall / yield); 0 when none is needed or possible.

    yield = (usable + 1) / (tried + 1) plus one standard error, clipped to [MIN_YIELD, 1];
    `prior_yield` before any cover was tried. Optimistic on purpose: stored covers per published
    cover stay near 1, at the price of an extra round now and then.
    """
    plan = {}
    for p in progress:
        short = target - p.usable
        if short <= 0 or p.exhausted:
            plan[p.genre] = 0
            continue
        if p.tried:
            # Plan for an optimistic yield (one standard error above the add-one estimate): an unlucky
            # run of first tries must not make this round over-download; the next round fills the rest.
            rate = (p.usable + 1) / (p.tried + 1)
            rate += math.sqrt(rate * (1 - rate) / (p.tried + 1))
        else:
            rate = prior_yield
        plan[p.genre] = math.ceil(short / min(1.0, max(MIN_YIELD, rate)))
    return plan


@dataclass
class RoundSelector:
    """Chooses this round's covers per genre in discovery order (deterministic, resumable).

    Counts per artist what it already holds (ok covers from earlier rounds plus covers chosen this
    round) and skips candidates of artists at the cap: they could never be balanced.
    """

    round: int
    quota: Mapping[str, int]
    artist_cap: int
    min_confidence: float = 0.0
    chosen: dict[str, int] = field(default_factory=dict)  # genre -> chosen this round
    held: dict[tuple[str, str], int] = field(default_factory=dict)
    waiting: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # genre -> (seq, mbid, artist)

    @classmethod
    def start(
        cls,
        rows: pd.DataFrame,
        round_no: int,
        quota: Mapping[str, int],
        artist_cap: int,
        min_confidence: float = 0.0,
        threshold: int = DEFAULT_THRESHOLD,
        canonical: pd.Series | None = None,
    ) -> RoundSelector:
        """rows: USABLE_COLUMNS and planned_round (NaN = never planned). `canonical`: canonical_mask(rows,
        threshold), used only when no row is planned for this round yet (else recomputed without them)."""
        require_columns(rows, (*USABLE_COLUMNS, "planned_round"), "RoundSelector.start")
        selector = cls(round_no, dict(quota), artist_cap, min_confidence)
        genres = list(quota)
        # An ok cover that dedup would not keep (a duplicate of another cover: exact or near) holds no slot of its
        # artist (as in usable_table). Only what the round started from counts here: a cover chosen this round holds
        # its slot whatever its download later gave, as it did when it was chosen; so a resumed round clusters what
        # the uninterrupted one clustered, and chooses what it chose.
        this_round = rows["planned_round"] == round_no
        if canonical is None or this_round.any():
            canonical = canonical_mask(rows[~this_round], threshold).reindex(rows.index, fill_value=False)
        repeat = ~this_round & (rows["status"] == "ok") & ~canonical
        rows = rows[eligible_mask(rows, genres, min_confidence) & ~repeat].sort_values(["seq", "mbid"], kind="stable")
        planned = rows["planned_round"]
        this_round = planned == round_no
        counted = this_round | (rows["status"] == "ok") & (planned.isna() | (planned < round_no))
        for row in rows[counted].itertuples(index=False):
            key = (row.genre, artist_key(row.artist_mbid, row.mbid))
            selector.held[key] = selector.held.get(key, 0) + 1
        for genre, n in rows[this_round].groupby("genre").size().items():
            selector.chosen[genre] = int(n)
        fresh = rows[planned.isna() & (rows["status"] == "pending")]
        selector.add(fresh.itertuples(index=False))
        return selector

    def add(self, candidates: Iterable) -> None:
        """New candidates (objects with mbid, genre, artist_mbid, seq, label_confidence), in discovery order."""
        for c in candidates:
            if c.genre not in self.quota:
                continue
            if self.min_confidence > 0 and not (
                c.label_confidence is not None and c.label_confidence >= self.min_confidence
            ):
                continue
            self.waiting.setdefault(c.genre, []).append((int(c.seq), c.mbid, artist_key(c.artist_mbid, c.mbid)))

    def short(self, genre: str) -> bool:
        return self.chosen.get(genre, 0) < self.quota.get(genre, 0)

    def choose(self) -> list[str]:
        """Take waiting candidates until each genre has its quota; returns the newly chosen MBIDs."""
        taken = []
        for genre, queue in self.waiting.items():
            keep = []
            for item in sorted(queue):
                seq, mbid, artist = item
                if not self.short(genre):
                    keep.append(item)
                    continue
                if self.held.get((genre, artist), 0) >= self.artist_cap:
                    continue  # the artist is full: never worth a download for this balance
                self.held[(genre, artist)] = self.held.get((genre, artist), 0) + 1
                self.chosen[genre] = self.chosen.get(genre, 0) + 1
                taken.append(mbid)
            self.waiting[genre] = keep
        return taken

    def untried(self, genre: str) -> int:
        """Candidates still waiting that an artist slot would admit."""
        return sum(1 for _, _, a in self.waiting.get(genre, []) if self.held.get((genre, a), 0) < self.artist_cap)


@dataclass(frozen=True)
class Cursor:
    next_offset: int = 0
    total: int | None = None
    exhausted: bool = False


def subsumed(tag: str, searched: Iterable[str]) -> bool:
    """A tag whose words contain an exhaustively searched name's words: that search returned it already.

    MusicBrainz's search tokenizes tag names, so `tag:"metal"` finds "death metal" albums too
    (search_analysis.py follows its analyzer). Skipping a search is only safe when the tag is
    covered by that analysis *and* by our own normalisation, so both must agree.
    """
    words, tokens = normalize_tag(tag).split(), mb_tokens(tag)
    for name in searched:
        part = normalize_tag(name).split()
        n = len(part)
        if (
            n
            and any(words[i : i + n] == part for i in range(len(words) - n + 1))
            and phrase_in(mb_tokens(name), tokens)
        ):
            return True
    return False


def next_search(
    tags: Sequence[str],
    broad: Sequence[str],
    cursors: Mapping[str, Cursor],
    seen: Mapping[str, int],
    exhausted_searches: Iterable[str],
) -> str | None:
    """The tag a short genre searches next, or None when its tags are spent.

    Broad names first, in file order. Then the tags already started, largest `count` (from their
    first page) first, so a rich vein is finished before new ones are opened. Then new tags not
    subsumed by an exhausted search, most often seen on release groups found so far first (a free
    estimate of the count; learning the real one costs a request per tag). Subsumed tags come last:
    on MusicBrainz their first page brings nothing new and the caller stops them there (one request),
    while a server that matches tags exactly still gets searched for them.
    """
    done = list(exhausted_searches)
    open_tags = [t for t in tags if not cursors.get(t, Cursor()).exhausted]
    for t in broad:
        if t in open_tags:
            return t
    started = [t for t in open_tags if cursors.get(t, Cursor()).next_offset > 0]
    if started:
        return max(started, key=lambda t: (cursors[t].total or 0, -tags.index(t)))
    if not open_tags:
        return None
    return max(open_tags, key=lambda t: (not subsumed(t, done), seen.get(normalize_tag(t), 0), -tags.index(t)))
