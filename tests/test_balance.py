"""Balanced selection: exact counts, artist cap, eligibility, seeding, shortfall."""

from __future__ import annotations

import pandas as pd
import pytest

from equigen.core.balance_rules import select_balanced, short_genres, usable_counts
from equigen.core.defaults import default_artist_cap

GENRES = ["Rock", "Jazz", "Folk"]


def catalog_rows() -> pd.DataFrame:
    rows = []
    # Rock: 60 covers, one prolific artist (30) and 30 others (1 each); Jazz: 40 over 8 artists; Folk: 5.
    for k in range(60):
        rows.append(("rock", k, "big" if k < 30 else f"r{k}"))
    for k in range(40):
        rows.append(("jazz", k, f"j{k % 8}"))
    for k in range(5):
        rows.append(("folk", k, None))  # unknown artist: each its own
    out = [
        {"mbid": f"{g}-{k:03d}", "genre": g.capitalize(), "artist_mbid": a, "is_canonical": True, "status": "ok"}
        for g, k, a in rows
    ]
    out += [
        {"mbid": "amb-1", "genre": "ambiguous", "artist_mbid": "x", "is_canonical": True, "status": "ok"},
        {"mbid": "unl-1", "genre": "unlabelled", "artist_mbid": "x", "is_canonical": True, "status": "ok"},
        {"mbid": "dup-1", "genre": "Rock", "artist_mbid": "d", "is_canonical": False, "status": "ok"},
        {"mbid": "bad-1", "genre": "Rock", "artist_mbid": "e", "is_canonical": True, "status": "bad_image"},
    ]
    return pd.DataFrame(out)


def test_exact_counts_and_eligibility():
    result = select_balanced(catalog_rows(), ["Rock", "Jazz", "ambiguous"], per_genre=20, seed=0, artist_cap=3)
    sel = result.selected
    assert list(sel.columns) == ["mbid", "genre"]
    assert sel["genre"].value_counts().to_dict() == {"Rock": 20, "Jazz": 20}
    assert not sel["mbid"].isin(["amb-1", "unl-1", "dup-1", "bad-1"]).any()
    assert sel["mbid"].is_unique
    assert result.short_genres() == []
    assert result.table["genre"].tolist() == ["Rock", "Jazz"]


def test_artist_cap_respected_and_round_robin():
    rows = catalog_rows()
    result = select_balanced(rows, GENRES, per_genre=20, seed=1, artist_cap=3)
    artists = result.selected.merge(rows, on=["mbid", "genre"])["artist_mbid"]
    # Rock has 30 single-cover artists: round-robin takes their covers before a second one of "big".
    assert (artists == "big").sum() == 1
    per_artist = result.selected.merge(rows, on=["mbid", "genre"]).groupby(["genre", "artist_mbid"]).size()
    assert per_artist.max() <= 3
    # Jazz: 8 artists x cap 3 = 24 usable, 20 taken -> every artist has 2 or 3
    jazz = per_artist.loc["Jazz"]
    assert jazz.min() >= 2 and len(jazz) == 8


def test_shortfall_reported():
    result = select_balanced(catalog_rows(), GENRES, per_genre=30, seed=0, artist_cap=3)
    table = result.table.set_index("genre")
    assert table.loc["Folk"].to_dict() == {
        "covers": 5,
        "duplicates": 0,
        "below_confidence": 0,
        "eligible": 5,
        "over_cap": 0,
        "usable": 5,
        "selected": 5,
        "shortfall": 25,
    }
    assert table.loc["Jazz", "usable"] == 24 and table.loc["Jazz", "shortfall"] == 6
    assert table.loc["Jazz", "over_cap"] == 16
    # Rock: 61 ok covers, one a non-canonical duplicate; "big" holds 30, 27 of them over the cap
    assert table.loc["Rock", ["covers", "duplicates", "eligible", "over_cap", "usable"]].tolist() == [61, 1, 60, 27, 33]
    pd.testing.assert_frame_equal(
        usable_counts(catalog_rows(), GENRES, 3), result.table.drop(columns=["selected", "shortfall"])
    )
    assert short_genres(result.table) == ["Jazz", "Folk"] == result.short_genres()
    assert len(result.selected) == 30 + 24 + 5


