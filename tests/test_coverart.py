"""The cover downloader's guards, over real sockets against the simulator's planted traps."""

from __future__ import annotations

import asyncio

import pytest
from helpers import COVER_ENGINES, TEST_UA, get_cover

from equigen.core.errors import EquigenError
from equigen.harvest.coverart import MAX_REDIRECTS, cover_url, get_cover_bytes
from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread

UA = {"User-Agent": TEST_UA}


@pytest.fixture(params=COVER_ENGINES)
def engine(request) -> str:
    """Each policy test runs through both HTTP clients of cover downloads."""
    return request.param


@pytest.fixture(scope="module")
def trap_sim():
    with simulator_in_thread(
        world_config=WorldConfig.small(seed=4), sim_config=SimConfig(bad_redirect=True, redirect_loop=True)
    ) as sim:
        yield sim


def _download(engine: str, sim, mbid: str, max_bytes: int = 10_000_000, attempts: int = 3):
    return asyncio.run(get_cover(engine, cover_url(sim.url, mbid, 500), max_bytes=max_bytes, attempts=attempts))


def test_redirect_to_non_http_scheme_is_refused(engine, trap_sim):
    out = _download(engine, trap_sim, trap_sim.planted["bad_redirect"])
    assert out.status == "failed" and "non-http" in out.error and out.data is None
    assert out.attempts == 1, "a refused redirect is not retried"


def test_endless_redirects_stop_after_the_limit(engine, trap_sim):
    before = len(trap_sim.log)
    out = _download(engine, trap_sim, trap_sim.planted["redirect_loop"])
    assert out.status == "failed" and f"more than {MAX_REDIRECTS} redirects" in out.error
    hops = [e for e in trap_sim.log[before:] if e.service != "sim"]
    assert len(hops) == MAX_REDIRECTS + 1


def test_oversize_body_is_capped_without_reading_it_all(engine, trap_sim):
    mbid = trap_sim.world.truth()["broken"]["oversize"][0]
    out = _download(engine, trap_sim, mbid)
    assert out.status == "bad_image" and "exceeds the cap" in out.error


def test_byte_cap_applies_to_ordinary_covers_too(engine, trap_sim):
    mbid = next(
        rg.mbid
        for rg in trap_sim.world.release_groups
        if rg.art == "ok" and not rg.flaky and rg.findable and rg.mbid not in trap_sim.planted.values()
    )
    assert _download(engine, trap_sim, mbid).status == "ok"
    assert _download(engine, trap_sim, mbid, max_bytes=100).status == "bad_image"


def test_redirect_chain_is_followed_to_the_image(engine, trap_sim):
    mbid = next(
        rg.mbid
        for rg in trap_sim.world.release_groups
        if rg.art == "ok" and not rg.flaky and rg.mbid not in trap_sim.planted.values()
    )
    out = _download(engine, trap_sim, mbid)
    assert out.status == "ok" and out.data == trap_sim.world.cover_bytes(mbid, 500)
    assert "/ia/" in out.final_url


def test_no_art_is_404_and_not_retried(engine, trap_sim):
    mbid = next(rg.mbid for rg in trap_sim.world.release_groups if rg.art == "none")
    out = _download(engine, trap_sim, mbid)
    assert (out.status, out.http_status, out.attempts) == ("no_art", 404, 1)


def test_flaky_cover_fails_after_too_few_attempts(engine):
    # 3 failures for 2 attempts: one failure of a flaky cover is a dropped connection, which aiohttp retries by
    # itself on a reused connection (not one of our attempts), so 3 fail 2 attempts wherever the drop falls.
    with simulator_in_thread(world_config=WorldConfig.small(seed=4), sim_config=SimConfig(flaky_failures=3)) as sim:
        mbid = sim.world.truth()["flaky"][0]
        first = _download(engine, sim, mbid, attempts=2)
        assert first.status == "failed" and first.attempts == 2
        assert _download(engine, sim, mbid, attempts=2).status == "ok"  # the next run gets it


def test_invalid_mbid_never_reaches_a_url():
    with pytest.raises(EquigenError):
        cover_url("http://127.0.0.1:1", "../../etc/passwd", 500)


def test_malformed_redirect_target_fails_that_cover_not_the_run(engine):
    """A Location that is not a URL (urljoin raises ValueError) is one failed cover, not a crashed run."""
    from aiohttp import web

    async def go():
        app = web.Application()
        app.router.add_get(
            "/{tail:.*}", lambda request: web.Response(status=307, headers={"Location": "http://[::1/x"})
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            return await get_cover(engine, f"http://127.0.0.1:{port}/release-group/x/front-500", max_bytes=1000)
        finally:
            await runner.cleanup()

    out = asyncio.run(go())
    assert out.status == "failed" and "malformed URL" in out.error and out.attempts == 1


def test_a_cover_session_sends_its_user_agent_on_every_hop_keeps_no_cookies_and_resolves_like_urljoin(engine, tmp_path):
    """The download session carries the User-Agent itself (no header passed per request) and no cookie jar; a
    relative Location with a query and an escaped space resolves to the URL urljoin gives. Both clients: the
    aiohttp session of downloads on an event loop, libcurl's in a download process."""
    from urllib.parse import urljoin

    from aiohttp import web

    from equigen.harvest.download_workers import CoverJob, new_session

    seen: list[tuple[str, str | None, str | None]] = []

    def hop(status: int, location: str, cookie: bool = False):
        async def handler(request):
            seen.append((request.path_qs, request.headers.get("User-Agent"), request.headers.get("Cookie")))
            response = web.Response(status=status, headers={"Location": location})
            if cookie:
                response.set_cookie("session", "abc")
            return response

        return handler

    async def image(request):
        seen.append((request.path_qs, request.headers.get("User-Agent"), request.headers.get("Cookie")))
        return web.Response(body=b"cover bytes", content_type="image/jpeg")

    async def go():
        app = web.Application()
        app.router.add_get("/release-group/x/front-500", hop(307, "../../img/a%20b?size=500", cookie=True))
        app.router.add_get("/img/a b", hop(302, "/final/c.jpg"))
        app.router.add_get("/final/c.jpg", image)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        # localhost, not an IP literal: aiohttp's default cookie jar would keep this cookie
        base = f"http://localhost:{site._server.sockets[0].getsockname()[1]}"
        job = CoverJob(base, 500, UA["User-Agent"], tmp_path, 1000, 10**6, 1, 1, 10.0)
        url = f"{base}/release-group/x/front-500"
        try:
            if engine == "curl":
                from equigen.harvest.curl_covers import fetch_all

                settings = dict(connections=2, per_host=2, user_agent=job.user_agent, max_bytes=1000, timeout=10.0)
                return base, (await asyncio.to_thread(fetch_all, [url], **settings))[0]
            async with new_session(job, 2, 2) as session:
                return base, await get_cover_bytes(session, url, max_bytes=1000)
        finally:
            await runner.cleanup()

    base, out = asyncio.run(go())
    assert out.status == "ok" and out.data == b"cover bytes"
    assert out.final_url == urljoin(
        urljoin(f"{base}/release-group/x/front-500", "../../img/a%20b?size=500"), "/final/c.jpg"
    )
    assert [path for path, _, _ in seen] == ["/release-group/x/front-500", "/img/a%20b?size=500", "/final/c.jpg"]
    assert all(agent == UA["User-Agent"] for _, agent, _ in seen)
    assert all(cookie is None for _, _, cookie in seen)  # the first hop's cookie is not sent back
