"""`equigen fetch` against the simulator over real sockets: discovery, politeness, faults, resume, bad input."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from equigen.catalog import Catalog
from equigen.config import load_settings
from equigen.errors import EquigenError
from equigen.fetch import run_fetch
from equigen.images import phash_hex
from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread
from equigen.taxonomy import AMBIGUOUS, UNLABELLED, load_taxonomy, normalize_tag

from conftest import HARVEST_PER_GENRE, quiet_console

EXPECTED_STATUS = {"ok": "ok", "none": "no_art", "truncated": "bad_image", "html": "bad_image",
                   "oversize": "bad_image", "bomb": "bad_image", "tiny": "bad_image"}

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
    return load_settings(data_dir=data_dir, musicbrainz_url=url, coverart_url=url, **kw)


def _cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "equigen.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


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
        elif row.status != "pending":       # pending: a candidate fetch did not need
            assert row.status == EXPECTED_STATUS[rg.art], (row.mbid, rg.art, row.status, row.error)
    tried = covers[covers.status != "pending"]
    assert len(tried) >= 15 * HARVEST_PER_GENRE


def test_harvest_reaches_the_target_in_every_genre(harvested):
    tax = load_taxonomy()
    with Catalog(harvested.catalog_path) as cat:
        counts = cat.genre_counts()
        progress = cat.discovery_progress()
        ok = cat.covers_frame("ok")
    for genre in tax.genres:
        exhausted = progress[progress.genre == genre].exhausted.all()
        assert (ok.genre == genre).sum() >= HARVEST_PER_GENRE or exhausted, genre
        assert counts.get(genre, 0) > 0


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
    assert not list(harvested.images_dir.rglob(".part-*"))


def test_musicbrainz_politeness_in_the_request_log(harvested, harvest_sim, harvest_stats):
    log = harvest_sim.musicbrainz_log()
    # Broad names first and tokenized search: 15 genres need about one page each on this world.
    assert len(log) >= 12, "need at least 12 MusicBrainz requests to judge the rate"
    assert len(log) == harvest_stats.mb_requests
    times = sorted(e.t for e in log)
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:])), "requests less than 1 s apart"
    queries = [e.query_string for e in log]
    assert len(set(queries)) == len(queries), "a search was repeated"
    first_tags = [re.search(r'tag:"([^"]+)"', q).group(1) for q in queries if "offset=0&" in q]
    assert first_tags[0] == "blues", "each genre starts with its broad name"
    assert worst == 1, "more than one MusicBrainz request inside one second"
    assert all(e.status == 200 for e in log), "the client never triggered a 503"
    assert all(e.user_agent.startswith("equigen/") and "(" in e.user_agent for e in log)


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
    wc = WorldConfig.small(seed=5, n_artists=60, n_various=10, taxonomy_path=str(small_taxonomy),
                           broken_fraction=0.004)
    with simulator_in_thread(world_config=wc, sim_config=SimConfig()) as sim:
        settings = _settings(sim.url, tmp_path / "d", taxonomy_path=small_taxonomy)
        stats = run_fetch(settings, per_genre=100_000, console=quiet_console())
        world = sim.world
        mb_log = sim.musicbrainz_log()
    # MusicBrainz tokenizes tag names: a search for "heavy metal" also finds "Heavy-Metal" and "heavy metal rock".
    phrases = [normalize_tag(t).split() for g in tax.genres for t in tax.tags[g]]

    def found_by_search(name: str) -> bool:
        words = normalize_tag(name).split()
        return any(words[i:i + len(p)] == p for p in phrases for i in range(len(words) - len(p) + 1))

    expected = {rg.mbid: rg for rg in world.release_groups
                if rg.findable and any(found_by_search(name) for name, _ in rg.tags)}
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
    rgs = con.execute("SELECT mbid, title, primary_type, secondary_types, first_release_date, artist_mbid,"
                      " artist_name, tags, genre FROM release_groups ORDER BY mbid").fetchall()
    # source_url is left out: the two simulators listen on different ports
    covers = con.execute("SELECT mbid, status, sha256, phash, width, height, bytes, format, path"
                         " FROM covers ORDER BY mbid").fetchall()
    disc = con.execute("SELECT genre, tag, next_offset, total, exhausted FROM discovery ORDER BY genre, tag").fetchall()
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    return rgs, covers, disc


def test_kill_minus_9_then_resume_equals_uninterrupted_run(tmp_path):
    wc = WorldConfig.small(seed=3, n_artists=90, n_various=10)
    genres = ["--genre", "Rock", "--genre", "Jazz", "--genre", "Metal"]
    common = ["--per-genre", "12", "--concurrency", "2", *genres]
    # The run that is killed: slow images so the kill lands mid-download.
    with simulator_in_thread(world_config=wc, sim_config=SimConfig(latency_ms=60)) as sim:
        killed = tmp_path / "killed"
        args = [sys.executable, "-m", "equigen.cli", "fetch", "--data-dir", str(killed),
                "--musicbrainz-url", sim.url, "--coverart-url", sim.url, *common]
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
        resumed = _cli("fetch", "--data-dir", str(killed), "--musicbrainz-url", sim.url, "--coverart-url", sim.url, *common)
        assert resumed.returncode == 0, resumed.stderr
    with simulator_in_thread(world_config=wc, sim_config=SimConfig()) as sim2:
        clean = tmp_path / "clean"
        done = _cli("fetch", "--data-dir", str(clean), "--musicbrainz-url", sim2.url, "--coverart-url", sim2.url, *common)
        assert done.returncode == 0, done.stderr
    assert _catalog_snapshot(killed / "catalog.sqlite") == _catalog_snapshot(clean / "catalog.sqlite")
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in (root / "images").rglob("*") if p.is_file())
    assert files(killed) == files(clean)


# --- bad input: one line, non-zero exit, catalog intact ----------------------------------------------------

def _one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert needle in lines[0], lines[0]


def test_malformed_taxonomy_cli(tmp_path):
    bad = tmp_path / "genres.toml"
    bad.write_text('[genres.A]\ntags = ["x"]\n[genres.B]\ntags = ["x"]\n')
    r = _cli("fetch", "--data-dir", str(tmp_path / "d"), "--musicbrainz-url", "http://127.0.0.1:9",
             "--coverart-url", "http://127.0.0.1:9", "--taxonomy", str(bad))
    _one_line_error(r, "claimed by both")


def test_unreachable_musicbrainz(tmp_path):
    r = _cli("fetch", "--data-dir", str(tmp_path / "d"), "--musicbrainz-url", "http://127.0.0.1:9",
             "--coverart-url", "http://127.0.0.1:9", "--genre", "Jazz")
    _one_line_error(r, "cannot reach MusicBrainz")


def test_non_writable_data_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = _cli("fetch", "--data-dir", str(blocker / "sub"), "--musicbrainz-url", "http://127.0.0.1:9",
             "--coverart-url", "http://127.0.0.1:9")
    _one_line_error(r, "not writable")
    assert blocker.read_text() == "not a folder"


def test_real_musicbrainz_without_contact_is_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "EQUIGEN_CONTACT"}
    r = _cli("fetch", "--data-dir", str(tmp_path / "d"), env=env)
    _one_line_error(r, "--contact")


def test_malformed_result_is_skipped_and_counted_not_fatal(tmp_path):
    wc = WorldConfig.small(seed=2)
    data = tmp_path / "d"
    with simulator_in_thread(world_config=wc, sim_config=SimConfig(bad_mbid=True)) as bad:
        r = _cli("fetch", "--data-dir", str(data), "--musicbrainz-url", bad.url, "--coverart-url", bad.url,
                 "--genre", "Metal", "--per-genre", "3")
        searches = len(bad.musicbrainz_log())
    assert r.returncode == 0, r.stderr
    skipped = re.search(r"malformed results skipped (\d+)", r.stderr)
    assert skipped and int(skipped.group(1)) == searches  # the planted item tops every answer
    with Catalog(data / "catalog.sqlite") as cat:
        covers = cat.covers_frame(status=None)
    assert len(covers) > 0 and covers.mbid.str.fullmatch(r"[0-9a-f-]{36}").all()
    assert (covers[covers.genre == "Metal"].status == "ok").sum() >= 3
    assert not any(".." in p.name for p in data.rglob("*"))
