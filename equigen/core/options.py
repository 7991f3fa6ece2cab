"""Each curate/publish verb's options as one frozen object, checked once when it is built.

The CLI builds them from its flags and passes them whole (`run_balance(settings, BalanceOptions(...))`), so a
verb's options are written once, not copied through every layer, and a bad value is a one-line EquigenError
before any folder is locked or written. None means "the default" where the flag has a computed default.
"""

from __future__ import annotations

from dataclasses import dataclass

from equigen.core.balance_rules import check_balance_options
from equigen.core.dedup_rules import DEFAULT_THRESHOLD
from equigen.core.defaults import DEFAULT_PER_GENRE, DEFAULT_RATIOS, DEFAULT_SHARD_ROWS, MAX_SEED, SPLITS
from equigen.core.errors import EquigenError, check_number

MAX_SHARD_ROWS = 10_000_000


def check_seed(seed: int) -> int:
    return check_number("--seed", seed, 0, MAX_SEED, integer=True)


def check_threshold(threshold: int) -> int:
    """pHash Hamming distance: 0 to 64 bits (dedup's --threshold, and fetch's, which counts what dedup will keep)."""
    return check_number("--threshold (bits)", threshold, 0, 64, integer=True)


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
