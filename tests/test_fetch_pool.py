"""Large download-only runs download in one process per core: the same results as on one event loop."""

from __future__ import annotations

import logging
import os
import sqlite3

import pytest
from helpers import quiet_console, run_cli

import equigen.harvest.downloader as downloader
from equigen.core.catalog import Catalog, ReleaseGroup
from equigen.core.config import load_settings
from equigen.harvest.fetch import FetchOptions, run_fetch
from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread


def _download_only(sim, data_dir):
    world = sim.world
    groups = [
        ReleaseGroup(
            rg.mbid,
            rg.title,
            rg.primary_type,
            rg.secondary_types,
            rg.first_release_date,
            rg.artist.mbid,
            rg.artist.name,
            rg.tags,
            rg.genre,
        )
        for rg in world.release_groups
        if rg.findable and rg.genre in world.taxonomy.tags
    ][:60]
    settings = load_settings(data_dir=data_dir, musicbrainz_url=sim.url, coverart_url=sim.url, max_attempts=4)
    with Catalog(settings.catalog_path) as cat:
        cat.add_release_groups(groups, found_via="test")
    stats = run_fetch(settings, FetchOptions(discover=False), console=quiet_console())
    with Catalog(settings.catalog_path) as cat:
        frame = cat.covers_frame(status=None).set_index("mbid").sort_index()
    return stats, frame


def test_fetch_skip_discovery_on_the_command_line_downloads_in_processes(tmp_path):
    """The command a user runs for a download-only run: its forkserver started before the verb's imports, one
    libcurl download process per core, every cover decided and recorded, the same covers as on one event loop."""
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig(flaky_failures=0)) as sim:
        world = sim.world
        groups = [
            ReleaseGroup(rg.mbid, rg.title, rg.primary_type, rg.secondary_types, rg.first_release_date,
                         rg.artist.mbid, rg.artist.name, rg.tags, rg.genre)
            for rg in world.release_groups if rg.findable and rg.genre in world.taxonomy.tags
        ][:300]  # fmt: skip
        assert len(groups) >= downloader.DOWNLOAD_PROCESSES_MIN_COVERS
        data_dir = tmp_path / "data"
        with Catalog(data_dir / "catalog.sqlite") as cat:
            cat.add_release_groups(groups, found_via="test")
        result = run_cli(
            "-v", "fetch", "--skip-discovery", "--data-dir", str(data_dir), "--musicbrainz-url", sim.url,
            "--coverart-url", sim.url, timeout=300,
        )  # fmt: skip
        expected = {rg.mbid: "ok" if rg.art == "ok" else None for rg in world.release_groups}
    assert result.returncode == 0, result.stderr[-3000:]
    assert "downloading in 2 processes" in result.stdout + result.stderr or os.cpu_count() != 2
    with Catalog(data_dir / "catalog.sqlite") as cat:
        frame = cat.covers_frame(status=None)
    assert len(frame) == len(groups) and "pending" not in set(frame["status"])
    ok = frame[frame["status"] == "ok"]
    assert len(ok) > 200 and all(expected[m] == "ok" for m in ok["mbid"])
    assert all((data_dir / path).is_file() for path in ok["path"])


def _spy_backends(monkeypatch) -> list[int]:
    used: list[int] = []
    real = downloader.download_process_count
    monkeypatch.setattr(downloader, "download_process_count", lambda *a: used.append(real(*a)) or used[-1])
    return used


def test_download_processes_store_what_the_event_loop_stores(tmp_path, monkeypatch):
    used = _spy_backends(monkeypatch)
    # A simulator of its own (flaky covers keep per-server failure counts), flaky ones fail 0 times
    # so both runs see the same server behaviour.
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig(flaky_failures=0)) as sim:
        monkeypatch.setattr(downloader, "DOWNLOAD_PROCESSES_MIN_COVERS", 1 << 62)
        loop_stats, on_loop = _download_only(sim, tmp_path / "loop")
        monkeypatch.setattr(downloader, "DOWNLOAD_PROCESSES_MIN_COVERS", 1)
        procs_stats, procs = _download_only(sim, tmp_path / "procs")
    assert used[0] == 0 and used[1] == min(len(os.sched_getaffinity(0)), 32) >= 2
    assert procs_stats.downloaded == loop_stats.downloaded == 60
    assert procs_stats.by_status == loop_stats.by_status
    cols = ["status", "sha256", "phash", "width", "height", "bytes", "format", "path"]
    assert procs[cols].equals(on_loop[cols])
    assert (procs["status"] == "ok").sum() > 0
    for path in procs.loc[procs["status"] == "ok", "path"]:
        assert (tmp_path / "procs" / path).is_file()


