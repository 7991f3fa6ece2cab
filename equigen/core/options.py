"""Each verb's options (fetch, dedup, balance, split, verify) as one frozen object, checked once when it is built.

The CLI builds them from its flags and passes them whole (`run_balance(settings, BalanceOptions(...))`), so a
verb's options are written once, not copied through every layer, and a bad value is a one-line EquigenError
before any folder is locked or written. None means "the default" where the flag has a computed default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from equigen.core.defaults import (
    DEFAULT_MARGIN,
    DEFAULT_PER_GENRE,
    DEFAULT_RATIOS,
    DEFAULT_SHARD_ROWS,
    DEFAULT_SKIPPED_SECONDARY,
    DEFAULT_THRESHOLD,
    MAX_PER_GENRE,
    MAX_SEED,
    SPLITS,
    default_artist_cap,
)
from equigen.core.errors import EquigenError, check_number

MAX_SHARD_ROWS = 10_000_000


def check_seed(seed: int) -> int:
    return check_number("--seed", seed, 0, MAX_SEED, integer=True)


def check_threshold(threshold: int) -> int:
    """pHash Hamming distance: 0 to 64 bits (dedup's --threshold, and fetch's, which counts what dedup will keep)."""
    return check_number("--threshold (bits)", threshold, 0, 64, integer=True)


def check_balance_options(per_genre: int, artist_cap: int | None, min_confidence: float) -> None:
    """The numbers balance takes (and fetch, which counts what balance will keep), checked before anything runs."""
    check_number("--per-genre", per_genre, 1, MAX_PER_GENRE, integer=True)
    if artist_cap is not None:
        check_number("--artist-cap", artist_cap, 1, MAX_PER_GENRE, integer=True)
    check_number("--min-confidence", min_confidence, 0.0, 1.0)


def check_ratios(ratios) -> tuple[float, float, float]:
    """--ratios: three finite positive fractions summing to 1 (NaN passes `x <= 0`, so each is range-checked)."""
    if len(ratios) != len(SPLITS):
        raise EquigenError(f"--ratios must be three numbers (train,validation,test), got {len(ratios)}")
    for name, r in zip(SPLITS, ratios):
        check_number(f"--ratios ({name})", r, 1e-9, 1.0)
    if abs(sum(ratios) - 1) > 1e-6:
        raise EquigenError(f"--ratios must sum to 1, got {sum(ratios):g}")
    return tuple(ratios)


@dataclass(frozen=True)
class DedupOptions:
    threshold: int = DEFAULT_THRESHOLD  # max pHash Hamming distance of a near-duplicate

    def __post_init__(self) -> None:
        if self.threshold is None:
            object.__setattr__(self, "threshold", DEFAULT_THRESHOLD)
        check_threshold(self.threshold)


@dataclass(frozen=True)
class BalanceOptions:
    per_genre: int = DEFAULT_PER_GENRE
    seed: int = 0
    artist_cap: int | None = None  # None: max(2, ceil(per_genre / 100))
    allow_short: bool = False
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        check_balance_options(self.per_genre, self.artist_cap, self.min_confidence)
        check_seed(self.seed)


@dataclass(frozen=True)
class SplitOptions:
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = 0
    shard_rows: int = DEFAULT_SHARD_ROWS
    samples_per_split: bool = False  # contact sheets for validation and test too

    def __post_init__(self) -> None:
        check_seed(self.seed)
        check_number("--shard-rows", self.shard_rows, 1, MAX_SHARD_ROWS, integer=True)
        object.__setattr__(self, "ratios", check_ratios(self.ratios))


@dataclass(frozen=True)
class VerifyOptions:
    radius: int = DEFAULT_THRESHOLD  # pHash distance counted as a near-duplicate leak: dedup's threshold

    def __post_init__(self) -> None:
        if self.radius is None:
            object.__setattr__(self, "radius", DEFAULT_THRESHOLD)
        check_number("--radius", self.radius, 0, integer=True)


@dataclass(frozen=True)
class Goal:
    """What `balance` will ask of the harvest: fetch stops when every genre can meet it."""

    per_genre: int
    # Extra usable covers: fetch counts what dedup + balance will keep (duplicate clusters, artist cap, confidence:
    # planning.usable_table), so this is only a safety for what it cannot know -- a `dedup --threshold` above
    # `threshold`, or a later fetch of other genres bringing a larger copy of a cover, canonical in its genre.
    margin: float = DEFAULT_MARGIN
    artist_cap: int | None = None  # None: balance's default for per_genre
    min_confidence: float = 0.0
    threshold: int = DEFAULT_THRESHOLD  # the pHash radius `equigen dedup --threshold` will cluster with

    @property
    def cap(self) -> int:
        return default_artist_cap(self.per_genre) if self.artist_cap is None else self.artist_cap

    @property
    def target(self) -> int:
        return math.ceil(self.per_genre * (1 + self.margin))


@dataclass(frozen=True)
class FetchOptions:
    """Everything `equigen fetch` is asked to do, checked once, here: the CLI builds it, `run_fetch` takes it whole."""

    per_genre: int = DEFAULT_PER_GENRE
    margin: float = DEFAULT_MARGIN
    artist_cap: int | None = None
    min_confidence: float = 0.0
    threshold: int | None = None  # None: dedup's default radius
    genres: tuple[str, ...] = ()  # empty: every genre of the taxonomy
    include_secondary: tuple[str, ...] = ()  # secondary types kept although skipped by default
    discover: bool = True  # False: only download the covers already in the catalog
    download: bool = True  # False: only discover
    from_dump: Path | None = None  # discover from this MusicBrainz JSON dump instead of searching
    seed: int | None = None  # the order a dump's candidates are taken in (only with from_dump)

    def __post_init__(self) -> None:
        for name in ("genres", "include_secondary"):  # lists from the CLI: frozen means tuples
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        check_fetch_options(self.per_genre, self.margin, self.artist_cap, self.min_confidence, self.threshold)
        if self.seed is not None:
            if self.from_dump is None:
                raise EquigenError("--seed orders the candidates of a dump: give it with --from-dump")
            check_seed(self.seed)
        if self.from_dump is not None and not self.discover:
            raise EquigenError("--from-dump discovers from a dump: it cannot go with --skip-discovery")

    @property
    def goal(self) -> Goal:
        threshold = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
        return Goal(self.per_genre, self.margin, self.artist_cap, self.min_confidence, threshold)

    @property
    def skipped_secondary(self) -> tuple[str, ...]:
        kept = {x.lower() for x in self.include_secondary}
        return tuple(s for s in DEFAULT_SKIPPED_SECONDARY if s not in kept)

    @property
    def searches(self) -> bool:
        """Whether this fetch asks MusicBrainz (a search); a dump needs no request to it."""
        return self.discover and self.from_dump is None


def check_fetch_options(
    per_genre: int, margin: float, artist_cap: int | None, min_confidence: float, threshold: int | None
) -> None:
    """fetch's numbers, checked before anything is touched (balance checks the same ones with the same bounds)."""
    check_balance_options(per_genre, artist_cap, min_confidence)
    check_number("--margin (a fraction: 0.05 = 5 %)", margin, 0.0, 10.0)
    if threshold is not None:
        check_threshold(threshold)
