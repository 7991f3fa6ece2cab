"""The MusicBrainz + Cover Art Archive simulator, exercised over real sockets."""

from __future__ import annotations

import dataclasses
import http.client
import io
import itertools
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import imagehash
import pytest
import requests
from PIL import Image

from equigen.core.defaults import DEFAULT_THRESHOLD
from equigen.core.errors import EquigenError
from equigen.core.mbids import VARIOUS_ARTISTS, is_mbid
from equigen.core.search_analysis import mb_tokens, phrase_in
from equigen.core.taxonomy import normalize_tag
from equigen.simulator import BROKEN_KINDS, SimConfig, World, WorldConfig, simulator_in_thread
from equigen.simulator.server import parse_query
from equigen.simulator.world import musicbrainz_genre_keys

UA = {"User-Agent": "equigen-tests/0.1 ( tests@example.org )"}
SEED = 3


@pytest.fixture(scope="module")
def sim():
    """A small world without the rate limit, for shape and paging tests."""
    with simulator_in_thread(WorldConfig.small(SEED), SimConfig(rate_limit=0)) as handle:
        yield handle


def search(handle, query: str, **params) -> requests.Response:
    return requests.get(
        f"{handle.url}/ws/2/release-group", headers=UA, params={"query": query, "fmt": "json", **params}, timeout=10
    )


def expected(world: World, query: str) -> set[str]:
    predicate = parse_query(query)
    return {rg.mbid for rg in world.release_groups if predicate(rg)}


def usable(world: World):
    return [rg for rg in world.release_groups if rg.art == "ok" and not rg.flaky]


@pytest.fixture(scope="module")
def default_world():
    return World.build(WorldConfig())


def has_token(tag: str, token: str) -> bool:
    return token in mb_tokens(tag)


# ---- MusicBrainz ----------------------------------------------------------------------------------


def test_search_json_shape(sim):
    body = search(sim, 'tag:"rock" AND primarytype:album', limit=100).json()
    assert body["created"].endswith("Z") and body["offset"] == 0
    groups = body["release-groups"]
    assert 0 < len(groups) == min(body["count"], 100)
    assert body["count"] == len(expected(sim.world, 'tag:"rock" AND primarytype:album'))
    for rg in groups:
        assert is_mbid(rg["id"]) and rg["primary-type"] == "Album" and rg["score"] == 100
        assert any(has_token(t["name"], "rock") for t in rg["tags"])  # "rock", "Hard-Rock", "post-rock", ...
        assert all(isinstance(t["count"], int) for t in rg["tags"])
        credit = rg["artist-credit"][0]
        assert is_mbid(credit["artist"]["id"]) and credit["artist"]["sort-name"]
        assert is_mbid(rg["releases"][0]["id"])
        if "secondary-types" in rg:  # omitted when empty, like the real service
            assert rg["secondary-types"] and len(rg["secondary-type-ids"]) == len(rg["secondary-types"])
    assert any("secondary-types" not in rg for rg in groups)
    untagged = [rg for rg in sim.world.release_groups if not rg.tags and rg.primary_type == "Album"]
    shown = search(sim, f"rgid:{untagged[0].mbid}").json()["release-groups"][0]
    assert "tags" not in shown and shown["id"] == untagged[0].mbid


def test_search_paging_is_stable_and_complete(sim):
    query = "tag:rock AND primarytype:album AND NOT secondarytype:compilation"
    want = expected(sim.world, query)
    assert len(want) > 20
    seen, counts, offset = [], set(), 0
    while True:
        body = search(sim, query, limit=7, offset=offset).json()
        counts.add(body["count"])
        assert body["offset"] == offset
        if not body["release-groups"]:
            break
        seen += [rg["id"] for rg in body["release-groups"]]
        offset += 7
    assert counts == {len(want)}
    assert len(seen) == len(set(seen)) and set(seen) == want
    for rg in sim.world.release_groups:
        if rg.mbid in want:
            assert "Compilation" not in rg.secondary_types and any(has_token(t, "rock") for t, _ in rg.tags)


def test_search_query_forms_and_limits(sim):
    lower = search(sim, "TAG:Rock and PRIMARYTYPE:album").json()["count"]
    assert lower == search(sim, 'tag:"rock" AND primarytype:"Album"').json()["count"] > 0
    assert search(sim, "primarytype:album", limit=500).json()["release-groups"].__len__() == 100
    assert len(search(sim, "primarytype:album").json()["release-groups"]) == 25  # the default limit
    for bad in ('tag:"rock', "nosuchfield:x", "tag:rock AND", "(tag:rock"):
        response = search(sim, bad)
        assert response.status_code == 400 and "error" in response.json(), bad
    assert search(sim, "tag:rock", limit="ten").status_code == 400


