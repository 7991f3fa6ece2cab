"""Hostile and unlucky servers on real sockets: decoded-size caps, 429, redirects, endless paging, the lock."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
import subprocess
import sys
import tracemalloc
import zlib

import aiohttp
import pytest
from aiohttp import web
from helpers import COVER_ENGINES, get_cover, quiet_console

from equigen.core.catalog import Catalog
from equigen.core.config import load_settings
from equigen.core.errors import EquigenError
from equigen.core.lock import data_folder_lock
from equigen.core.taxonomy import load_taxonomy
from equigen.harvest.fetch import FetchOptions, run_fetch
from equigen.harvest.musicbrainz import MAX_ANSWER_BYTES, MusicBrainzClient, parse_release_group

MBID = "0f8c8b4e-2d5a-4b2b-9a57-6e4f1f7a1c01"


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of `inflated` zero bytes, built in pieces (the compressed body is ~1/1000 of it)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(inflated >> 20)), packer.flush()])


def answer(**response):
    """A handler that always gives the same response."""

    async def handler(request):
        return web.Response(**response)

    return handler


async def serve(routes: dict):
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.parametrize("engine", COVER_ENGINES)
def test_gzip_bomb_cover_is_capped_by_decoded_bytes_and_a_genuine_gzip_cover_passes(engine):
    bomb = gzip_bomb(256 << 20)  # 256 MiB inflated, ~250 KB on the wire
    jpeg = bytes(range(256)) * 64  # any bytes: get_cover_bytes does not decode images

    async def main():
        runner, url = await serve(
            {
                "/bomb": answer(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "image/jpeg"}),
                "/gz": answer(body=gzip.compress(jpeg), headers={"Content-Encoding": "gzip"}),
            }
        )
        try:
            tracemalloc.start()
            bombed = await get_cover(engine, f"{url}/bomb", max_bytes=10_000_000)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            genuine = await get_cover(engine, f"{url}/gz", max_bytes=10_000_000)
        finally:
            await runner.cleanup()
        return bombed, peak, genuine

    bombed, peak, genuine = asyncio.run(main())
    assert bombed.status == "bad_image" and "decoded body exceeds" in bombed.error and bombed.attempts == 1
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB while refusing a gzip bomb"
    assert genuine.status == "ok" and genuine.data == jpeg


def _mb(url: str, session) -> MusicBrainzClient:
    return MusicBrainzClient(session, url, "equigen-test/1 ( test@example.org )", interval=0.0)


def test_musicbrainz_answers_are_capped_and_checked():
    deep = b"[" * 200_000 + b"]" * 200_000
    calls = {"busy": 0}

    async def busy(request):
        calls["busy"] += 1
        if calls["busy"] == 1:  # a proxy's 429 with Retry-After is a backoff, not the end of the harvest
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.json_response({"count": 0, "offset": 0, "release-groups": []})

    async def main():
        runner, url = await serve(
            {
                "/ws/2/bomb": answer(body=gzip_bomb(64 << 20), headers={"Content-Encoding": "gzip"}),
                "/ws/2/deep": answer(body=deep, content_type="application/json"),
                "/ws/2/moved": answer(status=302, headers={"Location": "file:///etc/passwd"}),
                "/ws/2/busy": busy,
            }
        )
        out = {}
        try:
            async with aiohttp.ClientSession() as session:
                client = _mb(url, session)
                for name in ("bomb", "deep", "moved"):
                    with pytest.raises(EquigenError) as err:
                        await client.get_json(f"/ws/2/{name}", {})
                    out[name] = str(err.value)
                out["busy"] = await client.get_json("/ws/2/busy", {})
        finally:
            await runner.cleanup()
        return out

    out = asyncio.run(main())
    assert f"more than {MAX_ANSWER_BYTES:,} bytes" in out["bomb"]
    assert "non-JSON" in out["deep"]
    assert "redirect" in out["moved"]
    assert out["busy"]["count"] == 0 and calls["busy"] == 2
    assert all("\n" not in message for message in out.values() if isinstance(message, str))


def test_a_server_repeating_its_pages_does_not_keep_fetch_paging(tmp_path):
    """count never ends, every page the same three albums: each tag stops after the page that brings nothing new."""
    items = [
        {
            "id": f"{MBID[:-1]}{i}",
            "title": f"t{i}",
            "primary-type": "Album",
            "artist-credit": [{"name": "a", "artist": {"id": MBID, "name": "a"}}],
            "tags": [{"name": "jazz", "count": 2}],
        }
        for i in range(3)
    ]
    requests = []

    async def search(request):
        requests.append(request.query.get("query"))
        return web.json_response(
            {"created": "x", "count": 10**6, "offset": int(request.query.get("offset", 0)), "release-groups": items}
        )

    async def main():
        runner, url = await serve({"/ws/2/release-group": search, "/release-group/{mbid}/{which}": answer(status=404)})
        try:
            settings = load_settings(data_dir=tmp_path / "d", musicbrainz_url=url, coverart_url=url, mb_interval=0.0)
            return await asyncio.to_thread(
                run_fetch, settings, FetchOptions(per_genre=5, genres=["Jazz"]), console=quiet_console()
            )
        finally:
            await runner.cleanup()

    stats = asyncio.run(main())
    names = len(load_taxonomy().search_names("Jazz"))
    assert stats.repeated_searches >= 1 and len(requests) <= 2 * names
    assert stats.shortfalls == {"Jazz": 5}


def test_a_second_writer_on_one_data_folder_is_refused_naming_the_first(tmp_path):
    data = tmp_path / "d"
    with data_folder_lock(data, "fetch"):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "equigen.cli",
                "fetch",
                "--data-dir",
                str(data),
                "--musicbrainz-url",
                "http://127.0.0.1:9",
                "--coverart-url",
                "http://127.0.0.1:9",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        r2 = subprocess.run(
            [sys.executable, "-m", "equigen.cli", "dedup", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    for result in (r, r2):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1, result.stderr
        assert "in use by `equigen fetch`" in lines[0] and "pid" in lines[0]
    # released: the kernel drops the lock with its holder, so a later writer proceeds
    with data_folder_lock(data, "dedup"):
        pass
    r3 = subprocess.run(
        [sys.executable, "-m", "equigen.cli", "balance", "--data-dir", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r3.returncode != 0 and "run `equigen fetch` first" in r3.stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_lone_surrogate_in_a_title_is_stored_not_fatal(tmp_path):
    raw = {
        "id": MBID,
        "title": "bad \ud800 title",
        "primary-type": "Album",
        "tags": [{"name": "jazz\udc00", "count": 1}],
    }
    group = parse_release_group(raw, load_taxonomy().label)
    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.add_release_groups([group], found_via="test")
        assert cat.covers_frame(status=None).title.tolist() == ["bad \ufffd title"]
    json.dumps(group.tags)  # storable as JSON, no surrogates left


@pytest.mark.parametrize("engine", COVER_ENGINES)
def test_hops_to_non_global_addresses_are_refused_unless_the_archive_is_local(engine):
    from equigen.harvest.coverart import is_local_url

    seen = []

    async def image(request):
        seen.append(request.path)
        return web.Response(body=b"\xff\xd8 not really a jpeg")

    async def main():
        runner, url = await serve({"/img": image, "/hop": answer(status=307, headers={"Location": "/img"})})
        port = url.rsplit(":", 1)[1]
        try:
            # a host name that resolves to loopback: refused where it resolves, before any connection
            by_name = await get_cover(engine, f"http://localhost:{port}/hop", max_bytes=10_000, allow_private=False)
            served_by_name = list(seen)
            # an IP literal: refused before the request
            by_address = await get_cover(engine, f"{url}/hop", max_bytes=10_000, allow_private=False)
            local_archive = await get_cover(engine, f"{url}/hop", max_bytes=10_000)
        finally:
            await runner.cleanup()
        return by_name, served_by_name, by_address, local_archive

    by_name, served_by_name, by_address, local_archive = asyncio.run(main())
    assert by_name.status == "refused" and "no global address" in by_name.error and by_name.attempts == 1
    assert served_by_name == [], "a refused host got a request"
    assert by_address.status == "refused" and by_address.attempts == 1
    assert local_archive.status == "ok" and seen == ["/img"]
    assert (
        is_local_url("http://127.0.0.1:8765") and is_local_url("http://10.1.2.3") and is_local_url("http://localhost")
    )
    assert not is_local_url("https://coverartarchive.org") and not is_local_url("http://8.8.8.8")


def test_stored_images_follow_the_umask_and_oversized_thumbnails_are_refused(tmp_path):
    import io
    import os
    import stat

    from PIL import Image

    from equigen.harvest.download_workers import validate_and_store

    buffer = io.BytesIO()
    Image.new("RGB", (1200, 1100), (20, 90, 160)).save(buffer, "JPEG")
    data = buffer.getvalue()
    too_big = validate_and_store(tmp_path, 40_000_000, 32, MBID, "u", 200, data, max_side=2 * 500)
    assert too_big.status == "bad_image" and "larger than the thumbnail" in too_big.error
    fine = validate_and_store(tmp_path, 40_000_000, 32, MBID, "u", 200, data, max_side=2 * 1200)
    assert fine.status == "ok"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / fine.path).stat().st_mode) == 0o666 & ~mask


def test_a_tiny_parquet_that_inflates_is_refused_before_reading(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from equigen.core.manifest import read_manifest

    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"title": ["x" * (96 << 20)]}), path, compression="zstd")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(EquigenError, match="more than such a file can hold"):
        read_manifest(path)


def test_a_damaged_catalog_is_a_one_line_error(harvested, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(harvested.data_dir, data)
    catalog = data / "catalog.sqlite"
    with sqlite3.connect(catalog) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = catalog.stat().st_size
    with open(catalog, "r+b") as handle:  # scribble over the middle pages, keep the header
        handle.seek(size // 3)
        handle.write(bytes(range(256)) * ((size // 3) // 256))
    r = subprocess.run(
        [sys.executable, "-m", "equigen.cli", "dedup", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "catalog" in lines[0]


def test_disk_full_during_fetch_is_one_line_and_keeps_what_was_stored(tmp_path):
    import os

    from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread

    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("needs root to mount a small tmpfs (a real full disk)")
    try:
        wc = WorldConfig.small(seed=3, cover_px=None)  # 500 px covers: a few dozen fill the disk
        with simulator_in_thread(world_config=wc, sim_config=SimConfig(rate_limit=0)) as sim:

            def fetch():
                return subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "equigen.cli",
                        "fetch",
                        "--data-dir",
                        str(mount / "d"),
                        "--musicbrainz-url",
                        sim.url,
                        "--coverart-url",
                        sim.url,
                        "--mb-interval",
                        "0",
                        "--per-genre",
                        "40",
                        "--genre",
                        "Rock",
                        "--genre",
                        "Jazz",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )

            full = fetch()
            lines = [line for line in full.stderr.splitlines() if line.strip()]
            assert full.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), full.stderr
            assert "space" in lines[0]
            with sqlite3.connect(f"file:{mount / 'd' / 'catalog.sqlite'}?mode=ro", uri=True) as con:
                kept = {p for (p,) in con.execute("SELECT path FROM covers WHERE status = 'ok'")}
            # free space (grow the filesystem), run the same command: it resumes and finishes
            subprocess.run(["mount", "-o", "remount,size=64m", str(mount)], check=True)
            done = fetch()
        assert done.returncode == 0, done.stderr[-500:]
        with sqlite3.connect(f"file:{mount / 'd' / 'catalog.sqlite'}?mode=ro", uri=True) as con:
            stored = con.execute("SELECT path FROM covers WHERE status = 'ok'").fetchall()
        # what the full disk let through stayed stored, and the resumed run added the rest (Rock alone fills 40)
        assert kept <= {p for (p,) in stored} and len(stored) > max(len(kept), 40)
        assert all((mount / "d" / p).is_file() for (p,) in stored)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_the_baseline_refuses_a_shard_that_inflates_before_reading_it(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from equigen.baseline.data import load_split
    from equigen.publish.shards import shard_name, shard_schema

    schema = shard_schema(["Jazz", "Metal"])
    row = {name: [None] for name in schema.names}
    row["image"] = [{"bytes": b"\0" * (96 << 20), "path": "x.jpg"}]  # zstd makes it a few KB on disk
    row["label"] = [0]
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / shard_name("train", 0, 1)
    pq.write_table(pa.Table.from_pydict(row, schema=schema), path, compression="zstd")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(EquigenError, match="more than such a file can hold"):
        load_split(tmp_path, "train", image_size=32, num_classes=2)
