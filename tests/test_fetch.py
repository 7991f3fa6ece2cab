"""`equigen fetch` against the simulator over real sockets: discovery, politeness, faults, resume, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pandas as pd
import pytest
from helpers import (
    HARVEST_PER_GENRE,
    TEST_MB_INTERVAL,
    TEST_MB_RATE,
    assert_one_line_error,
    paced_simulator,
    quiet_console,
    run_cli,
)

from equigen.core.catalog import Catalog
from equigen.core.config import Settings, load_settings
from equigen.core.images import phash_hex
from equigen.core.options import BalanceOptions
from equigen.core.taxonomy import AMBIGUOUS, UNLABELLED, load_taxonomy, normalize_tag, parse_taxonomy
from equigen.harvest.fetch import FetchOptions, run_fetch
from equigen.harvest.musicbrainz import MusicBrainzClient
from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread

EXPECTED_STATUS = {
    "ok": "ok",
    "none": "no_art",
    "truncated": "bad_image",
    "html": "bad_image",
    "oversize": "bad_image",
    "bomb": "bad_image",
    "tiny": "bad_image",
}

SMALL_TAXONOMY = """
[resolution]
ambiguity_ratio = 0.8
[genres.Metal]
tags = ["heavy metal", "death metal"]
[genres.Jazz]
tags = ["jazz", "bebop"]
[genres.Reggae]
tags = ["reggae", "dub"]
"""


def _settings(url: str, data_dir: Path, **kw):
    kw.setdefault("mb_interval", TEST_MB_INTERVAL)
    return load_settings(data_dir=data_dir, musicbrainz_url=url, coverart_url=url, **kw)


# --- the shared harvest (conftest): 15 genres, default taxonomy ------------------------------------------


def test_harvest_labels_and_statuses_match_the_world(harvested, harvest_sim):
    world = harvest_sim.world
    with Catalog(harvested.catalog_path) as cat:
        covers = cat.covers_frame(status=None)
    assert len(covers) > 0
    for row in covers.itertuples():
        rg = world.by_mbid[row.mbid]
        assert rg.findable, "compilations/live/soundtracks are skipped"
        assert row.genre == rg.genre, f"label resolution disagrees with the world for {row.mbid}"
        if row.genre in (AMBIGUOUS, UNLABELLED):
            assert row.status == "pending"  # kept and counted, never downloaded
        elif row.status != "pending":  # pending: a candidate fetch did not need
            assert row.status == EXPECTED_STATUS[rg.art], (row.mbid, rg.art, row.status, row.error)
    tried = covers[covers.status != "pending"]
    assert len(tried) >= 15 * HARVEST_PER_GENRE


def test_harvest_reaches_the_target_in_every_genre(harvested):
    tax = load_taxonomy()
    with Catalog(harvested.catalog_path) as cat:
        catalogued = cat.covers_frame(status=None)  # one cover row per release group
        progress = cat.discovery_progress()
        ok = cat.covers_frame("ok")
    for genre in tax.genres:
        exhausted = progress[progress.genre == genre].exhausted.all()
        assert (ok.genre == genre).sum() >= HARVEST_PER_GENRE or exhausted, genre
        assert (catalogued.genre == genre).any()


def test_stored_images_are_content_addressed_and_hashed(harvested):
    with Catalog(harvested.catalog_path) as cat:
        ok = cat.covers_frame("ok")
    from PIL import Image

    for row in ok.head(40).itertuples():
        path = harvested.data_dir / row.path
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert path.name.startswith(row.sha256) and path.parent.name == row.sha256[:2]
        # our draft-mode hash stays close to the full-decode reference definition
        ref = phash_hex(Image.open(path))
        assert (int(ref, 16) ^ int(row.phash, 16)).bit_count() <= 6
    assert not list(harvested.data_dir.rglob(".*.part")), "a temporary file (storage: .<name>.<...>.part) was left"


def test_musicbrainz_politeness_in_the_request_log(harvested, harvest_sim, harvest_stats):
    """The harvest's pacing against a simulator that enforces TEST_MB_RATE per second (the 1/s default is
    test_default_settings_pace_musicbrainz_at_1_per_s)."""
    log = harvest_sim.musicbrainz_log()
    # Broad names first and tokenized search: 15 genres need about one page each on this world.
    assert len(log) >= 12, "need at least 12 MusicBrainz requests to judge the rate"
    assert len(log) == harvest_stats.mb_requests
    times = sorted(e.t for e in log)
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= TEST_MB_INTERVAL - 0.005, f"requests {min(gaps):.3f} s apart, paced at {TEST_MB_INTERVAL}"
    queries = [e.query_string for e in log]
    assert len(set(queries)) == len(queries), "a search was repeated"
    first_tags = [re.search(r'tag:"([^"]+)"', q).group(1) for q in queries if "offset=0&" in q]
    assert first_tags[0] == "blues", "each genre starts with its broad name"
    assert worst <= TEST_MB_RATE, "more MusicBrainz requests inside one second than the server allows"
    assert all(e.status == 200 for e in log), "the client never triggered a 503"
    assert all(e.user_agent.startswith("equigen/") and "(" in e.user_agent for e in log)


def test_default_settings_pace_musicbrainz_at_1_per_s():
    """MusicBrainz's rule with default settings: 1 s between requests, so a server allowing 1/s never says 503."""
    settings = Settings()
    assert settings.mb_interval == 1.0

    async def three_pages(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            client = MusicBrainzClient(session, url, settings.user_agent, settings.mb_interval)
            for offset in (0, 25, 50):
                query = {"query": 'tag:"rock"', "limit": "25", "offset": str(offset), "fmt": "json"}
                await client.get_json("/ws/2/release-group", query)

    with simulator_in_thread(world_config=WorldConfig.small(seed=1), sim_config=SimConfig()) as sim:
        asyncio.run(three_pages(sim.url))
        log = sim.musicbrainz_log()
    times = sorted(e.t for e in log)
    assert len(log) == 3 and all(e.status == 200 for e in log)
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:])), "requests less than 1 s apart"