def test_lookup(sim):
    rg = next(r for r in sim.world.release_groups if r.tags)
    url = f"{sim.url}/ws/2/release-group/{rg.mbid}"
    body = requests.get(url, params={"inc": "artist-credits tags", "fmt": "json"}, headers=UA, timeout=10).json()
    assert body["id"] == rg.mbid and body["title"] == rg.title
    assert [(t["name"], t["count"]) for t in body["tags"]] == list(rg.tags)
    assert body["artist-credit"][0]["artist"]["id"] == rg.artist.mbid
    assert isinstance(body["secondary-types"], list)  # the lookup always has the list
    bare = requests.get(url, params={"fmt": "json"}, headers=UA, timeout=10).json()
    assert "tags" not in bare and "artist-credit" not in bare
    invalid = requests.get(f"{sim.url}/ws/2/release-group/not-a-uuid", params={"fmt": "json"}, headers=UA, timeout=10)
    assert invalid.status_code == 400
    unknown = requests.get(
        f"{sim.url}/ws/2/release-group/{'0' * 8}-0000-4000-8000-{'0' * 12}",
        params={"fmt": "json"},
        headers=UA,
        timeout=10,
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    "agent", [None, "", "python-requests/2.31", "Python/3.11 aiohttp/3.9", "aiohttp/3.9", "python-urllib3/2.2"]
)
def test_generic_user_agent_is_forbidden(sim, agent):
    host, port = sim.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)  # sends no User-Agent unless given
    conn.request(
        "GET",
        "/ws/2/release-group?query=tag%3Arock&fmt=json",
        headers={"User-Agent": agent} if agent is not None else {},
    )
    response = conn.getresponse()
    assert response.status == 403 and "error" in json.loads(response.read())
    conn.close()


def test_rate_limit_one_per_second():
    with simulator_in_thread(WorldConfig.small(SEED, n_artists=60, min_artists_per_genre=2)) as handle:
        assert search(handle, "tag:rock").status_code == 200
        rejected = search(handle, "tag:rock")
        assert rejected.status_code == 503 and rejected.headers["Retry-After"] == "1" and "error" in rejected.json()
        other = requests.get(
            f"{handle.url}/ws/2/release-group",
            params={"query": "tag:rock", "fmt": "json"},
            headers={"User-Agent": "another-client/1.0 ( x@example.org )"},
            timeout=10,
        )
        assert other.status_code == 200  # the limit is per client
        time.sleep(0.6)
        assert search(handle, "tag:rock").status_code == 503  # still inside the window of the first
        time.sleep(0.45)  # rejections did not use up the allowance: 1.05 s after the first is fine
        assert search(handle, "tag:rock").status_code == 200
        statuses = [e.status for e in handle.musicbrainz_log() if e.user_agent == UA["User-Agent"]]
        assert statuses == [200, 503, 503, 200]
    with simulator_in_thread(
        WorldConfig.small(SEED, n_artists=60, min_artists_per_genre=2),
        SimConfig(rate_limit=0, mb_error_rate=1.0, retry_after=False),
    ) as handle:
        response = search(handle, "tag:rock")
        assert response.status_code == 503 and "Retry-After" not in response.headers


def test_bad_mbid_knob():
    with simulator_in_thread(
        WorldConfig.small(SEED, n_artists=60, min_artists_per_genre=2), SimConfig(rate_limit=0, bad_mbid=True)
    ) as handle:
        first = search(handle, "tag:rock", limit=5).json()
        ids = [rg["id"] for rg in first["release-groups"]]
        assert ids[0] == "../../etc/passwd" and all(is_mbid(i) for i in ids[1:])
        assert first["count"] == len(expected(handle.world, "tag:rock")) + 1
        later = [rg["id"] for rg in search(handle, "tag:rock", limit=100, offset=5).json()["release-groups"]]
        assert all(is_mbid(i) for i in later)
        assert set(ids[1:] + later) == expected(handle.world, "tag:rock")  # paging past it loses nothing


# ---- tokenized tag search ---------------------------------------------------------------------------


def tagged(*names: str) -> SimpleNamespace:
    return SimpleNamespace(tags=tuple((n, 1) for n in names))


