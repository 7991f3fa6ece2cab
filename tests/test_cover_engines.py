"""Both HTTP clients of cover downloads give the same Outcome for every answer a server can give: aiohttp
(coverart.get_cover_bytes, downloads on an event loop) and libcurl (curl_covers.CurlCovers, a download process).
Statuses and their attempts, retries, every form of redirect, size caps, timeouts, address checks on every hop,
TLS and proxies, each over real sockets on 127.0.0.1. Then the download process's loop (download_workers._serve):
it stops when told, leaves when its parent does, and sleeps when idle."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import ipaddress
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Pipe

import pytest
from aiohttp import web
from helpers import COVER_ENGINES, TEST_UA, get_cover

pytest.importorskip("pycurl", reason="pycurl is not installed here (no wheel for this platform)")

from equigen.harvest import coverart, curl_covers  # noqa: E402
from equigen.harvest.coverart import MAX_REDIRECTS, Outcome
from equigen.harvest.download_workers import CoverJob, _serve, answer_finished

MBID = "0f8c8b4e-2d5a-4b2b-9a57-6e4f1f7a1c01"
CAP = 1000  # max_bytes in these tests

engines = pytest.mark.parametrize("engine", COVER_ENGINES)


def reply(status: int, *headers: str | bytes, body: bytes = b"", length: bool = True) -> bytes:
    """An HTTP/1.1 answer, byte for byte as a server would write it, closing its connection."""
    lines = [f"HTTP/1.1 {status} Whatever".encode(), b"Connection: close"]
    lines += [h if isinstance(h, bytes) else h.encode("latin-1") for h in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@contextlib.asynccontextmanager
async def raw_server(routes: Callable[[str], dict], host: str = "127.0.0.1"):
    """A server on `host` that writes, for each request target in routes(base URL), the bytes given, or runs the
    coroutine given with the writer (answers that take their time); any other target answers 200 "IMG:<target>".
    Yields (base URL, seen): seen lists (target, request head) of every request."""
    seen: list[tuple[str, bytes]] = []
    table: dict = {}
    tasks: set[asyncio.Task] = set()

    async def on_connection(reader, writer):
        tasks.add(asyncio.current_task())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode("latin-1")
            seen.append((target, head))
            answer = table.get(target, reply(200, body=b"IMG:" + target.encode("latin-1")))
            if callable(answer):
                await answer(writer)
            else:
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, host, 0)
    base = f"http://{host}:{server.sockets[0].getsockname()[1]}"
    table.update(routes(base))
    try:
        yield base, seen
    finally:
        server.close()
        for task in tasks:
            task.cancel()


def fetch(engine: str, routes: Callable[[str], dict], path: str = "/start", **settings):
    """(Outcome, requests seen, base URL) of one cover at `path` through `engine`."""
    settings = {"max_bytes": CAP, "attempts": 2, **settings}

    async def go():
        async with raw_server(routes) as (base, seen):
            return await get_cover(engine, base + path, **settings), seen, base

    return asyncio.run(go())


def _retried_then_ok():
    calls = []

    async def answer(writer):
        calls.append(1)
        writer.write(reply(503) if len(calls) == 1 else reply(200, body=b"second time"))

    return answer


# name: (answer at /start, or a function that makes a fresh one; (status, attempts, http_status); the data or a
# piece of the error)
ANSWERS = {
    "ok": (reply(200, body=b"cover"), ("ok", 1, 200), b"cover"),
    "no front cover": (reply(404, body=b"Not Found"), ("no_art", 1, 404), "404"),
    "busy, retried": (reply(503), ("failed", 2, 503), "HTTP 503"),
    "rate limited, retried": (reply(429, "Retry-After: 0"), ("failed", 2, 429), "HTTP 429"),
    "server error, retried": (reply(500), ("failed", 2, 500), "HTTP 500"),
    "a retry that succeeds": (_retried_then_ok, ("ok", 2, 200), b"second time"),
    "HTTP/1.0 without a length": (b"HTTP/1.0 200 OK\r\n\r\n" + b"y" * 500, ("ok", 1, 200), b"y" * 500),
    "chunked": (
        reply(200, "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", length=False),
        ("ok", 1, 200),
        b"hello world",
    ),
    "exactly the cap": (reply(200, body=b"c" * CAP), ("ok", 1, 200), b"c" * CAP),
    "a declared length over the cap": (reply(200, body=b"c" * (CAP + 1)), ("bad_image", 1, 200), "exceeds the cap"),
    "a body over the cap, no length declared": (
        b"HTTP/1.0 200 OK\r\n\r\n" + b"c" * (CAP + 1),
        ("bad_image", 1, 200),
        "exceeds the cap",
    ),
    "a 404 declaring a length over the cap": (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 99999999\r\n\r\n" + b"x" * 100,
        ("no_art", 1, 404),
        "404",
    ),
    "a 404 with a long body": (reply(404, body=b"x" * 100_000), ("no_art", 1, 404), "404"),
    "a 503 with a long body": (reply(503, body=b"x" * 100_000), ("failed", 2, 503), "HTTP 503"),
    "body cut short": (reply(200, "Content-Length: 500", body=b"z" * 100, length=False), ("failed", 2, None), ""),
    "dropped without an answer": (b"", ("failed", 2, None), ""),
    "not HTTP": (b"garbage here\r\n\r\n", ("failed", 2, None), ""),
    "300 is not followed": (reply(300, "Location: /img"), ("failed", 1, 300), "HTTP 300"),
    "204": (reply(204, length=False), ("failed", 1, 204), "HTTP 204"),
    "an encoding nobody asked for": (reply(200, "Content-Encoding: xyz", body=b"abc"), ("failed", 2, None), ""),
    "two Locations": (reply(302, "Location: /one", "Location: /two"), ("failed", 2, None), ""),
}


@engines
@pytest.mark.parametrize("case", list(ANSWERS))
def test_every_kind_of_answer_gives_the_same_status_and_attempts(engine, case):
    answer, expected, detail = ANSWERS[case]
    answer = answer if isinstance(answer, bytes) else answer()
    out, seen, _ = fetch(engine, lambda base: {"/start": answer})
    assert (out.status, out.attempts, out.http_status) == expected, out
    # no hop beyond /start, a request per attempt (aiohttp resends once by itself when a connection drops, under
    # one of our attempts)
    assert {target for target, _ in seen} == {"/start"} and len(seen) >= out.attempts
    if isinstance(detail, bytes):
        assert out.data == detail
    else:
        assert out.data is None and detail in out.error


# Location (as the server writes it, from /dir/sub/start), the target then requested, the fragment kept
LOCATIONS = {
    "relative": (b"img/a.jpg", "/dir/sub/img/a.jpg", ""),
    "dot segments": (b"../../x/./y/../z?q=1", "/x/z?q=1", ""),
    "absolute path": (b"/abs", "/abs", ""),
    "absolute URL": (b"{base}/full", "/full", ""),
    "protocol-relative": (b"//{hostport}/pr", "/pr", ""),
    "query only": (b"?size=500", "/dir/sub/start?size=500", ""),
    "with a fragment": (b"/f.jpg#frag", "/f.jpg", "#frag"),
    "spaces in the path": (b"/a b/c d", "/a%20b/c%20d", ""),
    "a space in the query": (b"/q?x=1 2", "/q?x=1+2", ""),
    "escaped already": (b"/e%20f", "/e%20f", ""),
    "UTF-8": ("/café/€".encode(), "/caf%C3%A9/%E2%82%AC", ""),
    "a byte that is not UTF-8": (b"/caf\xe9", "/caf%E9", ""),
    "a tab": (b"/a\tb", "/a%09b", ""),
    "a backslash": (b"\\\\evil\\x", "/dir/sub/%5C%5Cevil%5Cx", ""),
}


@engines
@pytest.mark.parametrize("case", list(LOCATIONS))
def test_every_form_of_location_leads_to_the_same_url(engine, case):
    """No byte of a Location is dropped or changed: what is not URL text is percent-encoded (as libcurl does),
    relative forms resolve as urljoin resolves them."""
    location, target, fragment = LOCATIONS[case]

    def routes(base):
        hostport = base.split("//", 1)[1].encode()
        where = location.replace(b"{base}", base.encode()).replace(b"{hostport}", hostport)
        return {"/dir/sub/start": reply(302, b"Location: " + where)}

    out, seen, base = fetch(engine, routes, path="/dir/sub/start")
    assert out.status == "ok" and out.data == b"IMG:" + target.encode(), out
    assert [t for t, _ in seen] == ["/dir/sub/start", target]
    assert out.final_url == base + target + fragment


@engines
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_each_redirect_status_is_followed(engine, status):
    out, seen, _ = fetch(engine, lambda base: {"/start": reply(status, "Location: /img")})
    assert out.status == "ok" and out.data == b"IMG:/img" and [t for t, _ in seen] == ["/start", "/img"]


# Location: the piece of the error (failed at once, not retried, and nothing requested there)
BAD_LOCATIONS = {
    None: "without Location",
    "": "without Location",
    "ftp://example.org/x": "non-http",
    "file:///etc/passwd": "non-http",
    "javascript:alert(1)": "non-http",
    "http://[::1/x": "malformed",
    "http://127.0.0.1:99999/x": "malformed",
    "http://exa mple.invalid/x": "malformed",
    "http://café.invalid/x": "malformed",
    # legacy numeric IPv4: libcurl reads each as 127.0.0.1, aiohttp refuses the decimal ones at connect time
    "http://2130706433:{port}/x": "malformed",
    "http://0177.0.0.1:{port}/x": "malformed",
    "http://127.1:{port}/x": "malformed",
    "http://0x7f.1:{port}/x": "malformed",
}


@engines
@pytest.mark.parametrize("location", list(BAD_LOCATIONS))
def test_a_bad_redirect_target_fails_that_cover_at_once(engine, location):
    def routes(base):
        headers = [] if location is None else [f"Location: {location}".replace("{port}", base.rsplit(":", 1)[1])]
        return {"/start": reply(302, *[h.encode() for h in headers])}

    out, seen, _ = fetch(engine, routes)
    assert (out.status, out.attempts, out.http_status) == ("failed", 1, 302), out
    assert BAD_LOCATIONS[location] in out.error and [t for t, _ in seen] == ["/start"]


@engines
def test_credentials_in_a_location_are_not_sent(engine):
    def routes(base):
        return {"/start": reply(307, f"Location: http://user:secret@{base.split('//', 1)[1]}/img")}

    out, seen, base = fetch(engine, routes)
    assert out.status == "ok" and out.final_url == f"{base}/img"
    assert b"authorization" not in seen[1][1].lower() and "secret" not in out.final_url


@engines
@pytest.mark.parametrize("hops", [MAX_REDIRECTS, MAX_REDIRECTS + 1])
def test_the_redirect_limit_is_the_same(engine, hops):
    def routes(base):
        return {f"/r{i}": reply(302, f"Location: /r{i + 1}" if i + 1 < hops else "Location: /img") for i in range(hops)}

    out, seen, _ = fetch(engine, routes, path="/r0")
    if hops <= MAX_REDIRECTS:
        assert out.status == "ok" and len(seen) == hops + 1
    else:
        assert out.status == "failed" and f"more than {MAX_REDIRECTS} redirects" in out.error
        assert len(seen) == MAX_REDIRECTS + 1 and out.attempts == 1


@engines
@pytest.mark.parametrize(
    "answer",
    [
        reply(302, "Location: /img", body=b"x" * 100_000),  # longer than the cap: libcurl drops and cuts it
        b"HTTP/1.1 302 Found\r\nLocation: /img\r\nContent-Length: 99999999\r\n\r\n" + b"x" * 100,
    ],
    ids=["long body", "declared over the cap"],
)
def test_a_redirect_is_followed_whatever_its_body(engine, answer):
    """aiohttp never reads a redirect's body; libcurl reads a short one (keeping the connection) and cuts a long
    one, and neither is held to the image's cap."""
    out, seen, _ = fetch(engine, lambda base: {"/start": answer})
    assert out.status == "ok" and out.data == b"IMG:/img" and [t for t, _ in seen] == ["/start", "/img"]


