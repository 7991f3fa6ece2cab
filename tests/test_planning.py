"""The fetch plan's decisions (pure): usable covers, round quotas, the round's choice, the next tag."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from equigen.planning import (
    MIN_YIELD,
    Cursor,
    GenreProgress,
    RoundSelector,
    next_search,
    plan_round,
    subsumed,
    usable_by_genre,
)

A1, A2, A3 = "artist-1", "artist-2", "artist-3"


def rows(*items):
    """items: (mbid, genre, artist, status, sha, confidence, planned_round)"""
    frame = pd.DataFrame(
        items, columns=["mbid", "genre", "artist_mbid", "status", "sha256", "label_confidence", "planned_round"]
    )
    frame["seq"] = np.arange(1, len(frame) + 1)
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