@pytest.mark.parametrize(
    "query, tags, hit",
    [
        ('tag:"metal"', ["death metal"], True),
        ('tag:"metal"', ["Heavy-Metal"], True),
        ('tag:"metal"', ["metalcore"], False),  # tokens, not substrings
        ('tag:"death metal"', ["melodic death metal"], True),
        ('tag:"death metal"', ["metal"], False),
        ('tag:"death metal"', ["death", "metal"], False),  # a phrase never spans two tags
        ('tag:"death metal"', ["metal death"], False),
        ('tag:"hip hop"', ["hip-hop"], True),
        ('tag:"hip hop"', ["Hip Hop"], True),
        ('tag:"hip-hop"', ["hip hop"], True),
        ('tag:"hip hop"', ["hiphop"], False),
        ('tag:"r&b"', ["R&B"], True),
        ('tag:"r&b"', ["contemporary r&b"], True),
        ('tag:"r&b"', ["rnb"], False),  # "&" becomes "and" before tokenizing: "randb"
        ('tag:"r&b"', ["r and b"], False),
        ('tag:"drum and bass"', ["drum & bass"], True),
        ('tag:"rock"', ["rock 'n' roll"], True),
        ('tag:"rock and roll"', ["rock 'n' roll"], False),
        ('tag:"electronique"', ["Électronique"], True),
        ("tag:rock", ["post-rock"], True),  # unquoted: the same analysis
        ('tag:"rock" AND NOT tag:"pop"', ["pop rock"], False),
    ],
)
def test_tag_search_is_tokenized_like_musicbrainz(query, tags, hit):
    assert parse_query(query)(tagged(*tags)) is hit


def test_tag_search_over_http_finds_subgenres(sim):
    world = sim.world
    broad = {rg.mbid for rg in world.release_groups if any(has_token(t, "metal") for t, _ in rg.tags)}
    exact = {rg.mbid for rg in world.release_groups if any(t == "metal" for t, _ in rg.tags)}
    assert len(broad) > len(exact) > 0
    assert search(sim, 'tag:"metal"').json()["count"] == len(broad)
    assert search(sim, 'tag:"METAL"').json()["count"] == len(broad)
    narrow = {
        rg.mbid for rg in world.release_groups if any(phrase_in(("death", "metal"), mb_tokens(t)) for t, _ in rg.tags)
    }
    assert 0 < search(sim, 'tag:"death metal"').json()["count"] == len(narrow) < len(broad)


# ---- Cover Art Archive ----------------------------------------------------------------------------


def test_cover_redirect_chain(sim):
    rg = usable(sim.world)[0]
    first = requests.get(f"{sim.url}/release-group/{rg.mbid}/front-500", allow_redirects=False, timeout=10)
    assert first.status_code == 307
    assert re.fullmatch(
        rf"{sim.url}/download/mbid-{rg.release_mbid}/mbid-{rg.release_mbid}-\d+_thumb500\.jpg",
        first.headers["Location"],
    )
    second = requests.get(first.headers["Location"], allow_redirects=False, timeout=10)
    assert second.status_code == 302
    assert re.fullmatch(
        rf"{sim.url}/ia/\d+/items/mbid-{rg.release_mbid}/mbid-{rg.release_mbid}-\d+_thumb500\.jpg",
        second.headers["Location"],
    )
    assert second.headers["Location"] == sim.world.image_url(sim.url, rg.mbid, 500)
    final = requests.get(second.headers["Location"], timeout=10)
    assert final.status_code == 200 and final.headers["Content-Type"] == "image/jpeg"
    assert int(final.headers["Content-Length"]) == len(final.content)
    assert final.content == sim.world.cover_bytes(rg.mbid, 500)
    assert Image.open(io.BytesIO(final.content)).size == (64, 64)  # cover_px of the small world
    full = requests.get(f"{sim.url}/release-group/{rg.mbid}/front", allow_redirects=False, timeout=10)
    assert full.headers["Location"].endswith(f"-{rg.image_id}.jpg")
    index = requests.get(f"{sim.url}/release-group/{rg.mbid}", timeout=10).json()
    image = index["images"][0]
    assert image["front"] and image["types"] == ["Front"] and set(image["thumbnails"]) >= {"250", "500", "1200"}
    assert requests.get(image["thumbnails"]["250"], timeout=10).content == sim.world.cover_bytes(rg.mbid, 250)


