"""`equigen fetch --from-dump`: a MusicBrainz JSON dump read streamed (tar.xz or the plain member), its hostile
lines skipped and counted, candidates in a seeded order, resumable; end to end against the simulator with no
MusicBrainz request, and the same labels as the search path."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from equigen.core.catalog import Catalog
from equigen.core.config import load_settings
from equigen.core.errors import EquigenError
from equigen.core.taxonomy import load_taxonomy
from equigen.harvest import dump as dump_module
from equigen.harvest.dump import DumpCounts, candidate_rank, ingest_dump, parse_dump_line
from equigen.harvest.fetch import FetchOptions, run_fetch
from equigen.harvest.musicbrainz import DEFAULT_SKIPPED_SECONDARY, MalformedItem
from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread, write_dump
from equigen.simulator.dump import dump_lines
from tests.helpers import assert_one_line_error, quiet_console, run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "dump" / "release-group"
GOOD_MBID = "0f8c8b4e-2d5a-4b2b-9a57-6e4f1f7a1c01"


def _tar_xz(lines: bytes, path: Path, member: str = "mbdump/release-group") -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in (("COPYING", b"CC0\n"), (member, lines)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _ingest(
    tmp_path: Path, path: Path, seed: int = 0, name: str = "catalog.sqlite", **kw
) -> tuple[DumpCounts, Catalog]:
    tax = load_taxonomy(None)
    catalog = Catalog(tmp_path / name)
    counts = ingest_dump(
        catalog,
        path,
        label=tax.label,
        skipped_secondary=DEFAULT_SKIPPED_SECONDARY,
        seed=seed,
        taxonomy_fingerprint=tax.fingerprint(),
        **kw,
    )
    return counts, catalog


def _candidates(catalog: Catalog) -> dict[str, str]:
    """mbid -> genre of every candidate (promoting them all, in rank order)."""
    out = {}
    for genre in load_taxonomy(None).genres:
        while new := catalog.promote_dump_candidates(genre, 1000, f"{genre}/dump"):
            out.update({g.mbid: g.genre for g, _ in new})
    return out


def _interrupt_at_call(n: int):
    """A progress callback that raises KeyboardInterrupt (as Ctrl-C would) on its n-th call: after n batches."""
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == n:
            raise KeyboardInterrupt

    return progress


# --- real lines, plain and tar.xz -------------------------------------------------------------------


@pytest.mark.parametrize("packed", [False, True])
def test_real_lines_plain_and_packed_give_the_search_paths_labels(tmp_path, packed):
    path = _tar_xz(FIXTURE.read_bytes(), tmp_path / "release-group.tar.xz") if packed else FIXTURE
    counts, catalog = _ingest(tmp_path, path)
    assert (counts.lines, counts.candidates, counts.filtered, counts.skipped) == (5, 3, 2, 0)
    assert _candidates(catalog) == {
        "48140466-cff6-3222-bd55-63c27e43190d": "Electronic",  # Portishead, Dummy
        "1b89b429-d527-3a49-9d71-977c6e6611cb": "Metal",  # KromleK
        "416bb5e5-c7d1-3977-8fd7-7c9daf6c2be6": "Rock",  # Fleetwood Mac, Rumours
    }


@pytest.mark.parametrize("packed", [False, True])
def test_progress_follows_the_bytes_read(tmp_path, monkeypatch, packed):
    monkeypatch.setattr(dump_module, "BATCH_LINES", 1)
    # Lines that do not compress away (random ids and titles), so the tarball is read in many chunks.
    rng = random.Random(1)
    noise = b"".join(
        json.dumps({"id": str(uuid.UUID(int=rng.getrandbits(128))), "title": rng.randbytes(48).hex()}).encode() + b"\n"
        for _ in range(4000)
    )
    path = _tar_xz(FIXTURE.read_bytes() + noise, tmp_path / "rg.tar.xz") if packed else FIXTURE
    seen = []
    _ingest(tmp_path, path, on_progress=lambda done, total: seen.append((done, total)))
    total = path.stat().st_size
    assert seen[-1] == (total, total) and all(t == total for _, t in seen)
    assert seen == sorted(seen) and 0 < seen[0][0] < total  # it moves as the file is read, not only at the end


def test_a_tarball_without_the_member_or_a_truncated_one_is_one_error(tmp_path):
    wrong = _tar_xz(FIXTURE.read_bytes(), tmp_path / "artist.tar.xz", member="mbdump/artist")
    with pytest.raises(EquigenError, match="holds no mbdump/release-group"):
        _ingest(tmp_path, wrong)
    good = _tar_xz(FIXTURE.read_bytes() * 50, tmp_path / "good.tar.xz").read_bytes()
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(EquigenError, match="not a readable tar.xz"):
        _ingest(tmp_path, cut, name="other.sqlite")


# --- hostile lines ----------------------------------------------------------------------------------


def test_hostile_lines_are_skipped_and_counted_and_the_rest_is_read(tmp_path):
    real = FIXTURE.read_bytes().splitlines(keepends=True)
    portishead = json.loads(real[1])
    hostile = [
        b"not json at all\n",  # not JSON (3 of them)
        b"\xff\xfe\x00 invalid utf-8\n",
        b"[1, 2, 3]\n",  # JSON, not an object: malformed (3 of them)
        json.dumps({**portishead, "tags": "rock"}).encode() + b"\n",  # wrong type
        json.dumps({**portishead, "tags": [{"name": "rock", "count": "many"}]}).encode() + b"\n",
        json.dumps({**portishead, "id": "../../etc/passwd"}).encode() + b"\n",
        json.dumps({**portishead, "id": GOOD_MBID.upper()}).encode() + b"\n",
        b'{"id": "' + GOOD_MBID.encode() + b'", "title": "' + b"x" * 10_000_000 + b'"}\n',  # 10 MB
        b"[" * 100_000 + b"\n",  # nesting: RecursionError, not a crash
        b"\n",
    ]
    path = tmp_path / "release-group"
    path.write_bytes(b"".join(hostile) + b"".join(real))
    counts, catalog = _ingest(tmp_path, path)
    assert counts.not_json == 3
    assert counts.malformed == 3
    assert counts.bad_mbid == 2
    assert counts.too_long == 1
    assert counts.candidates == 3  # every real line after them still read
    assert set(_candidates(catalog)) == {json.loads(x)["id"] for x in (real[1], real[3], real[4])}


def test_parse_dump_line_is_the_search_parser():
    tax = load_taxonomy(None)
    line = FIXTURE.read_bytes().splitlines()[1]
    group = parse_dump_line(line, tax.label, DEFAULT_SKIPPED_SECONDARY)
    assert group is not None and group.genre == "Electronic" and group.artist_name == "Portishead"
    live = FIXTURE.read_bytes().splitlines()[2]
    assert parse_dump_line(live, tax.label, DEFAULT_SKIPPED_SECONDARY) is None
    assert parse_dump_line(live, tax.label, ()) is not None  # --include-secondary live
    with pytest.raises(MalformedItem):
        parse_dump_line(b'{"id": "' + GOOD_MBID.encode() + b'", "primary-type": "Album", "tags": {}}', tax.label, ())
    # not an album: dropped by the type filter before its tags are read, as the search path would drop it
    assert parse_dump_line(b'{"id": "' + GOOD_MBID.encode() + b'", "primary-type": "Single"}', tax.label, ()) is None


# --- seeded order -------------------------------------------------------------------------------------


def test_candidates_are_taken_in_a_seeded_order_not_file_order(tmp_path):
    with simulator_in_thread(world_config=WorldConfig.small(seed=2), sim_config=SimConfig()) as sim:
        lines = list(dump_lines(sim.world))
    forward, backward = tmp_path / "forward", tmp_path / "backward"
    forward.write_bytes(b"".join(lines))
    backward.write_bytes(b"".join(reversed(lines)))
    orders = {}
    for name, path, seed in (("f0", forward, 0), ("b0", backward, 0), ("f1", forward, 1)):
        _, catalog = _ingest(tmp_path, path, seed=seed, name=f"{name}.sqlite")
        orders[name] = [g.mbid for g, _ in catalog.promote_dump_candidates("Rock", 20, "Rock/dump")]
    assert orders["f0"] == orders["b0"]  # the file's order does not matter
    assert orders["f0"] != orders["f1"]  # the seed does
    in_file = [json.loads(x)["id"] for x in lines]
    assert orders["f0"] != [m for m in in_file if m in set(orders["f0"])]
    assert candidate_rank(0, GOOD_MBID) == candidate_rank(0, GOOD_MBID) != candidate_rank(1, GOOD_MBID)


# --- resumable ingest ---------------------------------------------------------------------------------


def test_a_killed_ingest_resumes_to_what_an_uninterrupted_one_stores(tmp_path, monkeypatch):
    monkeypatch.setattr(dump_module, "BATCH_LINES", 200)
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig()) as sim:
        path = tmp_path / "release-group.tar.xz"
        write_dump(sim.world, path)
    whole, reference = _ingest(tmp_path, path, name="whole.sqlite")
    kill_after_two_batches = _interrupt_at_call(2)
    with pytest.raises(KeyboardInterrupt):
        _ingest(tmp_path, path, name="killed.sqlite", on_progress=kill_after_two_batches)
    with Catalog(tmp_path / "killed.sqlite") as killed:
        assert killed.dump_state()["counts"]["lines"] == 400 and not killed.dump_state()["done"]
    resumed, catalog = _ingest(tmp_path, path, name="killed.sqlite")
    assert resumed == whole
    assert _candidates(catalog) == _candidates(reference)
    again, _ = _ingest(tmp_path, path, name="killed.sqlite", on_progress=kill_after_two_batches)
    assert again == whole  # a finished ingest is not read again (no progress call, no kill)


def test_parse_workers_store_what_one_process_stores_in_file_order(tmp_path, monkeypatch):
    """A large dump is parsed in worker processes: the same counts, candidates and ranks as parsing here, with
    hostile lines among them, and a kill between batches resumes as in one process."""
    monkeypatch.setattr(dump_module, "BATCH_LINES", 150)  # several chunks in flight at once
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig()) as sim:
        lines = list(dump_lines(sim.world))
    lines[10:10] = [b"not json\n", b'{"id": "nope"}\n', b"[1, 2]\n", b"x" * (dump_module.MAX_LINE_BYTES + 5) + b"\n"]
    path = _tar_xz(b"".join(lines), tmp_path / "release-group.tar.xz")
    here, reference = _ingest(tmp_path, path, name="here.sqlite", workers=1)
    pooled, catalog = _ingest(tmp_path, path, name="pooled.sqlite", workers=2)
    assert pooled == here and here.skipped == 4 and here.candidates > 100
    expected = _candidates(reference)  # promotes them: read once
    assert _candidates(catalog) == expected
    kill_after_two_batches = _interrupt_at_call(2)
    with pytest.raises(KeyboardInterrupt):
        _ingest(tmp_path, path, name="killed.sqlite", workers=2, on_progress=kill_after_two_batches)
    with Catalog(tmp_path / "killed.sqlite") as killed:
        assert killed.dump_state()["counts"]["lines"] == 300
    resumed, again = _ingest(tmp_path, path, name="killed.sqlite", workers=2)
    assert resumed == here and _candidates(again) == expected


def test_a_parse_process_killed_is_one_error_and_the_ingest_resumes(tmp_path, monkeypatch):
    import multiprocessing

    monkeypatch.setattr(dump_module, "BATCH_LINES", 100)
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig()) as sim:
        path = tmp_path / "release-group"
        path.write_bytes(b"".join(dump_lines(sim.world)))
    here, reference = _ingest(tmp_path, path, name="here.sqlite", workers=1)

    def kill_a_parse_process(done, total):
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    with pytest.raises(EquigenError, match="parse process died") as err:
        _ingest(tmp_path, path, name="broken.sqlite", workers=2, on_progress=kill_a_parse_process)
    assert "\n" not in str(err.value)
    resumed, catalog = _ingest(tmp_path, path, name="broken.sqlite", workers=2)
    assert resumed == here and _candidates(catalog) == _candidates(reference)


# --- end to end against the simulator -------------------------------------------------------------


def test_fetch_from_a_simulated_dump_balances_with_no_musicbrainz_request(tmp_path):
    genres = ["Rock", "Jazz", "Metal"]
    with simulator_in_thread(world_config=WorldConfig.small(seed=7), sim_config=SimConfig()) as sim:
        path = tmp_path / "release-group.tar.xz"
        write_dump(sim.world, path)
        settings = load_settings(data_dir=tmp_path / "d", musicbrainz_url=sim.url, coverart_url=sim.url)
        options = FetchOptions(per_genre=6, genres=genres, from_dump=path, seed=3)
        stats = run_fetch(settings, options, console=quiet_console())
        services = [e.service for e in sim.log]
        again = run_fetch(settings, options, console=quiet_console())
        assert len(sim.log) == len(services)  # the finished fetch asks nothing again
    assert "musicbrainz" not in services and stats.mb_requests == 0
    assert services.count("coverart") >= stats.downloaded > 0
    assert all(stats.usable[g] >= 6 for g in genres) and stats.shortfalls == {}
    assert stats.dump["candidates"] > 0
    assert stats.dump["not_json"] + stats.dump["malformed"] + stats.dump["bad_mbid"] + stats.dump["too_long"] == 0
    assert (again.rounds, again.downloaded, again.usable) == (0, 0, stats.usable)


def test_dump_labels_equal_the_search_paths_on_the_same_world(tmp_path):
    genres = ["Electronic", "Rap (hip hop)", "Folk"]
    with simulator_in_thread(world_config=WorldConfig.small(seed=9), sim_config=SimConfig(rate_limit=0)) as sim:
        path = tmp_path / "release-group"
        write_dump(sim.world, path)
        searched = load_settings(
            data_dir=tmp_path / "s", musicbrainz_url=sim.url, coverart_url=sim.url, mb_interval=0.0
        )
        run_fetch(searched, FetchOptions(per_genre=4, genres=genres, download=False), console=quiet_console())
    tax = load_taxonomy(None)
    from_dump = {}
    for line in path.read_bytes().splitlines():
        group = parse_dump_line(line, tax.label, DEFAULT_SKIPPED_SECONDARY)
        if group is not None:
            from_dump[group.mbid] = (group.genre, group.label_votes, group.label_confidence, group.tags)
    with Catalog(tmp_path / "s" / "catalog.sqlite") as catalog:
        rows = catalog.covers_frame(status=None)
    assert len(rows) > 50
    for r in rows.itertuples():
        tags = tuple((n, c) for n, c in json.loads(r.tags))
        assert from_dump[r.mbid] == (r.genre, r.label_votes, r.label_confidence, tags), r.mbid


# --- the command line -------------------------------------------------------------------------------


def test_cli_simulate_writes_a_dump_and_fetch_refuses_bad_dump_options(tmp_path):
    out = tmp_path / "rg.tar.xz"
    res = run_cli("simulate", "--seed", "3", "--artists", "100", "--write-dump", str(out))
    assert res.returncode == 0, res.stderr
    with tarfile.open(out, "r:xz") as tar:
        member = tar.extractfile("mbdump/release-group")
        first = json.loads(member.readline())
    assert {"id", "title", "primary-type", "artist-credit", "tags", "genres", "aliases", "rating"} <= set(first)
    d = str(tmp_path / "d")
    assert_one_line_error(run_cli("fetch", "--data-dir", d, "--seed", "1"), "--seed")
    assert_one_line_error(run_cli("fetch", "--data-dir", d, "--from-dump", str(tmp_path / "nope")), "no such file")
    assert_one_line_error(
        run_cli("fetch", "--data-dir", d, "--from-dump", str(out), "--skip-discovery"), "--skip-discovery"
    )
    assert not Path(d).exists()  # a rejected fetch creates nothing


@pytest.mark.slow
def test_kill_minus_9_then_resume_equals_an_uninterrupted_fetch_from_a_dump(tmp_path):
    wc = WorldConfig.small(seed=3, n_artists=90, n_various=10)
    common = ["--per-genre", "12", "--concurrency", "2", "--genre", "Rock", "--genre", "Jazz", "--seed", "4"]
    dump = tmp_path / "release-group.tar.xz"

    def fetch(folder: Path, url: str) -> list[str]:
        args = ["fetch", "--data-dir", str(folder), "--musicbrainz-url", url, "--coverart-url", url]
        return [*args, "--from-dump", str(dump), *common]

    # The run that is killed: slow images so the kill lands mid-download.
    with simulator_in_thread(world_config=wc, sim_config=SimConfig(latency_ms=60)) as sim:
        write_dump(sim.world, dump)
        killed = tmp_path / "killed"
        proc = subprocess.Popen(
            [sys.executable, "-m", "equigen.cli", *fetch(killed, sim.url)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline, tried = time.time() + 120, 0
        while time.time() < deadline and proc.poll() is None and tried < 5:
            time.sleep(0.2)
            try:
                with closing(sqlite3.connect(killed / "catalog.sqlite", timeout=1)) as con:
                    tried = con.execute("SELECT COUNT(*) FROM covers WHERE status != 'pending'").fetchone()[0]
            except sqlite3.OperationalError:  # not created yet, or busy
                continue
        assert proc.poll() is None and tried >= 5, "fetch finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        resumed = run_cli(*fetch(killed, sim.url))
        assert resumed.returncode == 0, resumed.stderr
        assert "musicbrainz" not in {e.service for e in sim.log}
    with simulator_in_thread(world_config=wc, sim_config=SimConfig()) as sim2:
        clean = tmp_path / "clean"
        done = run_cli(*fetch(clean, sim2.url))
        assert done.returncode == 0, done.stderr

    def snapshot(folder: Path):
        with closing(sqlite3.connect(folder / "catalog.sqlite")) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            return [
                con.execute(sql).fetchall()
                for sql in (
                    "SELECT mbid, genre, label_votes, label_confidence, tags FROM release_groups ORDER BY mbid",
                    "SELECT mbid, status, sha256, phash, path FROM covers ORDER BY mbid",
                    "SELECT mbid, promoted FROM dump_candidates ORDER BY mbid",
                )
            ]

    assert snapshot(killed) == snapshot(clean)