def test_flaky_covers_were_retried_not_failed(harvested, harvest_sim):
    flaky = set(harvest_sim.world.truth()["flaky"])
    with Catalog(harvested.catalog_path) as cat:
        rows = cat.covers_frame(status=None)
    hit = rows[rows.mbid.isin(flaky) & (rows.status != "pending")]
    assert len(hit) > 0
    assert (hit.status == "ok").all() and (hit.attempts > 1).all()


# --- exhaustive discovery on a 3-genre taxonomy: exact ground truth ---------------------------------------


@pytest.fixture(scope="module")
def small_taxonomy(tmp_path_factory):
    path = tmp_path_factory.mktemp("tax") / "genres.toml"
    path.write_text(SMALL_TAXONOMY)
    return path


def test_exhaustive_discovery_matches_ground_truth(tmp_path, small_taxonomy):
    tax = load_taxonomy(small_taxonomy)
    wc = WorldConfig.small(seed=5, n_artists=60, n_various=10, taxonomy_path=str(small_taxonomy), broken_fraction=0.004)
    with simulator_in_thread(world_config=wc, sim_config=paced_simulator()) as sim:
        settings = _settings(sim.url, tmp_path / "d", taxonomy_path=small_taxonomy)
        stats = run_fetch(settings, FetchOptions(per_genre=100_000), console=quiet_console())
        world = sim.world
        mb_log = sim.musicbrainz_log()
    # MusicBrainz tokenizes tag names: a search for "heavy metal" also finds "Heavy-Metal" and "heavy metal rock".
    phrases = [normalize_tag(t).split() for g in tax.genres for t in tax.tags[g]]

    def found_by_search(name: str) -> bool:
        words = normalize_tag(name).split()
        return any(words[i : i + len(p)] == p for p in phrases for i in range(len(words) - len(p) + 1))

    expected = {
        rg.mbid: rg for rg in world.release_groups if rg.findable and any(found_by_search(name) for name, _ in rg.tags)
    }
    with Catalog(settings.catalog_path) as cat:
        covers = cat.covers_frame(status=None)
        progress = cat.discovery_progress()
    assert progress.exhausted.all()
    assert set(covers.mbid) == set(expected), "every matching album found once, nothing else"
    assert stats.mb_requests == len(mb_log)
    # every page was requested once: offsets advance by 100 per tag (tags an exhaustive search covered: none)
    for row in progress.itertuples():
        assert row.next_offset == (row.total if row.total == row.total else 0)
    queries = [e.query_string for e in mb_log]
    assert len(queries) == len(set(queries)), "the same search was requested twice"
    counts = covers.groupby("genre").size().to_dict()
    for genre in tax.genres:
        assert counts.get(genre, 0) == sum(1 for rg in expected.values() if rg.genre == genre)
    broken_seen = set()
    for row in covers.itertuples():
        rg = expected[row.mbid]
        if rg.genre in tax.genres:
            assert row.status == EXPECTED_STATUS[rg.art], (rg.art, row.status, row.error)
            broken_seen.add(rg.art)
    assert {"none", "truncated", "html", "oversize", "bomb", "tiny"} <= broken_seen