def test_cover_errors(sim):
    no_art = next(rg for rg in sim.world.release_groups if rg.art == "none")
    for path in (f"/release-group/{no_art.mbid}/front-500", f"/release-group/{no_art.mbid}"):
        response = requests.get(sim.url + path, timeout=10)
        assert response.status_code == 404 and "image" not in response.headers["Content-Type"]
    unknown = f"{'1' * 8}-1111-4111-8111-{'1' * 12}"
    assert requests.get(f"{sim.url}/release-group/{unknown}/front-250", timeout=10).status_code == 404
    assert requests.get(f"{sim.url}/release-group/not-an-mbid/front-250", timeout=10).status_code == 400
    upper = sim.world.release_groups[0].mbid.upper()  # MBIDs are lower case
    assert requests.get(f"{sim.url}/release-group/{upper}/front-250", timeout=10).status_code == 400


def test_faithful_sizes_without_cover_px():
    world = World.build(WorldConfig.small(SEED, cover_px=None))
    rg = usable(world)[0]
    for size in (250, 500, 1200):
        assert Image.open(io.BytesIO(world.cover_bytes(rg.mbid, size))).size == (size, size)


def test_broken_covers_are_served_as_specified(sim):
    world = sim.world
    first = {kind: next(rg for rg in world.release_groups if rg.art == kind) for kind in BROKEN_KINDS}
    for rg in first.values():
        assert rg.findable and rg.genre in world.taxonomy.tags  # a harvesting client will meet them

    def fetch(kind: str, **kw) -> requests.Response:
        return requests.get(f"{sim.url}/release-group/{first[kind].mbid}/front-500", timeout=30, **kw)

    truncated = fetch("truncated")
    assert truncated.status_code == 200 and truncated.content[:2] == b"\xff\xd8"
    with pytest.raises(OSError):
        Image.open(io.BytesIO(truncated.content)).load()
    html = fetch("html")
    assert html.headers["Content-Type"] == "image/jpeg" and html.content.lstrip().lower().startswith(b"<!doctype html")
    bomb = fetch("bomb")
    assert bomb.content[:8] == b"\x89PNG\r\n\x1a\n" and len(bomb.content) < 100_000
    assert struct.unpack(">II", bomb.content[16:24]) == (30000, 30000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb.content))
    tiny = fetch("tiny")
    assert Image.open(io.BytesIO(tiny.content)).size == (16, 16)
    with fetch("oversize", stream=True) as oversize:
        assert int(oversize.headers["Content-Length"]) > 10_000_000
        received = sum(len(chunk) for chunk in oversize.iter_content(1 << 20))
    assert received == world.config.oversize_bytes


def test_flaky_fails_exactly_n_times_then_succeeds():
    def attempts(handle, rg) -> list[int]:
        url = handle.world.image_url(handle.url, rg.mbid, 250)
        out = []
        for _ in range(5):
            try:
                out.append(requests.get(url, timeout=10).status_code)
            except requests.ConnectionError:
                out.append(0)  # dropped on purpose
        return out

    config = WorldConfig.small(SEED)
    runs = []
    for failures in (2, 2, 3):
        with simulator_in_thread(config, SimConfig(flaky_failures=failures)) as handle:
            flaky = [rg for rg in handle.world.release_groups if rg.flaky][:6]
            runs.append([attempts(handle, rg) for rg in flaky])
            assert all(e.status == 0 for e in handle.log if e.status not in (200, 500, 502, 503))
    for failures, run in zip((2, 2, 3), runs):
        for seq in run:
            assert all(s != 200 for s in seq[:failures]) and seq[failures:] == [200] * (5 - failures), seq
    assert runs[0] == runs[1]  # deterministic across fresh simulators
    assert 0 in itertools.chain.from_iterable(itertools.chain.from_iterable(runs))  # some drops happen


def test_planted_redirect_faults():
    with simulator_in_thread(WorldConfig.small(SEED), SimConfig(bad_redirect=True, redirect_loop=True)) as handle:
        bad = requests.get(
            f"{handle.url}/release-group/{handle.planted['bad_redirect']}/front-500", allow_redirects=False, timeout=10
        )
        assert bad.status_code == 307 and bad.headers["Location"].startswith("ftp://")
        with pytest.raises(requests.TooManyRedirects):
            requests.get(f"{handle.url}/release-group/{handle.planted['redirect_loop']}/front-500", timeout=10)
        truth = requests.get(f"{handle.url}/__sim__/truth", timeout=10).json()
        assert truth["planted"] == handle.planted


# ---- the world ------------------------------------------------------------------------------------


