"""The fetch plan's decisions (pure): usable covers, round quotas, the round's choice, the next tag."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from equigen.core.balance_rules import select_balanced
from equigen.core.dedup_rules import dedup_rows
from equigen.core.defaults import DEFAULT_THRESHOLD
from equigen.harvest.planning import (
    MIN_YIELD,
    Cursor,
    GenreProgress,
    RoundSelector,
    next_search,
    plan_round,
    subsumed,
    usable_by_genre,
    usable_table,
)

A1, A2, A3 = "artist-1", "artist-2", "artist-3"


def far_phash(sha) -> str | None:
    """A pHash per sha256: equal bytes, equal pHash; different bytes, hashes ~32 bits apart (never near)."""
    return None if sha is None else hashlib.blake2b(str(sha).encode(), digest_size=8).hexdigest()


def flip(phash: str, bits: int, shift: int = 0) -> str:
    """A near copy: `bits` bits of the pHash flipped, from bit `shift` up."""
    return f"{int(phash, 16) ^ (((1 << bits) - 1) << shift):016x}"


def rows(*items):
    """items: (mbid, genre, artist, status, sha, confidence, planned_round)"""
    frame = pd.DataFrame(
        items, columns=["mbid", "genre", "artist_mbid", "status", "sha256", "label_confidence", "planned_round"]
    )
    frame["seq"] = np.arange(1, len(frame) + 1)
    frame["phash"] = [far_phash(s) for s in frame["sha256"]]
    frame["width"] = frame["height"] = 64.0
    frame["first_release_date"] = None
    return frame


def test_usable_counts_ok_distinct_eligible_and_capped():
    frame = rows(
        ("m1", "Rock", A1, "ok", "s1", 1.0, 1),
        ("m2", "Rock", A1, "ok", "s2", 1.0, 1),
        ("m3", "Rock", A1, "ok", "s3", 1.0, 1),  # third cover of A1: over a cap of 2
        ("m4", "Rock", A2, "ok", "s1", 1.0, 1),  # same bytes as m1: not distinct
        ("m5", "Rock", A2, "no_art", None, 1.0, 1),
        ("m6", "Rock", None, "ok", "s6", 0.5, 1),  # its own artist; low confidence
        ("m7", "Jazz", A3, "ok", "s7", 1.0, 1),
        ("m8", "ambiguous", A3, "ok", "s8", 0.5, None),
    )
    assert usable_by_genre(frame, ["Rock", "Jazz"], artist_cap=2) == {"Rock": 3, "Jazz": 1}
    assert usable_by_genre(frame, ["Rock", "Jazz"], artist_cap=2, min_confidence=0.6) == {"Rock": 2, "Jazz": 1}
    assert usable_by_genre(frame, ["Rock"], artist_cap=5) == {"Rock": 4}
    with pytest.raises(ValueError, match="needs columns"):
        usable_by_genre(frame.drop(columns="sha256"), ["Rock"], 2)


def test_plan_round_uses_observed_yield_and_stops_when_done_or_exhausted():
    plan = plan_round(
        [
            GenreProgress("Rock", usable=0, tried=0, exhausted=False),  # nothing known: prior yield 1
            GenreProgress("Jazz", usable=39, tried=79, exhausted=False),  # yield 0.5 + 0.056, 61 short -> 110
            GenreProgress("Pop", usable=105, tried=110, exhausted=False),  # done
            GenreProgress("Folk", usable=10, tried=30, exhausted=True),  # short but spent
            GenreProgress("Punk", usable=0, tried=50, exhausted=False),  # yield ~0.04 -> the floor
        ],
        target=100,
    )
    assert plan == {"Rock": 100, "Jazz": 110, "Pop": 0, "Folk": 0, "Punk": math.ceil(100 / MIN_YIELD)}


def _cands(frame):
    return list(frame.itertuples(index=False))


def test_round_selector_takes_discovery_order_skips_full_artists_and_resumes_identically():
    frame = rows(
        ("m1", "Rock", A1, "ok", "s1", 1.0, 1),  # earlier round: A1 holds 1
        ("m2", "Rock", A1, "pending", None, 1.0, None),
        ("m3", "Rock", A1, "pending", None, 1.0, None),  # A1 would hold 3 > cap 2
        ("m4", "Rock", A2, "pending", None, 0.4, None),  # below min confidence
        ("m5", "Rock", A3, "pending", None, 1.0, None),
        ("m6", "Rock", A2, "pending", None, 1.0, None),
        ("m7", "Jazz", A2, "pending", None, 1.0, None),
    )
    selector = RoundSelector.start(frame, 2, {"Rock": 2, "Jazz": 0}, artist_cap=2, min_confidence=0.5)
    assert selector.choose() == ["m2", "m5"]
    assert not selector.short("Rock") and selector.untried("Rock") == 1  # m6 waits; m3's artist is full

    # A kill after m2 and m5 were marked: the resumed round rebuilds the same state and chooses nothing new.
    marked = frame.copy()
    marked.loc[marked.mbid.isin(["m2", "m5"]), "planned_round"] = 2
    marked.loc[marked.mbid == "m2", "status"] = "ok"
    again = RoundSelector.start(marked, 2, {"Rock": 2, "Jazz": 0}, artist_cap=2, min_confidence=0.5)
    assert again.choose() == [] and not again.short("Rock")

    # A bigger quota keeps going in order, and new candidates from later pages are appended.
    more = RoundSelector.start(marked, 2, {"Rock": 4, "Jazz": 0}, artist_cap=2, min_confidence=0.5)
    assert more.choose() == ["m6"]
    late = rows(*[("m9", "Rock", "artist-9", "pending", None, 1.0, None)])
    late["seq"] = 99
    more.add(_cands(late))
    assert more.choose() == ["m9"] and not more.short("Rock")


def test_subsumed_follows_tokenized_search():
    assert subsumed("death metal", ["metal"])
    assert subsumed("Melodic-Death Metal", ["death metal"])
    assert subsumed("hip-hop soul", ["hip hop"])
    assert not subsumed("metalcore", ["metal"])  # one word: the search for "metal" does not find it
    assert not subsumed("metal", ["death metal"])
    assert not subsumed("beat rock", ["beat music"])  # our key drops " music"; the search server does not
    assert not subsumed("rnb", ["r&b"])


def test_next_search_broad_first_then_started_by_count_then_most_seen():
    tags = ["metal", "heavy metal", "death metal", "grindcore", "djent", "metalcore"]
    broad = ["metal", "heavy metal"]
    assert next_search(tags, broad, {}, {}, []) == "metal"
    cursors = {"metal": Cursor(500, 500, True)}
    assert next_search(tags, broad, cursors, {}, ["metal"]) == "heavy metal"
    cursors["heavy metal"] = Cursor(40, 40, True)
    seen = {"djent": 2, "metalcore": 9, "grindcore": 1}
    # death metal is subsumed by the exhausted "metal" search: it waits; the most seen of the rest comes first
    assert next_search(tags, broad, cursors, seen, ["metal", "heavy metal"]) == "metalcore"
    cursors["grindcore"] = Cursor(100, 900, False)
    cursors["djent"] = Cursor(100, 300, False)
    assert next_search(tags, broad, cursors, seen, ["metal", "heavy metal"]) == "grindcore"  # largest count
    for t in ("grindcore", "djent", "metalcore"):
        cursors[t] = Cursor(1, 1, True)
    # subsumed last: one page shows the broad search covered it (a server matching tags exactly still gets it)
    assert next_search(tags, broad, cursors, seen, ["metal", "heavy metal"]) == "death metal"
    cursors["death metal"] = Cursor(100, 700, True)
    assert next_search(tags, broad, cursors, seen, ["metal", "heavy metal"]) is None


def test_a_resumed_round_counts_this_rounds_choices_as_when_they_were_made():
    """Killed mid-round and resumed: a cover chosen this round that downloaded as a duplicate of an earlier
    cover still holds its artist's slot, as it did when the uninterrupted round chose it (found by the
    1,000-per-genre rehearsal, where one such cover made the resumed dataset differ by two items)."""
    at_round_start = rows(
        ("m0", "Rock", A2, "ok", "s1", 1.0, 1),  # round 1, ok
        ("m1", "Rock", A1, "pending", None, 1.0, None),
        ("m2", "Rock", A1, "pending", None, 1.0, None),
    )
    uninterrupted = RoundSelector.start(at_round_start, 2, {"Rock": 5}, artist_cap=1)
    assert uninterrupted.choose() == ["m1"]  # m2: A1 is at the cap of 1
    # Killed after m1 was chosen and downloaded: its bytes turned out to equal m0's.
    after_kill = at_round_start.copy()
    after_kill.loc[1, ["status", "sha256", "planned_round"]] = ["ok", "s1", 2]
    resumed = RoundSelector.start(after_kill, 2, {"Rock": 5}, artist_cap=1)
    assert resumed.choose() == [] and resumed.chosen == {"Rock": 1}  # m2 stays out, as in the uninterrupted round


def test_usable_counts_near_duplicates_as_dedup_clusters_them():
    frame = rows(
        ("m1", "Rock", A1, "ok", "s1", 1.0, 1),
        ("m2", "Rock", A2, "ok", "s2", 1.0, 1),  # a near copy of m1 (4 bits): one cluster
        ("m3", "Rock", A3, "ok", "s3", 1.0, 1),  # 12 bits from m1: a cluster of its own at the default radius
        ("m4", "Jazz", "artist-4", "ok", "s4", 1.0, 1),
        ("m5", "Rock", "artist-5", "ok", "s5", 1.0, 1),  # a larger near copy of m4: canonical, Jazz loses m4
        ("m6", "Jazz", "artist-6", "ok", "s6", 1.0, 1),
        ("m7", "ambiguous", "artist-7", "ok", "s7", 0.5, None),  # a larger near copy of m6, of no genre
    )
    frame.loc[frame.mbid == "m2", "phash"] = flip(frame.phash[0], 4)
    frame.loc[frame.mbid == "m3", "phash"] = flip(frame.phash[0], 12, shift=32)
    frame.loc[frame.mbid == "m5", "phash"] = flip(frame.phash[3], 2)
    frame.loc[frame.mbid.isin(["m5", "m7"]), ["width", "height"]] = 500.0
    frame.loc[frame.mbid == "m7", "phash"] = frame.phash[5]
    assert usable_by_genre(frame, ["Rock", "Jazz"], artist_cap=2) == {"Rock": 3, "Jazz": 0}
    assert usable_by_genre(frame, ["Rock", "Jazz"], artist_cap=2, threshold=12) == {"Rock": 2, "Jazz": 0}
    table = usable_table(frame, ["Rock", "Jazz"], artist_cap=2).set_index("genre")
    assert table.loc["Rock", ["covers", "duplicates", "usable"]].tolist() == [4, 1, 3]
    assert table.loc["Jazz", ["covers", "duplicates", "usable"]].tolist() == [2, 2, 0]


@pytest.mark.parametrize("seed", range(3))
def test_fetch_count_and_balance_selection_agree_exactly(seed):
    """The count fetch plans with is what `dedup` + `balance` select from: planted exact and near duplicates
    (within and across genres and artists, some larger than their source), a prolific artist, low confidence."""
    rng = np.random.default_rng(seed)
    genres = ["Rock", "Jazz", "Folk"]
    items = []
    for k in range(120):
        genre = rng.choice([*genres, "ambiguous"], p=[0.4, 0.3, 0.2, 0.1])
        artist = "prolific" if rng.random() < 0.2 else (None if rng.random() < 0.1 else f"a{rng.integers(40)}")
        status = rng.choice(["ok", "no_art", "bad_image", "pending"], p=[0.7, 0.15, 0.05, 0.1])
        sha = f"s{k}" if status == "ok" else None
        items.append((f"m{k:03d}", genre, artist, status, sha, float(rng.choice([0.4, 0.7, 1.0])), 1))
    frame = rows(*items)
    ok = frame.index[frame.status == "ok"]
    for i in rng.choice(ok, 30, replace=False):  # copies: exact bytes, or 0-12 bits from another ok cover
        j = rng.choice(ok)
        if rng.random() < 0.2:
            frame.loc[i, ["sha256", "phash"]] = frame.loc[j, ["sha256", "phash"]].tolist()
        else:
            frame.loc[i, "phash"] = flip(frame.phash[j], int(rng.integers(0, 13)))
        frame.loc[i, ["width", "height"]] = float(rng.choice([32, 64, 128]))
    for cap, min_confidence in [(1, 0.0), (2, 0.0), (3, 0.6), (2, 0.8)]:
        counted = usable_by_genre(frame, genres, artist_cap=cap, min_confidence=min_confidence)
        clusters = dedup_rows(frame[frame.status == "ok"], DEFAULT_THRESHOLD)
        catalog = frame.merge(clusters, on="mbid", how="left")
        for genre, n in counted.items():
            # balance --per-genre n succeeds there, and n + 1 falls short by exactly one
            exact = select_balanced(catalog, [genre], n, seed=seed, artist_cap=cap, min_confidence=min_confidence)
            assert exact.short_genres() == [] and len(exact.selected) == n
            over = select_balanced(catalog, [genre], n + 1, seed=seed, artist_cap=cap, min_confidence=min_confidence)
            assert over.table["shortfall"].tolist() == [1]
        assert sum(counted.values()) > 0


def test_round_selector_gives_no_slot_to_a_near_duplicate():
    frame = rows(
        ("m1", "Rock", A1, "ok", "s1", 1.0, 1),
        ("m2", "Rock", A1, "ok", "s2", 1.0, 1),  # a near copy of m1 (a reissue): holds no slot of A1
        ("m3", "Rock", A1, "pending", None, 1.0, None),
        ("m4", "Rock", A1, "pending", None, 1.0, None),
    )
    frame.loc[frame.mbid == "m2", "phash"] = flip(frame.phash[0], 6)
    assert RoundSelector.start(frame, 2, {"Rock": 5}, artist_cap=2).choose() == ["m3"]
    assert RoundSelector.start(frame, 2, {"Rock": 5}, artist_cap=2, threshold=4).choose() == []
