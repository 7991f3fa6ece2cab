"""Balanced, artist-capped, seeded selection of covers per genre (pure: pandas/numpy, no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from equigen.core.defaults import default_artist_cap
from equigen.core.records import require_columns
from equigen.core.taxonomy import NO_GENRE


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


USABLE_TABLE_COLUMNS = ("genre", "covers", "duplicates", "below_confidence", "eligible", "over_cap", "usable")


def _artist(frame: pd.DataFrame) -> pd.Series:
    """The artist a cover counts against for the cap; a release group without one is its own artist."""
    return frame["artist_mbid"].where(
        frame["artist_mbid"].notna() & (frame["artist_mbid"] != ""), "mbid:" + frame["mbid"].astype(str)
    )


def _eligible(rows: pd.DataFrame, wanted: list[str], min_confidence: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(eligible covers: mbid, genre, artist_mbid, artist; per-genre counts of covers, duplicates, below_confidence).

    covers: ok covers labelled with a wanted genre; duplicates: those dedup did not keep (not canonical);
    below_confidence: canonical ones under min_confidence (or of unknown confidence when it is > 0).
    """
    df = rows.sort_values("mbid", kind="stable")
    labelled = df["genre"].isin(wanted)
    if "status" in df:
        labelled &= df["status"] == "ok"
    canonical = df["is_canonical"].eq(True)  # bool or 0/1; unknown (NaN) is not canonical
    ok = labelled & canonical
    below = pd.Series(False, index=df.index)
    if min_confidence > 0:
        if "label_confidence" in df:
            confidence = pd.to_numeric(df["label_confidence"], errors="coerce").astype("float64")
        else:
            confidence = pd.Series(np.nan, index=df.index)
        below = ok & ~(confidence >= min_confidence)  # NaN (unknown) compares False: not eligible
        ok &= ~below
    losses = pd.DataFrame(
        {
            "covers": df.loc[labelled, "genre"].value_counts(),
            "duplicates": df.loc[labelled & ~canonical, "genre"].value_counts(),
            "below_confidence": df.loc[below, "genre"].value_counts(),
        }
    ).reindex(wanted, fill_value=0)
    eligible = df.loc[ok, ["mbid", "genre", "artist_mbid"]].copy()
    eligible["artist"] = _artist(eligible)
    return eligible, losses.fillna(0).astype(int)


def _usable_table(eligible: pd.DataFrame, losses: pd.DataFrame, wanted: list[str], cap: int) -> pd.DataFrame:
    per_artist = eligible.groupby(["genre", "artist"]).size()
    usable = per_artist.clip(upper=cap).groupby(level="genre").sum() if len(per_artist) else pd.Series(dtype=int)
    n_eligible = eligible["genre"].value_counts()
    table = losses.assign(
        eligible=[int(n_eligible.get(g, 0)) for g in wanted], usable=[int(usable.get(g, 0)) for g in wanted]
    )
    table["over_cap"] = table["eligible"] - table["usable"]
    return table.rename_axis("genre").reset_index()[list(USABLE_TABLE_COLUMNS)]


def usable_counts(
    rows: pd.DataFrame, genres: Sequence[str], artist_cap: int, min_confidence: float = 0.0
) -> pd.DataFrame:
    """Per genre, what `select_balanced` can choose from, and what each rule took away (the one definition
    of "usable" that fetch plans with and balance selects by).

    rows: mbid, genre, artist_mbid, is_canonical (dedup's pick of its cluster), optionally status (then only
    'ok' rows count) and label_confidence. Columns: genre, covers (ok, labelled with the genre), duplicates
    (not canonical: dedup drops them), below_confidence, eligible (= covers - duplicates - below_confidence),
    over_cap (beyond artist_cap covers of one artist), usable (= eligible - over_cap).
    """
    require_columns(rows, ("mbid", "genre", "artist_mbid", "is_canonical"), "usable_counts")
    wanted = [g for g in genres if g not in NO_GENRE]
    eligible, losses = _eligible(rows, wanted, float(min_confidence))
    return _usable_table(eligible, losses, wanted, int(artist_cap))


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
    df, losses = _eligible(rows, wanted, min_confidence)
    below_confidence = {g: int(losses.loc[g, "below_confidence"]) for g in wanted}
    counts = _usable_table(df, losses, wanted, cap).set_index("genre")

    picked, table = [], []
    for genre in wanted:
        g = df[df["genre"] == genre].copy()
        g["item_key"] = _keys(seed, genre, g["mbid"])
        g["artist_key"] = _keys(seed, genre, g["artist"])
        g = g.sort_values(["artist_key", "artist", "item_key", "mbid"])
        g["round"] = g.groupby("artist", sort=False).cumcount()
        usable = g[g["round"] < cap].sort_values(["round", "artist_key", "artist"], kind="stable")
        assert len(usable) == counts.loc[genre, "usable"]  # the count fetch plans with is what is dealt here
        chosen = usable.head(per_genre)
        picked.append(chosen[["mbid", "genre"]])
        table.append({**counts.loc[genre].to_dict(), "genre": genre, "selected": len(chosen)})
        table[-1]["shortfall"] = per_genre - len(chosen)
    selected = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame(columns=["mbid", "genre"])
    order = {g: i for i, g in enumerate(wanted)}
    selected = selected.sort_values(["genre", "mbid"], key=lambda c: c.map(order) if c.name == "genre" else c)
    table_df = pd.DataFrame(table, columns=[*USABLE_TABLE_COLUMNS, "selected", "shortfall"])
    for column in table_df.columns[1:]:
        table_df[column] = table_df[column].astype("int64")
    return BalanceResult(
        selected.reset_index(drop=True), table_df, per_genre, cap, seed, min_confidence, below_confidence
    )
