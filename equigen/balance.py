"""Balanced, artist-capped, seeded selection of covers per genre (pure: pandas/numpy, no I/O)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from equigen.defaults import MAX_PER_GENRE
from equigen.errors import check_number
from equigen.records import require_columns
from equigen.taxonomy import NO_GENRE


@dataclass(frozen=True)
class BalanceResult:
    selected: pd.DataFrame  # mbid, genre (sorted by genre order, then mbid)
    table: pd.DataFrame  # genre, eligible, usable, selected, shortfall
    per_genre: int
    artist_cap: int
    seed: int
    min_confidence: float = 0.0
    below_confidence: dict[str, int] = field(default_factory=dict)  # genre -> covers left out for it

    def short_genres(self) -> list[str]:
        return short_genres(self.table)


def check_balance_options(per_genre: int, artist_cap: int | None, min_confidence: float) -> None:
    """The numbers balance takes (and fetch, which counts what balance will keep), checked before anything runs."""
    check_number("--per-genre", per_genre, 1, MAX_PER_GENRE, integer=True)
    if artist_cap is not None:
        check_number("--artist-cap", artist_cap, 1, MAX_PER_GENRE, integer=True)
    check_number("--min-confidence", min_confidence, 0.0, 1.0)


def default_artist_cap(per_genre: int) -> int:
    """About 1 % of a genre, at least 2 covers per artist."""
    return max(2, math.ceil(per_genre / 100))


def short_genres(table: pd.DataFrame) -> list[str]:
    """Genres of a BalanceResult table that did not reach the target."""
    return table.loc[table["shortfall"] > 0, "genre"].tolist()


def _keys(seed: int, scope: str, names: pd.Series) -> np.ndarray:
    """A stable pseudo-random 64-bit key per name: depends on (seed, scope, name) only, not on the other rows."""
    prefix = f"{seed}\x1f{scope}\x1f".encode()
    return np.array(
        [int.from_bytes(hashlib.blake2b(prefix + str(v).encode(), digest_size=8).digest(), "big") for v in names],
        dtype=np.uint64,
    )


def select_balanced(
    rows: pd.DataFrame,
    genres: Sequence[str],
    per_genre: int,
    seed: int,
    artist_cap: int | None = None,
    min_confidence: float = 0.0,
) -> BalanceResult:
    """Choose up to `per_genre` covers for each genre.

    rows: mbid, genre, artist_mbid, is_canonical, and optionally status (then only 'ok' rows count)
    and label_confidence (needed when min_confidence > 0).
    Eligible: canonical cluster members whose genre is in `genres` ('ambiguous'/'unlabelled' never are)
    and, when min_confidence > 0, whose label_confidence is at least min_confidence (unknown: not eligible).
    Rule, per genre: each artist's covers are shuffled by a seeded hash of (seed, genre, mbid) and
    the artists by a seeded hash of (seed, genre, artist); then covers are dealt round-robin -- every
    artist's first cover, then every artist's second, ... -- stopping at the artist cap (default
    max(2, ceil(per_genre / 100)), about 1 %) or when `per_genre` are taken. So prolific artists
    never crowd out the rest, and a cover's fate depends only on the seed and its own genre's rows.
    A missing artist_mbid counts as an artist of its own. The result is the same for the same seed
    whatever the input row order.
    """
    cap = default_artist_cap(per_genre) if artist_cap is None else int(artist_cap)
    if per_genre < 0 or cap < 1:
        raise ValueError(f"per_genre must be >= 0 and artist_cap >= 1, got {per_genre}, {cap}")
    min_confidence = float(min_confidence)
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    require_columns(rows, ("mbid", "genre", "artist_mbid", "is_canonical"), "select_balanced")
    wanted = [g for g in genres if g not in NO_GENRE]
    df = rows.sort_values("mbid", kind="stable")
    ok = df["is_canonical"].astype(bool) & df["genre"].isin(wanted)
    if "status" in df:
        ok &= df["status"] == "ok"
    below = pd.Series(False, index=df.index)
    if min_confidence > 0:
        if "label_confidence" in df:
            confidence = pd.to_numeric(df["label_confidence"], errors="coerce").astype("float64")
        else:
            confidence = pd.Series(np.nan, index=df.index)
        below = ok & ~(confidence >= min_confidence)  # NaN (unknown) compares False: not eligible
        ok &= ~below
    below_counts = df.loc[below, "genre"].value_counts()
    below_confidence = {g: int(below_counts.get(g, 0)) for g in wanted}
    df = df.loc[ok, ["mbid", "genre", "artist_mbid"]].copy()
    df["artist"] = df["artist_mbid"].where(df["artist_mbid"].notna() & (df["artist_mbid"] != ""), "mbid:" + df["mbid"])

    picked, table = [], []
    for genre in wanted:
        g = df[df["genre"] == genre].copy()
        g["item_key"] = _keys(seed, genre, g["mbid"])
        g["artist_key"] = _keys(seed, genre, g["artist"])
        g = g.sort_values(["artist_key", "artist", "item_key", "mbid"])
        g["round"] = g.groupby("artist", sort=False).cumcount()
        usable = g[g["round"] < cap].sort_values(["round", "artist_key", "artist"], kind="stable")
        chosen = usable.head(per_genre)
        picked.append(chosen[["mbid", "genre"]])
        table.append(
            {
                "genre": genre,
                "eligible": len(g),
                "usable": len(usable),
                "selected": len(chosen),
                "shortfall": per_genre - len(chosen),
            }
        )
    selected = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(columns=["mbid", "genre"])
    order = {g: i for i, g in enumerate(wanted)}
    selected = selected.sort_values(["genre", "mbid"], key=lambda c: c.map(order) if c.name == "genre" else c)
    table_df = pd.DataFrame(table, columns=["genre", "eligible", "usable", "selected", "shortfall"])
    return BalanceResult(
        selected.reset_index(drop=True), table_df, per_genre, cap, seed, min_confidence, below_confidence
    )