def test_download_processes_log_their_retries_through_the_parent(tmp_path, monkeypatch, caplog):
    """-v and --log-file see a download process's retries: its log lines travel to the parent."""
    monkeypatch.setattr(downloader, "DOWNLOAD_PROCESSES_MIN_COVERS", 1)
    config = SimConfig(flaky_failures=0, image_error_rate=0.3)
    with (
        caplog.at_level(logging.INFO, logger="equigen"),
        simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=config) as sim,
    ):
        stats, frame = _download_only(sim, tmp_path / "procs")
    retries = [r for r in caplog.records if r.name == "equigen.harvest.coverart" and "retry" in r.getMessage()]
    assert retries and stats.downloaded == 60
    assert any("downloading in" in r.getMessage() for r in caplog.records)


def test_without_pycurl_a_large_download_only_run_stays_on_the_event_loop(tmp_path, monkeypatch, caplog):
    """Where pycurl has no wheel (Linux on ARM) it is not installed: download-only runs then download on the
    parent's event loop with aiohttp, and say so at -v."""
    import importlib.util

    from equigen.harvest import download_workers

    used = _spy_backends(monkeypatch)
    monkeypatch.setattr(downloader, "DOWNLOAD_PROCESSES_MIN_COVERS", 1)
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "pycurl" else real_find_spec(name, *args)

    monkeypatch.setattr(download_workers.importlib.util, "find_spec", find_spec)
    assert not download_workers.libcurl_available()
    with (
        caplog.at_level(logging.INFO, logger="equigen"),
        simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig(flaky_failures=0)) as sim,
    ):
        stats, frame = _download_only(sim, tmp_path / "loop")
    assert used == [0] and stats.downloaded == 60 and (frame["status"] == "ok").sum() > 0
    assert any("pycurl is not installed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("processes", [False, True])
def test_a_folder_that_cannot_take_images_stops_the_run_keeping_results(tmp_path, monkeypatch, processes):
    """Storing fails (here images/ is a file; a full disk is the same OSError): the run stops with that error,
    and the results already known (covers without art) are recorded, not lost."""
    monkeypatch.setattr(downloader, "DOWNLOAD_PROCESSES_MIN_COVERS", 1 if processes else 1 << 62)
    data_dir = tmp_path / "data"
    (data_dir / "images").parent.mkdir(parents=True)
    (data_dir / "images").write_text("not a folder")
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig(flaky_failures=0)) as sim:
        with pytest.raises(OSError):
            _download_only(sim, data_dir)
    with Catalog(data_dir / "catalog.sqlite") as cat:
        frame = cat.covers_frame(status=None)
    assert "ok" not in set(frame["status"])
    assert (frame["status"] == "pending").sum() > 0  # the rest waits for the next run


@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [False, True])
def test_a_catalog_that_cannot_be_written_stops_the_run_not_hangs_it(tmp_path, monkeypatch, processes):
    """Recording results fails (another writer holds the database, its disk is full): the run stops with that
    error on both backends; in download processes the error happens in the loop's reader callback."""
    monkeypatch.setattr(downloader, "DOWNLOAD_PROCESSES_MIN_COVERS", 1 if processes else 1 << 62)

    def locked(self, batch):
        raise sqlite3.OperationalError("database is locked")

    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig(flaky_failures=0)) as sim:
        monkeypatch.setattr(Catalog, "record_covers", locked)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _download_only(sim, tmp_path / "data")


def test_validation_hashes_on_one_blas_thread_and_gives_the_threads_back():
    """Download processes hash covers with one BLAS thread (OpenBLAS's spinning helpers took the other core's
    CPU); the limit ends with its context, so the parent's later work keeps its threads."""
    from threadpoolctl import threadpool_info

    from equigen.harvest.download_workers import one_blas_thread

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    assert before, "NumPy's BLAS is visible to threadpoolctl"
    with one_blas_thread():
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