# --- kill -9 and resume ---------------------------------------------------------------------------------


def _catalog_snapshot(path: Path):
    con = sqlite3.connect(path)
    rgs = con.execute(
        "SELECT mbid, title, primary_type, secondary_types, first_release_date, artist_mbid,"
        " artist_name, tags, genre FROM release_groups ORDER BY mbid"
    ).fetchall()
    # source_url is left out: the two simulators listen on different ports
    covers = con.execute(
        "SELECT mbid, status, sha256, phash, width, height, bytes, format, path FROM covers ORDER BY mbid"
    ).fetchall()
    disc = con.execute("SELECT genre, tag, next_offset, total, exhausted FROM discovery ORDER BY genre, tag").fetchall()
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    return rgs, covers, disc


@pytest.mark.slow
def test_kill_minus_9_then_resume_equals_uninterrupted_run(tmp_path):
    wc = WorldConfig.small(seed=3, n_artists=90, n_various=10)
    genres = ["--genre", "Rock", "--genre", "Jazz", "--genre", "Metal"]
    common = ["--per-genre", "12", "--concurrency", "2", "--mb-interval", str(TEST_MB_INTERVAL), *genres]
    # The run that is killed: slow images so the kill lands mid-download.
    with simulator_in_thread(world_config=wc, sim_config=paced_simulator(latency_ms=60)) as sim:
        killed = tmp_path / "killed"
        args = [
            sys.executable,
            "-m",
            "equigen.cli",
            "fetch",
            "--data-dir",
            str(killed),
            "--musicbrainz-url",
            sim.url,
            "--coverart-url",
            sim.url,
            *common,
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        ok = 0
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if (killed / "catalog.sqlite").exists():
                try:
                    con = sqlite3.connect(killed / "catalog.sqlite", timeout=1)
                    ok = con.execute("SELECT COUNT(*) FROM covers WHERE status != 'pending'").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    continue
                if ok >= 5:
                    break
        assert proc.poll() is None, "fetch finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert ok >= 5
        resumed = run_cli(
            "fetch", "--data-dir", str(killed), "--musicbrainz-url", sim.url, "--coverart-url", sim.url, *common
        )
        assert resumed.returncode == 0, resumed.stderr
    with simulator_in_thread(world_config=wc, sim_config=paced_simulator()) as sim2:
        clean = tmp_path / "clean"
        done = run_cli(
            "fetch", "--data-dir", str(clean), "--musicbrainz-url", sim2.url, "--coverart-url", sim2.url, *common
        )
        assert done.returncode == 0, done.stderr
    assert _catalog_snapshot(killed / "catalog.sqlite") == _catalog_snapshot(clean / "catalog.sqlite")

    def files(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in (root / "images").rglob("*") if p.is_file())

    assert files(killed) == files(clean)


# --- bad input: one line, non-zero exit, catalog intact ----------------------------------------------------


def test_malformed_taxonomyrun_cli(tmp_path):
    bad = tmp_path / "genres.toml"
    bad.write_text('[genres.A]\ntags = ["x"]\n[genres.B]\ntags = ["x"]\n')
    r = run_cli(
        "fetch",
        "--data-dir",
        str(tmp_path / "d"),
        "--musicbrainz-url",
        "http://127.0.0.1:9",
        "--coverart-url",
        "http://127.0.0.1:9",
        "--taxonomy",
        str(bad),
    )
    assert_one_line_error(r, "claimed by both")


def test_unreachable_musicbrainz(tmp_path):
    r = run_cli(
        "fetch",
        "--data-dir",
        str(tmp_path / "d"),
        "--musicbrainz-url",
        "http://127.0.0.1:9",
        "--coverart-url",
        "http://127.0.0.1:9",
        "--genre",
        "Jazz",
    )
    assert_one_line_error(r, "cannot reach MusicBrainz")


def test_non_writable_data_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli(
        "fetch",
        "--data-dir",
        str(blocker / "sub"),
        "--musicbrainz-url",
        "http://127.0.0.1:9",
        "--coverart-url",
        "http://127.0.0.1:9",
    )
    assert_one_line_error(r, "not writable")
    assert blocker.read_text() == "not a folder"


def test_real_musicbrainz_without_contact_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "EQUIGEN_CONTACT"}
    r = run_cli("fetch", "--data-dir", str(tmp_path / "d"), env=env)
    assert_one_line_error(r, "--contact")


