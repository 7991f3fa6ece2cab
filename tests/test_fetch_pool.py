"""The download-only stage validates in worker processes for large runs: same results as the thread pool."""

from __future__ import annotations

import asyncio
import sys

import pytest
from helpers import quiet_console

import equigen.downloader as downloader
from equigen.catalog import Catalog, ReleaseGroup
from equigen.config import load_settings
from equigen.fetch import run_fetch
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
    stats = run_fetch(settings, discover=False, console=quiet_console())
    with Catalog(settings.catalog_path) as cat:
        frame = cat.covers_frame(status=None).set_index("mbid").sort_index()
    return stats, frame


def test_process_pool_matches_thread_pool(tmp_path, monkeypatch):
    used = []
    real_pool = downloader.validation_pool
    monkeypatch.setattr(downloader, "validation_pool", lambda n: used.append(real_pool(n)) or used[-1])
    # A simulator of its own (flaky covers keep per-server failure counts), flaky ones fail 0 times
    # so both runs see the same server behaviour.
    with simulator_in_thread(world_config=WorldConfig.small(seed=5), sim_config=SimConfig(flaky_failures=0)) as sim:
        monkeypatch.setattr(downloader, "PROCESS_POOL_MIN_COVERS", 1 << 62)
        threads_stats, threads = _download_only(sim, tmp_path / "threads")
        monkeypatch.setattr(downloader, "PROCESS_POOL_MIN_COVERS", 1)
        procs_stats, procs = _download_only(sim, tmp_path / "procs")
    assert type(used[0]).__name__ == "ThreadPoolExecutor"
    assert type(used[1]).__name__ == "ProcessPoolExecutor"
    assert procs_stats.downloaded == threads_stats.downloaded == 60
    cols = ["status", "sha256", "phash", "width", "height", "bytes", "format", "path"]
    assert procs[cols].equals(threads[cols])
    assert (procs["status"] == "ok").sum() > 0
    for path in procs.loc[procs["status"] == "ok", "path"]:
        assert (tmp_path / "procs" / path).is_file()


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_downloads_run_on_uvloop_when_installed_and_asyncio_without(monkeypatch):
    pytest.importorskip("uvloop")
    assert downloader.run_async(_loop_module()).startswith("uvloop")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: import raises ImportError
    assert downloader.run_async(_loop_module()).startswith("asyncio")


def test_same_covers_on_either_event_loop(tmp_path, monkeypatch):
    with simulator_in_thread(world_config=WorldConfig.small(seed=6), sim_config=SimConfig(flaky_failures=0)) as sim:
        fast_stats, fast = _download_only(sim, tmp_path / "fast")
        monkeypatch.setitem(sys.modules, "uvloop", None)
        plain_stats, plain = _download_only(sim, tmp_path / "plain")
    assert fast_stats.downloaded == plain_stats.downloaded == 60
    cols = ["status", "sha256", "phash", "width", "height", "bytes", "format", "path"]
    assert fast[cols].equals(plain[cols])
