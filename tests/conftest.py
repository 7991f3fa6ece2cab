"""Shared fixtures: a simulator world harvested once per session by the real fetch code over sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import HARVEST_PER_GENRE, HARVEST_SEED, TEST_MB_INTERVAL, copy_harvest, paced_simulator, quiet_console

from equigen.core.config import load_settings
from equigen.harvest.fetch import FetchOptions, run_fetch
from equigen.simulator import WorldConfig, simulator_in_thread


@pytest.fixture(scope="session")
def harvest_sim():
    """A small simulator world (64 px covers) served on a free loopback port for the whole session."""
    with simulator_in_thread(
        world_config=WorldConfig.small(seed=HARVEST_SEED, duplicate_fraction=0.15), sim_config=paced_simulator()
    ) as handle:
        yield handle


@pytest.fixture(scope="session")
def _harvest(harvest_sim, tmp_path_factory):
    data_dir: Path = tmp_path_factory.mktemp("harvest")
    settings = load_settings(
        data_dir=data_dir,
        musicbrainz_url=harvest_sim.url,
        coverart_url=harvest_sim.url,
        mb_interval=TEST_MB_INTERVAL,
    )
    stats = run_fetch(settings, FetchOptions(per_genre=HARVEST_PER_GENRE), console=quiet_console())
    return settings, stats


@pytest.fixture(scope="session")
def harvested(_harvest):
    """Settings of a data folder holding a finished `equigen fetch --per-genre 12` of the small world.

    Treat it as read-only: copy it (copy_harvest) before running stages that write.
    """
    return _harvest[0]


@pytest.fixture(scope="session")
def harvest_stats(_harvest):
    return _harvest[1]


@pytest.fixture
def harvest_copy(harvested, tmp_path):
    return copy_harvest(harvested, tmp_path / "data")