def test_seeded_and_independent_of_row_order():
    rows = catalog_rows()
    a = select_balanced(rows, GENRES, per_genre=10, seed=7, artist_cap=2).selected
    b = select_balanced(rows.sample(frac=1, random_state=3), GENRES, per_genre=10, seed=7, artist_cap=2).selected
    c = select_balanced(rows, GENRES, per_genre=10, seed=8, artist_cap=2).selected
    pd.testing.assert_frame_equal(a, b)
    assert set(a["mbid"]) != set(c["mbid"])


def test_default_cap():
    assert default_artist_cap(40) == 2
    assert default_artist_cap(4000) == 40
    assert select_balanced(catalog_rows(), GENRES, per_genre=8, seed=0).artist_cap == 2
    with pytest.raises(ValueError):
        select_balanced(catalog_rows(), GENRES, per_genre=8, seed=0, artist_cap=0)


def with_confidence(rows: pd.DataFrame) -> pd.DataFrame:
    """Every cover gets a confidence: 1.0, 0.9, 0.7, 0.5 in turn, and every fifth Jazz cover none (unknown)."""
    levels = [1.0, 0.9, 0.7, 0.5]
    confidence = [levels[i % 4] for i in range(len(rows))]
    rows = rows.assign(label_confidence=confidence)
    jazz = rows.index[rows["genre"] == "Jazz"]
    rows.loc[jazz[::5], "label_confidence"] = None
    return rows


def test_min_confidence_excludes_low_and_unknown_confidence():
    rows = with_confidence(catalog_rows())
    result = select_balanced(rows, GENRES, per_genre=100, seed=0, artist_cap=100, min_confidence=0.8)
    chosen = result.selected.merge(rows, on=["mbid", "genre"])
    assert len(chosen) and (chosen["label_confidence"] >= 0.8).all()
    eligible = rows[rows["is_canonical"] & (rows["status"] == "ok") & rows["genre"].isin(GENRES)]
    strong = eligible[eligible["label_confidence"] >= 0.8]
    assert set(chosen["mbid"]) == set(strong["mbid"])  # cap and target high: everything that qualifies
    table = result.table.set_index("genre")
    for genre in GENRES:
        mine = eligible[eligible["genre"] == genre]
        assert table.loc[genre, "eligible"] == (mine["label_confidence"] >= 0.8).sum()
        assert result.below_confidence[genre] == len(mine) - table.loc[genre, "eligible"]
    assert result.below_confidence["Jazz"] > 0 and result.min_confidence == 0.8
    # A boundary value is eligible: the threshold is inclusive.
    exact = select_balanced(rows, GENRES, per_genre=100, seed=0, artist_cap=100, min_confidence=0.9).selected
    assert set(exact.merge(rows, on=["mbid", "genre"])["label_confidence"]) == {1.0, 0.9}


def test_min_confidence_zero_keeps_todays_selection():
    rows = with_confidence(catalog_rows())
    plain = select_balanced(catalog_rows(), GENRES, per_genre=10, seed=3, artist_cap=2)
    zero = select_balanced(rows, GENRES, per_genre=10, seed=3, artist_cap=2, min_confidence=0.0)
    pd.testing.assert_frame_equal(plain.selected, zero.selected)
    pd.testing.assert_frame_equal(plain.table, zero.table)
    assert zero.below_confidence == {g: 0 for g in GENRES}
    # Without a label_confidence column every confidence is unknown: nothing qualifies above 0.
    none = select_balanced(catalog_rows(), GENRES, per_genre=10, seed=3, min_confidence=0.5)
    assert none.selected.empty and none.table["eligible"].eq(0).all()


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_min_confidence_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="min_confidence"):
        select_balanced(catalog_rows(), GENRES, per_genre=8, seed=0, min_confidence=bad)
