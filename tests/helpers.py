"""Helpers shared by the tests (fixtures stay in conftest.py; test modules import these directly)."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console

from equigen.core.errors import EXIT_USER_ERROR
from equigen.core.schema import METADATA_COLUMNS
from equigen.publish.shards import iter_batches, shard_files
from equigen.simulator import SimConfig

HARVEST_SEED = 11
HARVEST_PER_GENRE = 12

# MusicBrainz pacing in tests: 20 requests/s, and the simulator enforces that rate (503 + Retry-After beyond it),
# so the client's pacing is still what keeps a run out of trouble. The real rule, 1 request/s with default
# settings against a 1/s simulator, is tested once: test_fetch's test_default_settings_pace_musicbrainz_at_1_per_s.
TEST_MB_RATE = 20
TEST_MB_INTERVAL = 1 / TEST_MB_RATE


def paced_simulator(**knobs) -> SimConfig:
    """The simulator's settings for tests: MusicBrainz limited to TEST_MB_RATE requests per second."""
    return SimConfig(rate_limit=TEST_MB_RATE, **knobs)


def quiet_console() -> Console:
    return Console(stderr=True, quiet=True)


def copy_harvest(settings, dest: Path):
    """A private copy of a harvested data folder, for tests that modify it."""
    shutil.copytree(settings.data_dir, dest)
    return dataclasses.replace(settings, data_dir=dest)


def run_cli(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """`python -m equigen.cli ARGS` in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "equigen.cli", *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    """The CLI's contract for a user error: exit 2, one stderr line starting "error:" that says `needle`."""
    assert result.returncode == EXIT_USER_ERROR, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert needle in lines[0], lines[0]


def read_metadata(dataset_dir: Path) -> pd.DataFrame:
    """Every row's metadata columns (no image bytes) with its split, in shard order."""
    frames = []
    for split, paths in shard_files(dataset_dir).items():
        for path in paths:
            for batch in iter_batches(path, METADATA_COLUMNS):
                frames.append(batch.to_pandas().assign(split=split))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*METADATA_COLUMNS, "split"])


# The two HTTP clients of cover downloads: aiohttp on an event loop (coverart.get_cover_bytes) and libcurl in a
# download process (curl_covers.CurlCovers). Tests of the download policy run against both.
COVER_ENGINES = ("aiohttp", "curl") if importlib.util.find_spec("pycurl") is not None else ("aiohttp",)
TEST_UA = "equigen/test ( tests@example.org )"


async def get_cover(
    engine: str,
    url: str,
    *,
    max_bytes: int = 10_000_000,
    attempts: int = 3,
    backoff: float = 0.01,
    allow_private: bool = True,
    user_agent: str = TEST_UA,
    timeout: float = 10.0,
):
    """One cover's Outcome through `engine`, awaitable beside a test's own aiohttp server (curl runs in a thread).
    allow_private=False is what a global archive gets: no hop to a non-global address. timeout: per request (hop),
    as the download session's (download_workers.new_session) and a download process's."""
    import asyncio

    import aiohttp

    from equigen.harvest.coverart import GlobalOnlyResolver, get_cover_bytes
    from equigen.harvest.curl_covers import fetch_all

    if engine == "curl":
        settings = dict(connections=2, per_host=2, user_agent=user_agent, max_bytes=max_bytes, timeout=timeout)
        settings.update(max_attempts=attempts, backoff=backoff, allow_private=allow_private)
        return (await asyncio.to_thread(fetch_all, [url], **settings))[0]
    connector = aiohttp.TCPConnector(resolver=None if allow_private else GlobalOnlyResolver())
    session_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(10.0, timeout))
    async with aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        timeout=session_timeout,
        cookie_jar=aiohttp.DummyCookieJar(),  # as the download session
    ) as session:
        return await get_cover_bytes(
            session, url, max_bytes=max_bytes, max_attempts=attempts, backoff=backoff, allow_private=allow_private
        )