def test_malformed_result_is_skipped_and_counted_not_fatal(tmp_path):
    wc = WorldConfig.small(seed=2)
    data = tmp_path / "d"
    with simulator_in_thread(world_config=wc, sim_config=SimConfig(bad_mbid=True)) as bad:
        r = run_cli(
            "fetch",
            "--data-dir",
            str(data),
            "--musicbrainz-url",
            bad.url,
            "--coverart-url",
            bad.url,
            "--genre",
            "Metal",
            "--per-genre",
            "3",
        )
        searches = len(bad.musicbrainz_log())
    assert r.returncode == 0, r.stderr
    skipped = re.search(r"malformed results skipped (\d+)", r.stderr)
    assert skipped and int(skipped.group(1)) == searches  # the planted item tops every answer
    with Catalog(data / "catalog.sqlite") as cat:
        covers = cat.covers_frame(status=None)
    assert len(covers) > 0 and covers.mbid.str.fullmatch(r"[0-9a-f-]{36}").all()
    assert (covers[covers.genre == "Metal"].status == "ok").sum() >= 3
    assert not any(".." in p.name for p in data.rglob("*"))


# --- fetch until every genre can be balanced -------------------------------------------------------------


def test_one_fetch_then_balance_succeeds_where_the_world_has_the_albums(tmp_path):
    """50 % art coverage and a thin genre: one fetch, then dedup and balance, no second fetch."""
    from equigen.curate.balance import run_balance
    from equigen.curate.dedup import run_dedup

    per_genre, genres = 10, ["Blues", "Jazz", "Reggae", "New Age"]
    wc = WorldConfig.small(seed=4, art_coverage=0.5, thin_genres=("New Age",), thin_artists=3)
    with simulator_in_thread(world_config=wc, sim_config=paced_simulator()) as sim:
        settings = _settings(sim.url, tmp_path / "d")
        stats = run_fetch(settings, FetchOptions(per_genre=per_genre, genres=genres), console=quiet_console())
        truth = sim.world.truth(artist_cap=2)["genres"]
        requests = len(sim.musicbrainz_log())
    assert truth["New Age"]["usable_capped"] < per_genre <= min(truth[g]["usable_capped"] for g in genres[:3])
    assert stats.mb_requests == requests
    assert set(stats.shortfalls) == {"New Age"}
    # everything the thin genre has was found and tried
    assert stats.usable["New Age"] >= truth["New Age"]["usable_capped"]
    run_dedup(settings, console=quiet_console())
    report = run_balance(
        settings, BalanceOptions(per_genre=per_genre, seed=0, allow_short=True), console=quiet_console()
    )
    selected = {g["genre"]: g["selected"] for g in report["genres"]}
    assert all(selected[g] == per_genre for g in genres[:3]), selected
    assert report["short_genres"] == ["New Age"]
    published = sum(selected.values())
    assert stats.stored / published <= 1.3, (stats.stored, published)
    with Catalog(settings.catalog_path) as cat:
        covers = cat.covers_frame(status=None)
    assert (covers.status == "pending").any(), "candidates that were not needed stay untried"