def test_world_is_deterministic():
    a, b = World.build(WorldConfig.small(7)), World.build(WorldConfig.small(7))
    assert a.release_groups == b.release_groups
    sample = [rg.mbid for rg in a.release_groups if rg.art != "none"][:40]
    assert all(a.cover_bytes(m, 250) == b.cover_bytes(m, 250) for m in sample)
    assert a.coverage == b.coverage and a.noise_tags == b.noise_tags and a.truth() == b.truth()
    c = World.build(WorldConfig.small(8))
    assert {rg.mbid for rg in a.release_groups}.isdisjoint(rg.mbid for rg in c.release_groups)


def test_world_contents():
    world = World.build(WorldConfig.small(SEED))
    rgs = world.release_groups
    assert all(is_mbid(rg.mbid) and is_mbid(rg.release_mbid) and is_mbid(rg.artist.mbid) for rg in rgs)
    various = [rg for rg in rgs if rg.artist.mbid == VARIOUS_ARTISTS]
    assert various and any(rg.secondary_types == ("Compilation",) for rg in various)
    assert any(rg.secondary_types == () for rg in various)
    labels = {rg.genre for rg in rgs}
    assert set(world.taxonomy.genres) <= labels and {"ambiguous", "unlabelled"} <= labels
    assert 0.02 < sum(not rg.tags for rg in rgs) / len(rgs) < 0.09
    assert 0.2 < sum(rg.art == "none" for rg in rgs) / len(rgs) < 0.4  # coverage 45-90 % by genre
    assert {"Album", "EP", "Single"} == {rg.primary_type for rg in rgs}
    dates = {len(rg.first_release_date or "") for rg in rgs}
    assert dates == {0, 4, 7, 10}
    counts = sorted(sum(rg.artist is a for rg in rgs) for a in world.artists[:-1])
    assert counts[0] == 1 and counts[-1] >= 8  # long-tailed


def test_planted_duplicates_are_close_and_distinct_covers_far():
    world = World.build(WorldConfig.small(SEED, cover_px=None))

    def phash(mbid: str):
        return imagehash.phash(Image.open(io.BytesIO(world.cover_bytes(mbid, 250))))

    duplicates = world.truth()["duplicates"]
    distances: dict[str, list[int]] = {}
    for pair in duplicates:
        distances.setdefault(pair["transform"], []).append(phash(pair["mbid"]) - phash(pair["source_mbid"]))
    assert set(distances) == {"reencode", "resize", "border", "brightness"}
    assert any(p["same_artist"] for p in duplicates) and any(not p["same_artist"] for p in duplicates)
    print({k: (max(v), round(sum(v) / len(v), 1)) for k, v in distances.items()})
    for transform in ("reencode", "resize", "brightness"):
        assert max(distances[transform]) <= 10, (transform, distances[transform])
    assert max(distances["border"]) <= 16, distances["border"]
    involved = {p["mbid"] for p in duplicates} | {p["source_mbid"] for p in duplicates}
    sample = [rg.mbid for rg in world.release_groups if rg.art == "ok" and rg.mbid not in involved][:150]
    hashes = [phash(m) for m in sample]
    closest = min(a - b for a, b in itertools.combinations(hashes, 2))
    assert closest > DEFAULT_THRESHOLD + 1, closest  # distinct covers stay clear of dedup's threshold


def test_default_world_is_big_enough_for_per_genre_40(default_world):
    world = default_world
    truth = world.truth()
    assert truth["various_artists_mbid"] == VARIOUS_ARTISTS
    assert set(truth["genres"]) == set(world.taxonomy.genres)
    for genre, row in truth["genres"].items():
        assert row["usable_capped"] >= 40 and row["artists"] >= 30, (genre, row)
        assert row["usable"] >= 90, (genre, row)
        assert row["total"] == row["no_art"] + sum(row["broken"].values()) + row["duplicates"] + row["usable"]
    sizes = sorted(row["total"] for row in truth["genres"].values())
    assert sizes[-1] > 3 * sizes[0]  # uneven genre popularity
    assert all(len(truth["broken"][kind]) >= 1 for kind in BROKEN_KINDS)
    assert truth["findable_ambiguous"] > 0 and truth["findable_unlabelled"] > 0
    assert len(truth["duplicates"]) > 100 and len(truth["flaky"]) > 100


# ---- tags, coverage and thin genres ---------------------------------------------------------------


def canonical(tax, tag: str) -> str:
    """The taxonomy name a (possibly variant) tag stands for, normalized."""
    key = normalize_tag(tag)
    return tax.aliases.get(key, key)