@engines
def test_a_server_that_never_answers_times_out_each_attempt(engine):
    async def silent(writer):
        await asyncio.sleep(30)

    started = time.monotonic()
    out, seen, _ = fetch(engine, lambda base: {"/start": silent}, timeout=0.3)
    took = time.monotonic() - started
    assert (out.status, out.attempts, out.http_status) == ("failed", 2, None) and len(seen) == 2
    assert 0.6 <= took < 2.5, took


@engines
def test_a_server_that_trickles_times_out_each_attempt(engine):
    async def trickle(writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    started = time.monotonic()
    out, seen, _ = fetch(engine, lambda base: {"/start": trickle}, timeout=0.4)
    assert (out.status, out.attempts) == ("failed", 2) and len(seen) == 2
    assert time.monotonic() - started < 2.5


def _pretend_global(monkeypatch, address: str) -> None:
    """Make `address` (on loopback) count as an internet address for both clients' checks, so that a first hop
    can be allowed and what a later hop does is what is tested."""
    real = coverart.is_global_address

    def is_global(host: str) -> bool:
        return ipaddress.ip_address(host) == ipaddress.ip_address(address) or real(host)

    monkeypatch.setattr(coverart, "is_global_address", is_global)
    monkeypatch.setattr(curl_covers, "is_global_address", is_global)


@engines
def test_a_later_hop_to_a_non_global_address_is_refused_by_name_and_by_address(engine, monkeypatch):
    """The archive is global (allow_private=False); its redirect points at this machine, by a name that resolves
    here (checked where it resolves, on a new connection) or by an IP literal (checked before the request)."""
    _pretend_global(monkeypatch, "127.0.0.2")

    async def go():
        async with raw_server(lambda base: {}) as (victim, victim_seen):
            port = victim.rsplit(":", 1)[1]

            def routes(base):
                return {
                    "/by-name": reply(307, f"Location: http://localhost:{port}/secret"),
                    "/by-address": reply(307, f"Location: http://127.0.0.1:{port}/secret"),
                    "/stays": reply(307, "Location: /img"),
                }

            async with raw_server(routes, host="127.0.0.2") as (archive, _):
                got = {}
                for path in ("/by-name", "/by-address", "/stays"):
                    got[path] = await get_cover(engine, archive + path, max_bytes=CAP, allow_private=False)
                return got, list(victim_seen)

    got, victim_seen = asyncio.run(go())
    assert victim_seen == [], "a non-global address got a request"
    for path in ("/by-name", "/by-address"):
        assert (got[path].status, got[path].attempts) == ("refused", 1), got[path]
    assert "no global address" in got["/by-name"].error
    assert got["/stays"].status == "ok" and got["/stays"].data == b"IMG:/img"  # the pretend-global host is reached


def test_curl_a_name_with_a_global_and_a_local_address_fails_like_a_connection_not_as_refused(monkeypatch):
    """libcurl's socket hook refuses the local address and connects to the global one; when that connection fails,
    the cover is retried, as aiohttp retries it (its resolver drops the local address and the connection to the
    global one fails): not "refused", which is for a host that has no global address at all."""
    import pycurl

    _pretend_global(monkeypatch, "127.0.0.2")
    with socketserver_on("127.0.0.1") as port:  # listens on 127.0.0.1 only: 127.0.0.2 refuses the connection
        settings = dict(connections=1, per_host=1, user_agent=TEST_UA, max_bytes=CAP, timeout=2.0, max_attempts=2)
        engine = curl_covers.CurlCovers(**settings, backoff=0.01, allow_private=False)
        try:
            for handle in engine.handles:  # the name's two addresses, as a DNS answer would give them
                handle.setopt(pycurl.RESOLVE, [f"mixed.example:{port}:127.0.0.1,127.0.0.2"])
            engine.add("x", f"http://mixed.example:{port}/x")
            outcomes = []
            deadline = time.monotonic() + 5
            while engine.pending() and time.monotonic() < deadline:
                engine.wait()
                outcomes += [outcome for _, _, outcome in engine.run()]
        finally:
            engine.close()
    assert [(o.status, o.attempts) for o in outcomes] == [("failed", 2)], outcomes
    assert "curl error 7" in outcomes[0].error


@contextlib.contextmanager
def socketserver_on(host: str):
    """A stdlib HTTP server on `host` (in a thread) that answers 200; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 that no CA signed (openssl), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


async def _tls_site(cert, key):
    async def image(request):
        return web.Response(body=b"over tls")

    app = web.Application()
    app.router.add_get("/img", image)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, f"https://127.0.0.1:{runner.addresses[0][1]}"


@engines
def test_tls_is_verified_on_a_first_hop_and_after_a_redirect_to_https(engine, self_signed):
    async def go():
        runner, tls = await _tls_site(*self_signed)
        try:
            direct = await get_cover(engine, f"{tls}/img", max_bytes=CAP, attempts=2)
            async with raw_server(lambda base: {"/start": reply(302, f"Location: {tls}/img")}) as (base, _):
                redirected = await get_cover(engine, f"{base}/start", max_bytes=CAP, attempts=2)
        finally:
            await runner.cleanup()
        return direct, redirected

    for out in asyncio.run(go()):
        assert out.status == "failed" and "certificate" in out.error.lower(), out


def test_curl_follows_a_redirect_to_https_with_a_certificate_its_ca_bundle_holds(self_signed, monkeypatch):
    """The same certificate, now named by SSL_CERT_FILE (as a mirror behind an in-house CA would be): accepted,
    so the failure above was verification, on by default, and not TLS itself; libcurl trusts what Python's ssl
    trusts. (aiohttp's default context reads the store once, at import: not something a test can swap.)"""
    monkeypatch.setenv("SSL_CERT_FILE", str(self_signed[0]))
    monkeypatch.setenv("SSL_CERT_DIR", str(self_signed[0].parent / "no-such-folder"))
    assert curl_covers.ca_locations() == (str(self_signed[0]), None)

    async def go():
        runner, tls = await _tls_site(*self_signed)
        try:
            async with raw_server(lambda base: {"/start": reply(302, f"Location: {tls}/img")}) as (base, _):
                return await get_cover("curl", f"{base}/start", max_bytes=CAP), tls
        finally:
            await runner.cleanup()

    out, tls = asyncio.run(go())
    assert out.status == "ok" and out.data == b"over tls" and out.final_url == f"{tls}/img"


def test_curl_falls_back_to_certifi_where_the_system_has_no_ca_store(monkeypatch, tmp_path):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    assert curl_covers.ca_locations() == (curl_covers.certifi.where(), None)


@engines
def test_no_proxy_is_taken_from_the_environment(engine, monkeypatch):
    async def go():
        async with raw_server(lambda base: {}) as (proxy, proxy_seen):
            for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
                monkeypatch.setenv(name, proxy)
            for name in ("no_proxy", "NO_PROXY"):
                monkeypatch.delenv(name, raising=False)
            async with raw_server(lambda base: {"/start": reply(302, "Location: /img")}) as (base, seen):
                out = await get_cover(engine, f"{base}/start", max_bytes=CAP)
            return out, list(seen), list(proxy_seen)

    out, seen, proxy_seen = asyncio.run(go())
    assert out.status == "ok" and [t for t, _ in seen] == ["/start", "/img"] and proxy_seen == []


def test_the_proxy_test_would_see_a_client_that_took_the_environments_proxy(monkeypatch):
    """The test above can fail: libcurl left to its defaults does go through http_proxy."""
    import pycurl

    async def go():
        async with raw_server(lambda base: {}) as (proxy, proxy_seen):
            monkeypatch.setenv("http_proxy", proxy)
            monkeypatch.delenv("no_proxy", raising=False)
            monkeypatch.delenv("NO_PROXY", raising=False)

            def plain_curl():
                handle = pycurl.Curl()
                handle.setopt(pycurl.URL, "http://cover.example/img")
                handle.setopt(pycurl.WRITEFUNCTION, lambda chunk: None)
                handle.perform()
                handle.close()

            await asyncio.to_thread(plain_curl)
            return list(proxy_seen)

    assert [target for target, _ in asyncio.run(go())] == ["http://cover.example/img"]


# --- the download process's loop -------------------------------------------------------------------------------


def _job(url: str, data_dir, attempts: int = 1, timeout: float = 5.0) -> CoverJob:
    return CoverJob(url, 500, TEST_UA, data_dir, 10_000_000, 40_000_000, 32, attempts, timeout)


@contextlib.contextmanager
def serving(job: CoverJob):
    """_serve in a thread, as a download process runs it, with the parent's end of its pipe."""
    parent, child = Pipe(duplex=True)
    thread = threading.Thread(target=_serve, args=(child, job, 2, 2), daemon=True)
    thread.start()
    try:
        yield parent, thread
    finally:
        with contextlib.suppress(OSError):
            parent.send(None)
        thread.join(5)
        child.close()
        parent.close()


@contextlib.contextmanager
def archive_in_thread(answer_covers: bool):
    """A stdlib server in a thread: 404 for every cover, or no answer at all until the test ends."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if not answer_covers:
                release.wait(10)
                return
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def _thread_cpu(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def test_an_idle_download_process_takes_no_cpu_and_stops_when_told(tmp_path):
    with archive_in_thread(answer_covers=True) as url, serving(_job(url, tmp_path)) as (parent, thread):
        parent.send([MBID])  # one cover first: curl then holds a live connection and its timers, as after work
        assert parent.poll(5)
        kind, results = parent.recv()
        assert kind == "results" and [(r.status, r.http_status) for r, _ in results] == [("no_art", 404)]
        before = _thread_cpu(thread)
        time.sleep(2.0)
        idle_cpu = _thread_cpu(thread) - before
        parent.send(None)
        thread.join(2)
        assert not thread.is_alive(), "the download process did not stop when told"
    assert idle_cpu < 0.05, f"{idle_cpu:.3f} s of CPU in 2 s of idling"


def test_a_download_process_stops_when_told_even_with_covers_in_flight(tmp_path):
    with archive_in_thread(answer_covers=False) as url, serving(_job(url, tmp_path)) as (parent, thread):
        parent.send([MBID])
        time.sleep(0.2)  # the request is out, and its answer never comes
        started = time.monotonic()
        parent.send(None)
        thread.join(2)
        assert not thread.is_alive() and time.monotonic() - started < 1.5
        assert not parent.poll(0), "a stopped download process answered for a cover in flight"


def test_a_download_process_whose_parent_is_gone_stops(tmp_path):
    with archive_in_thread(answer_covers=False) as url, serving(_job(url, tmp_path)) as (parent, thread):
        parent.send([MBID])
        time.sleep(0.2)
        started = time.monotonic()
        parent.close()  # the parent exits: its end of the pipe closes
        thread.join(2)
        assert not thread.is_alive() and time.monotonic() - started < 1.5


def _jpeg(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "JPEG")
    return buffer.getvalue()


def test_an_error_storing_a_cover_comes_after_the_results_before_it(tmp_path):
    """A cover that cannot be stored (its folder is a file here; a full disk in life) is sent as "fatal" after the
    results finished before it in the same pass, so the parent records those, then stops the run."""
    import hashlib

    stored, blocked = _jpeg((200, 30, 30)), _jpeg((30, 30, 200))
    stored_sha, blocked_sha = (hashlib.sha256(b).hexdigest() for b in (stored, blocked))
    assert stored_sha[:2] != blocked_sha[:2]
    data_dir = tmp_path / "d"
    (data_dir / "images").mkdir(parents=True)
    (data_dir / "images" / blocked_sha[:2]).write_bytes(b"")  # a file where its folder must go
    job = _job("http://127.0.0.1:1", data_dir)
    mbids = [f"{MBID[:-1]}{i}" for i in range(3)]
    finished = [
        (mbids[0], "u0", Outcome("ok", 1, 200, data=stored)),
        (mbids[1], "u1", Outcome("ok", 2, 200, data=blocked)),
        (mbids[2], "u2", Outcome("no_art", 1, 404, error="no front cover (404)")),
    ]
    messages = answer_finished(job, finished, 1000)
    assert [m[0] for m in messages] == ["results", "fatal", "results"]
    ((first, attempts),) = messages[0][1]
    assert (first.mbid, first.status, attempts) == (mbids[0], "ok", 1) and (data_dir / first.path).is_file()
    assert messages[1][1] == mbids[1] and messages[1][2] == errno.ENOTDIR
    assert [(r.mbid, r.status) for r, _ in messages[2][1]] == [(mbids[2], "no_art")]