def test_relabel_on_a_new_taxonomy_and_catalog_migration(tmp_path, small_taxonomy):
    from equigen.core.records import ReleaseGroup

    path = tmp_path / "catalog.sqlite"
    # a schema-1 catalog (as written before label evidence): opening it migrates in place
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE release_groups (mbid TEXT PRIMARY KEY, title TEXT NOT NULL, primary_type TEXT,
            secondary_types TEXT NOT NULL DEFAULT '[]', first_release_date TEXT, artist_mbid TEXT, artist_name TEXT,
            tags TEXT NOT NULL DEFAULT '[]', genre TEXT NOT NULL, found_via TEXT, discovered_at REAL NOT NULL);
        CREATE TABLE covers (mbid TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL
            DEFAULT 0, http_status INTEGER, error TEXT, sha256 TEXT, phash TEXT, width INTEGER, height INTEGER,
            bytes INTEGER, format TEXT, path TEXT, source_url TEXT, updated_at REAL);
        INSERT INTO release_groups VALUES ('00000000-0000-4000-8000-000000000001', 'Old', 'Album', '[]', NULL, NULL,
            NULL, '[["bebop", 2], ["heavy metal", 1]]', 'Jazz', 'Jazz/bebop', 0);
        INSERT INTO covers(mbid) VALUES ('00000000-0000-4000-8000-000000000001');
    """)
    con.close()
    tax = load_taxonomy(small_taxonomy)
    with Catalog(path) as cat:
        assert cat.get_meta("schema_version") == "2"
        row = cat.planning_rows(["Jazz"]).iloc[0]
        assert row.seq == 1 and pd.isna(row.label_confidence) and pd.isna(row.planned_round)  # unknown until relabelled
        cat.add_release_groups(
            [
                ReleaseGroup(
                    "00000000-0000-4000-8000-000000000002", "Kept", "Album", (), None, None, None, (), "Metal", 3, 1.0
                )
            ],
            found_via="manifest:m.parquet",
        )
        # a taxonomy where bebop no longer counts: the same stored tags now say Metal
        other = parse_taxonomy({"genres": {"Metal": {"tags": ["heavy metal"]}, "Jazz": {"tags": ["jazz"]}}})
        assert cat.relabel(other.label) == 1
        frame = cat.covers_frame(status=None).set_index("title")
        assert (frame.loc["Old", "genre"], frame.loc["Old", "label_votes"], frame.loc["Old", "label_confidence"]) == (
            "Metal",
            1,
            1.0,
        )
        assert (frame.loc["Kept", "genre"], frame.loc["Kept", "label_votes"]) == ("Metal", 3)  # published label kept
        assert cat.relabel(tax.label) == 1 and cat.relabel(tax.label) == 0
        assert cat.covers_frame(status=None).set_index("title").loc["Old", "label_confidence"] == round(2 / 3, 6)


def test_discovery_only_then_download_only_then_fetch_adds_nothing(tmp_path):
    genres = ["Rock", "Jazz"]
    with simulator_in_thread(world_config=WorldConfig.small(seed=3), sim_config=SimConfig(rate_limit=0)) as sim:
        settings = _settings(sim.url, tmp_path / "d", mb_interval=0.0)
        found = run_fetch(settings, FetchOptions(per_genre=10, genres=genres, download=False), console=quiet_console())
        assert found.downloaded == 0 and found.shortfalls == {} and found.new_release_groups > 0
        with Catalog(settings.catalog_path) as cat:
            covers = cat.covers_frame(status=None)
            pending = int(((covers["status"] == "pending") & covers["genre"].isin(genres)).sum())
        got = run_fetch(settings, FetchOptions(per_genre=10, genres=genres, discover=False), console=quiet_console())
        assert got.mb_requests == 0 and got.downloaded == pending > 0  # every discovered cover, no search
        # Discovery alone cannot know which albums have art: a full fetch tops up what download-only left short
        # (Jazz in this world), then the same command again finds nothing to do.
        full = run_fetch(settings, FetchOptions(per_genre=10, genres=genres), console=quiet_console())
        assert all(full.usable[g] >= 11 for g in genres), full.usable
        again = run_fetch(settings, FetchOptions(per_genre=10, genres=genres), console=quiet_console())
    assert (again.downloaded, again.mb_requests, again.rounds) == (0, 0, 0)


def test_unreachable_cover_art_archive_stops_early_in_one_line(tmp_path):
    with simulator_in_thread(world_config=WorldConfig.small(seed=3), sim_config=SimConfig(rate_limit=0)) as sim:
        r = run_cli(
            "fetch",
            "--data-dir",
            str(tmp_path / "d"),
            "--musicbrainz-url",
            sim.url,
            "--coverart-url",
            "http://127.0.0.1:9",
            "--mb-interval",
            "0.05",
            "--per-genre",
            "200",
            "--genre",
            "Rock",
            "--genre",
            "Pop",
            env={**os.environ, "EQUIGEN_MAX_ATTEMPTS": "1"},
        )
        searches = len(sim.musicbrainz_log())
    assert_one_line_error(r, "Cover Art Archive")
    names = sum(len(load_taxonomy().search_names(g)) for g in ("Rock", "Pop"))
    assert searches < names / 5, "the harvest stopped instead of searching and trying every candidate"


def test_external_text_is_printed_inertly(tmp_path):
    r = run_cli(
        "fetch",
        "--data-dir",
        str(tmp_path / "d"),
        "--musicbrainz-url",
        "http://127.0.0.1:9",
        "--coverart-url",
        "http://127.0.0.1:9",
        "--genre",
        "[/bold]\x1b]8;;http://x\x07evil",
    )
    assert_one_line_error(r, "unknown genre")
    assert "\x1b" not in r.stderr and "[/bold]" in r.stderr and "MarkupError" not in r.stderr


def test_a_page_listing_an_mbid_twice_adds_it_once(tmp_path):
    from equigen.core.records import ReleaseGroup

    def rg(n):
        return ReleaseGroup(
            f"00000000-0000-4000-8000-00000000000{n}", f"t{n}", "Album", (), None, None, None, (), "Jazz", 1, 1.0
        )

    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.ensure_discovery_rows([("Jazz", "jazz")])
        new = cat.record_page("Jazz", "jazz", [rg(1), rg(2), rg(1)], 3, 3, True)
        assert [(g.mbid[-1], seq) for g, seq in new] == [("1", 1), ("2", 2)]
        later = cat.record_page("Jazz", "jazz", [rg(2), rg(3)], 5, 5, True)
        assert [g.mbid[-1] for g, _ in later] == ["3"] and later[0][1] > 2  # discovery order kept


def test_a_genre_whose_tags_run_out_under_the_target_is_called_tight(tmp_path):
    """Tags spent with at least --per-genre usable covers but fewer than the target (the margin for near-duplicates):
    fetch says so, since dedup may still leave the genre short for balance (the 15 x 4,000 rehearsal's Blues)."""
    from rich.console import Console

    wc = WorldConfig.small(seed=4, thin_genres=("New Age",), thin_artists=3)
    with simulator_in_thread(world_config=wc, sim_config=paced_simulator()) as sim:
        available = sim.world.truth(artist_cap=2)["genres"]["New Age"]["usable_capped"]
        per_genre = max(1, available - 1)  # reachable, but not with a 50 % margin
        console = Console(record=True, width=400, file=io.StringIO())
        stats = run_fetch(
            _settings(sim.url, tmp_path / "d"),
            FetchOptions(per_genre=per_genre, margin=0.5, genres=["New Age"]),
            console=console,
        )
    assert stats.shortfalls == {}
    assert per_genre <= stats.usable["New Age"] < math.ceil(per_genre * 1.5)
    assert stats.tight == {"New Age": stats.usable["New Age"]}
    text = console.export_text()
    assert f"tight: New Age: every tag searched, {stats.usable['New Age']} usable covers" in text