def test_every_tag_is_a_taxonomy_name_a_variant_or_noise(default_world):
    world, tax = default_world, default_world.taxonomy
    names = {normalize_tag(n) for g in tax.genres for n in tax.tags[g]}
    unmapped = {normalize_tag(n) for n in tax.unmapped}
    mb_genres = musicbrainz_genre_keys()
    noise = set(world.noise_tags)
    assert noise and all(tax.genre_of_tag(n) is None and normalize_tag(n) not in mb_genres for n in noise)
    kinds = Counter()
    for rg in world.release_groups:
        assert rg.genre == tax.resolve(rg.tags)  # the label a client computes from the same tags
        for tag, votes in rg.tags:
            assert isinstance(votes, int) and votes >= 1
            if tax.genre_of_tag(tag) is not None:
                assert canonical(tax, tag) in names
                kinds["genre"] += 1
            elif tag in noise:
                kinds["noise"] += 1
            else:
                assert normalize_tag(tag) in unmapped, tag
                kinds["unmapped"] += 1
    assert kinds["genre"] > 2 * kinds["noise"] > 0
    assert {"1994", "seen live"} & noise


def test_tags_follow_zipf_with_broad_names_first(default_world):
    world, tax = default_world, default_world.taxonomy
    for genre in tax.genres:
        counts = Counter(
            canonical(tax, t)
            for rg in world.release_groups
            if rg.genre == genre
            for t, _ in rg.tags
            if tax.genre_of_tag(t) == genre
        )
        ranked = [name for name, _ in counts.most_common()]
        assert ranked[0] == normalize_tag(tax.broad_names(genre)[0]), (genre, counts.most_common(3))
        assert len(counts) >= min(len(tax.tags[genre]), 8), genre  # the long tail is used too
        if len(counts) >= 4:  # Zipf: the most used name far ahead of the median one
            top, middle = counts.most_common()[0][1], counts.most_common()[len(counts) // 2][1]
            assert top > 1.8 * middle, (genre, counts.most_common())


def test_votes_are_thin_with_ties(default_world):
    rgs = default_world.release_groups
    votes = [n for rg in rgs for _, n in rg.tags]
    assert statistics.median(votes) == 1
    assert sum(n == 1 for n in votes) / len(votes) > 0.5
    assert sum(n <= 3 for n in votes) / len(votes) > 0.85
    assert 10 <= max(votes) <= 30
    tagged_rgs = [rg for rg in rgs if rg.tags]
    ties = sum(sum(n == 1 for _, n in rg.tags) >= 2 for rg in tagged_rgs)
    assert ties / len(tagged_rgs) > 0.2
    assert sum(rg.genre == "ambiguous" for rg in rgs) > 0


def test_spelling_variants(default_world):
    world, tax = default_world, default_world.taxonomy
    spelled = {n for g in tax.genres for n in tax.tags[g]}
    genre_tags = [t for rg in world.release_groups for t, _ in rg.tags if tax.genre_of_tag(t) is not None]
    variants = [t for t in genre_tags if t not in spelled]
    assert 0.05 < len(variants) / len(genre_tags) < 0.3
    assert any("-" in t and t.replace("-", " ") in spelled for t in variants)  # "synth-pop" / "hip-hop"
    assert any(t != t.lower() for t in variants)  # "Hip Hop"
    assert any(t.endswith(" music") and t not in spelled for t in variants)  # "new age music"
    if tax.aliases:
        assert any(normalize_tag(t) in tax.aliases for t in variants)  # "rnb"
    plain = World.build(WorldConfig.small(SEED, variant_fraction=0.0))
    assert all(t in spelled for rg in plain.release_groups for t, _ in rg.tags if tax.genre_of_tag(t))


def test_art_coverage_spread_per_genre(default_world):
    truth = default_world.truth()
    configured = truth["art_coverage"]
    assert set(configured) == set(default_world.taxonomy.genres)
    assert max(configured.values()) == pytest.approx(0.90) and min(configured.values()) == pytest.approx(0.45)
    assert len(set(configured.values())) == len(configured)  # evenly spread, one step per genre
    for genre, row in truth["genres"].items():
        assert row["art_coverage"] == configured[genre]
        assert row["measured_coverage"] == pytest.approx(row["art_coverage"], abs=0.09), (genre, row)
    assert World.build(WorldConfig(seed=1)).coverage != default_world.coverage  # the order is seeded


def test_art_coverage_float_and_per_genre_forms():
    half = World.build(WorldConfig.small(SEED, art_coverage=0.5))
    assert set(half.coverage.values()) == {0.5}
    albums = [rg for rg in half.release_groups if rg.findable]
    assert sum(rg.art != "none" for rg in albums) / len(albums) == pytest.approx(0.5, abs=0.05)
    full = World.build(WorldConfig.small(SEED, art_coverage=1.0))
    assert not any(rg.art == "none" for rg in full.release_groups)
    mixed = World.build(WorldConfig.small(SEED, art_coverage=(("metal", 0.2), ("Jazz", 1.0))))
    assert mixed.coverage["Metal"] == 0.2 and mixed.coverage["Jazz"] == 1.0
    assert mixed.coverage["Rock"] == World.build(WorldConfig.small(SEED)).coverage["Rock"]
    row = mixed.truth()["genres"]["Metal"]
    assert row["measured_coverage"] < 0.35
    with pytest.raises(EquigenError, match="not a genre"):
        World.build(WorldConfig.small(SEED, art_coverage=(("Polka", 0.5),)))
    with pytest.raises(EquigenError, match="between 0 and 1"):
        World.build(WorldConfig.small(SEED, art_coverage=1.5))


def test_thin_genre_has_few_artists():
    world = World.build(WorldConfig.small(SEED, thin_genres=("jazz",), thin_artists=5))
    assert sum(a.genre == "Jazz" for a in world.artists) == 5
    jazz_artists = {rg.artist.mbid for rg in world.release_groups if rg.genre == "Jazz" and rg.findable}
    assert 0 < len(jazz_artists) <= 5  # no other artist's record and no compilation lands there
    truth = world.truth()
    assert truth["thin_genres"] == ["Jazz"] and truth["genres"]["Jazz"]["thin"]
    assert truth["genres"]["Jazz"]["usable_capped"] <= 10 < truth["genres"]["Rock"]["usable_capped"]
    with pytest.raises(EquigenError, match="not a genre"):
        World.build(WorldConfig.small(SEED, thin_genres=("Polka",)))


def test_cover_render_is_fast_and_cached():
    world = World.build(WorldConfig.small(SEED, cover_px=None))
    mbids = [rg.mbid for rg in usable(world)][:30]
    start = time.perf_counter()
    world.prerender(500, mbids)
    per_cover = (time.perf_counter() - start) / len(mbids)
    assert per_cover < 0.05, per_cover  # a few ms normally; generous for loaded CI machines
    assert all(world.cached_cover(m, 500) is world.cover_bytes(m, 500) for m in mbids)


# ---- logging and the process entry point ----------------------------------------------------------


def test_request_log(sim):
    before = time.time()
    search(sim, "tag:jazz")
    requests.get(f"{sim.url}/release-group/not-an-mbid/front-500", headers=UA, timeout=10)
    mb = sim.musicbrainz_log()[-1]
    assert mb.path == "/ws/2/release-group" and "query=tag" in mb.query_string and mb.status == 200
    assert mb.user_agent == UA["User-Agent"] and mb.method == "GET" and before <= mb.t <= time.time()
    assert all(e.service == "musicbrainz" for e in sim.musicbrainz_log())
    caa = sim.log[-1]
    assert caa.service == "coverart" and caa.status == 400
    served = requests.get(f"{sim.url}/__sim__/log", timeout=10).json()
    assert served[-1]["path"] == caa.path and served[-1]["status"] == 400
    assert {"t", "method", "path", "query_string", "status", "user_agent", "service"} == set(served[-1])
    assert requests.get(f"{sim.url}/__sim__/health", timeout=10).json()["status"] == "ok"


def test_serve_forever_in_subprocess():
    code = (
        "from equigen.simulator import serve_forever; "
        "serve_forever(port=0, seed=1, cover_px=32, art_coverage=0.6, thin_genres=('Blues',))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)[0]
        assert requests.get(f"{url}/__sim__/health", timeout=10).json()["status"] == "ok"
        truth = requests.get(f"{url}/__sim__/truth", timeout=30).json()
        assert truth["seed"] == 1 and truth["genres"]["Rock"]["usable_capped"] >= 40
        assert set(truth["art_coverage"].values()) == {0.6} and truth["thin_genres"] == ["Blues"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_simulate_cli_help_explains_the_knobs():
    from typer.testing import CliRunner

    from equigen.cli import app

    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--art-coverage" in result.output and "--thin" in result.output and "0.45" in result.output
    assert "--reissues" in result.output


# ---- real-world timing (issue 13's rehearsal) ---------------------------------------------------------------


def test_realistic_timing_latency_bandwidth_and_the_host_limit():
    from concurrent.futures import ThreadPoolExecutor

    config = SimConfig.realistic(rate_limit=0, image_bytes_per_s=20_000, image_host_limit=2, reset_rate=0, stall_rate=0)
    assert config.mb_latency_ms == (200.0, 800.0) and config.redirect_latency_ms == (100.0, 400.0)
    with simulator_in_thread(WorldConfig.small(SEED, cover_px=256), config) as handle:
        rg = usable(handle.world)[0]
        took = []
        for _ in range(4):
            t = time.monotonic()
            search(handle, 'tag:"rock"')
            took.append(time.monotonic() - t)
        assert min(took) >= 0.2 and max(took) < 1.2  # each answer 200-800 ms
        t = time.monotonic()
        assert (
            requests.get(
                f"{handle.url}/release-group/{rg.mbid}/front-500", allow_redirects=False, timeout=10
            ).status_code
            == 307
        )
        assert 0.1 <= time.monotonic() - t < 0.6
        url = handle.world.image_url(handle.url, rg.mbid, 500)
        size = len(handle.world.cover_bytes(rg.mbid, 500))
        t = time.monotonic()
        body = requests.get(url, timeout=30).content
        assert len(body) == size and time.monotonic() - t >= 0.9 * size / 20_000  # paced per connection
        with ThreadPoolExecutor(4) as pool:  # four at once against a limit of two
            statuses = list(pool.map(lambda _: requests.get(url, timeout=60).status_code, range(4)))
        assert statuses.count(200) == 2 and sorted(set(statuses) - {200}) <= [429, 503]


def test_realistic_resets_and_stalls():
    with simulator_in_thread(WorldConfig.small(SEED), SimConfig(reset_rate=1.0)) as handle:
        url = handle.world.image_url(handle.url, usable(handle.world)[0].mbid, 250)
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=10)
    with simulator_in_thread(WorldConfig.small(SEED), SimConfig(stall_rate=1.0, stall_seconds=5)) as handle:
        url = handle.world.image_url(handle.url, usable(handle.world)[0].mbid, 250)
        with pytest.raises(requests.Timeout):
            requests.get(url, timeout=0.5)


def test_reissues_re_encode_a_cover_of_the_same_genre_at_the_share():
    base = WorldConfig.small(SEED, cover_px=None)
    plain = World.build(base).truth()
    world = World.build(dataclasses.replace(base, reissue_fraction=0.2))
    truth = world.truth()
    copies = {d["mbid"]: d for d in truth["duplicates"]}
    new = [copies[m] for m in copies.keys() - {d["mbid"] for d in plain["duplicates"]}]
    covers = sum(r["usable"] + r["duplicates"] for r in truth["genres"].values())
    assert 0.15 <= len(new) / covers <= 0.25
    assert all(d["genre"] == d["source_genre"] for d in new)
    assert sum(d["same_artist"] for d in new) > len(new) / 2  # mostly the artist's own album re-issued
    assert {d["transform"] for d in new} == {"reencode", "resize", "border"}
    assert not {d["source_mbid"] for d in truth["duplicates"]} & set(copies)  # no chains
    for d in [d for d in new if d["transform"] != "border"][:12]:
        a, b = (
            imagehash.phash(Image.open(io.BytesIO(world.cover_bytes(m, 250)))) for m in (d["mbid"], d["source_mbid"])
        )
        assert a - b <= DEFAULT_THRESHOLD, d


@pytest.mark.skipif(sys.platform != "linux", reason="render processes are forked (Linux)")
def test_render_processes_serve_the_same_bytes_and_cache_them():
    """SimConfig.render_processes: covers drawn in forked processes are the bytes the world itself draws."""
    world = World.build(WorldConfig.small(SEED))
    other = World.build(WorldConfig.small(SEED))  # draws the reference bytes in this process
    rgs = [rg for rg in world.release_groups if rg.art == "ok" and not rg.flaky][:6]
    with simulator_in_thread(sim_config=SimConfig(rate_limit=0, render_processes=2), world=world) as handle:
        for rg in rgs:
            got = requests.get(f"{handle.url}/release-group/{rg.mbid}/front-250", timeout=30)
            assert got.status_code == 200 and got.content == other.cover_bytes(rg.mbid, 250)
            assert world.cached_cover(rg.mbid, 250) == got.content  # remembered by the server's process
