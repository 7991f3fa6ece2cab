"""Real MusicBrainz ws/2 JSON answers (tests/fixtures/musicbrainz/, sources in SOURCES.md).

Every release group in them must parse, and the labels the README promises are checked on the
tags exactly as MusicBrainz sent them: no tag list in this file is typed in by hand.
"""

from __future__ import annotations

import csv
import json
import re
from functools import cache
from pathlib import Path

import pytest

from equigen.core.taxonomy import AMBIGUOUS, NO_GENRE, UNLABELLED, load_taxonomy
from equigen.harvest.musicbrainz import parse_release_group

FIXTURES = Path(__file__).parent / "fixtures" / "musicbrainz"
FILES = sorted(FIXTURES.glob("*.json"))
MBID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@cache
def _taxonomy():
    return load_taxonomy()


def _parse(raw: dict):
    """One raw ws/2 release group -> ReleaseGroup, labelled by the shipped taxonomy."""
    return parse_release_group(raw, _taxonomy().label)


@cache
def _load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _release_groups(doc) -> list[dict]:
    """Every release group in a ws/2 answer: items of `release-groups` (search, browse, artist
    lookups), the `release-group` of a release, or the answer itself when it is a lookup."""
    found: list[dict] = []

    def visit(node, key):
        if isinstance(node, dict):
            if key in ("release-groups", "release-group") and "id" in node and "title" in node:
                found.append(node)
            for k, v in node.items():
                visit(v, k)
        elif isinstance(node, list):
            for item in node:
                visit(item, key)

    if isinstance(doc, dict) and "id" in doc and "title" in doc and "primary-type" in doc:
        found.append(doc)  # a release-group lookup (releases carry no primary-type)
    visit(doc, None)
    return found


def _raw_tags(raw: dict) -> list[tuple[str, int]]:
    """The tags of a raw release group as they are in the fixture (name, count)."""
    return [(t["name"], t["count"]) for t in raw.get("tags") or []]


def _all_groups() -> list[tuple[str, dict]]:
    return [(path.name, raw) for path in FILES for raw in _release_groups(_load(path.name))]


def _find(title: str, artist: str) -> dict:
    hits = [
        raw
        for _, raw in _all_groups()
        if raw["title"] == title and any(c.get("name") == artist for c in raw.get("artist-credit") or [])
    ]
    assert hits, f"no release group {title!r} by {artist!r} in the fixtures"
    return hits[0]


# --- the fixtures themselves --------------------------------------------------------------------


def test_fixtures_are_present_and_documented():
    assert len(FILES) >= 4
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    for path in FILES:
        assert f"`{path.name}`" in sources, f"{path.name} has no entry in SOURCES.md"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fixture_is_a_ws2_answer(path):
    doc = _load(path.name)
    assert isinstance(doc, dict)
    lists = [k for k in ("release-groups", "releases") if isinstance(doc.get(k), list)]
    if lists:  # a search answer: created / count / offset and the items
        assert {"created", "count", "offset"} <= doc.keys()
        assert isinstance(doc["count"], int) and isinstance(doc["offset"], int)
        assert doc["count"] >= len(doc[lists[0]]) > 0
    else:  # a lookup
        assert MBID.match(doc["id"])
    assert _release_groups(doc), f"{path.name} holds no release group"


def test_search_answers_yield_every_listed_release_group():
    for path in FILES:
        doc = _load(path.name)
        if isinstance(doc.get("release-groups"), list):
            assert len(_release_groups(doc)) == len(doc["release-groups"])
        if isinstance(doc.get("releases"), list):  # a release search: one release group per release
            assert len(_release_groups(doc)) == sum(1 for r in doc["releases"] if "release-group" in r)


def test_enough_real_release_groups_with_tags():
    groups = _all_groups()
    tagged = [raw for _, raw in groups if raw.get("tags")]
    assert len(groups) >= 100
    assert len(tagged) >= 30
    assert any(count < 0 for raw in tagged for _, count in _raw_tags(raw)), "real answers carry downvoted tags"


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_real_release_group_parses(path):
    tax = _taxonomy()
    for raw in _release_groups(_load(path.name)):
        group = _parse(raw)
        assert MBID.match(group.mbid) and group.mbid == raw["id"]
        if group.artist_mbid is not None:
            assert MBID.match(group.artist_mbid)
        assert group.title == raw["title"]
        assert group.primary_type == raw.get("primary-type")
        assert group.secondary_types == tuple(raw.get("secondary-types") or ())
        assert all(isinstance(n, str) and isinstance(c, int) and not isinstance(c, bool) for n, c in group.tags)
        assert [(n, c) for n, c in group.tags] == [(n.strip().lower(), c) for n, c in _raw_tags(raw)]
        assert group.genre in tax.genres or group.genre in (AMBIGUOUS, UNLABELLED)
        assert group.genre == tax.label(_raw_tags(raw)).genre


def test_untagged_release_groups_are_unlabelled():
    untagged = [raw for _, raw in _all_groups() if not raw.get("tags")]
    assert untagged
    for raw in untagged:
        assert _parse(raw).genre == UNLABELLED


# --- the labels the README promises, on real tags -----------------------------------------------


def test_portishead_dummy_is_electronic():
    raw = _find("Dummy", "Portishead")
    assert raw["id"] == "48140466-cff6-3222-bd55-63c27e43190d"
    assert ("trip hop", 19) in _raw_tags(raw)
    tax = _taxonomy()
    assert tax.label(_raw_tags(raw)).genre == "Electronic"
    # ... because of its most voted tag, not only by the few "electronic" votes beside it.
    top_name, _ = max(_raw_tags(raw), key=lambda tag: tag[1])
    assert tax.genre_of_tag(top_name) == "Electronic", top_name


def test_fleetwood_mac_rumours_live_is_rock():
    raw = _find("Rumours Live", "Fleetwood Mac")
    assert raw["id"] == "b155f9f9-3dd1-4440-a1b2-62a7b1f0318f"
    assert sorted(_raw_tags(raw)) == sorted(
        [("blues rock", 3), ("soft rock", 2), ("pop rock", 2), ("rock", 1), ("pop", 1)]
    )
    assert _taxonomy().label(_raw_tags(raw)).genre == "Rock"


def test_black_viking_folk_metal_album_is_metal():
    raw = _find("Strange Rumours... Distant Tremors", "KromleK")
    names = {name for name, _ in _raw_tags(raw)}
    assert {"black metal", "viking metal", "folk metal", "rock"} <= names
    assert _taxonomy().label(_raw_tags(raw)).genre == "Metal"


# --- genre tags vs everything else ----------------------------------------------------------------

# Tags in these fixtures that are not genres: dates, places, languages, chart and list names.
NOT_GENRES = (
    "english",
    "british",
    "uk",
    "1977",
    "1994",
    "seen live",
    "grammy winner",
    "offizielle charts",
    "5+ wochen",
    "should be public domain",
    "misc",
    "discogs/the most popular album released every year from 1950 to 2020",
)


def _tag_votes() -> dict[str, int]:
    """Positive votes per tag name over every release group of every fixture."""
    votes: dict[str, int] = {}
    for _, raw in _all_groups():
        for name, count in _raw_tags(raw):
            votes[name.lower()] = votes.get(name.lower(), 0) + max(count, 0)
    return votes


def test_non_genre_tags_weigh_nothing():
    tax = _taxonomy()
    votes = _tag_votes()
    present = [name for name in NOT_GENRES if name in votes]
    assert len(present) >= 8, present  # only those really in the fixtures are checked
    for name in present:
        assert tax.genre_of_tag(name) is None, f"{name!r} must not count for a genre"
        assert tax.label([(name, 10)]).genre == UNLABELLED


def test_most_real_tag_votes_are_recognised_genres():
    tax = _taxonomy()
    votes = _tag_votes()
    recognised = sum(v for name, v in votes.items() if tax.genre_of_tag(name) is not None)
    ignored = sum(v for name, v in votes.items() if tax.genre_of_tag(name) is None)
    assert recognised + ignored == sum(votes.values()) > 0
    # Real MusicBrainz votes go mostly to genre names; the rest are moods, places and dates.
    assert recognised >= 0.6 * (recognised + ignored), (recognised, ignored)
    # The names voted for most in these answers are genres of the taxonomy.
    for name in ("rock", "electronic", "soft rock", "disco", "funk", "pop rock"):
        assert name in votes and tax.genre_of_tag(name) is not None, name


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
EXPERT = Path(__file__).resolve().parent / "fixtures" / "labels" / "real_release_groups_expert.tsv"


def test_real_release_groups_come_out_as_an_expert_files_them():
    """259 real release groups (../shared/reference, tags from public client test data) labelled by hand as an expert
    would file each album (tests/fixtures/labels/): of those the taxonomy labels, at least 88 % agree (measured 204 of
    227 for the refined rule of issue 20, and 205 of 228 before it); the rest are Dylan, Tom Waits and early Fleetwood
    Mac albums whose tags mix rock with folk, blues and jazz."""
    if not (REFERENCE / "real_release_groups_223.jsonl").is_file():
        pytest.skip(f"no reference release groups at {REFERENCE}")
    expert = {(r["file"], int(r["line"])): r["expert_genre"] for r in csv.DictReader(EXPERT.open(), delimiter="\t")}
    assert len(expert) == 259 and set(expert.values()) <= set(_taxonomy().genres) | {"none"}
    agree = labelled = 0
    for name in ("real_release_groups_36.jsonl", "real_release_groups_223.jsonl"):
        for i, line in enumerate((REFERENCE / name).read_text(encoding="utf-8").splitlines(), 1):
            group = json.loads(line)["release_group"]
            genre = _taxonomy().label([(t["name"], t.get("count", 0)) for t in group.get("tags", [])]).genre
            if genre not in NO_GENRE:
                labelled += 1
                agree += genre == expert[(name, i)]
    assert labelled >= 220 and agree / labelled >= 0.88, (agree, labelled)
