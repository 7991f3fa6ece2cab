"""Many cover downloads at once over one libcurl multi handle (pycurl): the HTTP of a download process, in C.

The policy is coverart.py's, shared with its aiohttp client (`get_cover_bytes`, which serves downloads on an
event loop): redirects followed one hop at a time (http(s) only, through coverart.next_hop), a hop to a
non-global address refused unless the archive itself is local, the same retries and jittered backoff, the
*decoded* body capped at max_bytes, the same Outcome per cover, no cookies, no proxy from the environment.
What differs is the cost: libcurl parses, pools connections and inflates in C, and Python runs once per hop;
three hops a cover cost 0.36-0.41 ms of client CPU against aiohttp's 0.68-0.79 ms, and 25 % less CPU in the
server they talk to (benchmarks/bench_download.py, the same URLs in one run).

Single-threaded and synchronous: the caller waits in `wait` (curl's sockets and its own file descriptors),
then `run` moves every transfer on and returns the covers that are finished.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable

import certifi
import pycurl

from equigen.harvest.coverart import (
    MAX_REDIRECTS,
    REDIRECT_STATUS,
    RETRYABLE_STATUS,
    Outcome,
    Refused,
    check_hop,
    is_global_address,
    log_retry,
    next_hop,
    parse_url,
    retry_delay,
    too_many_redirects,
)

logger = logging.getLogger(__name__)

# Bytes of a redirect's or an error's body read (and dropped) before the transfer is cut: aiohttp never reads
# them; reading a short one keeps the connection for the next hop (the archive's are a few hundred bytes).
UNREAD_BODY_LIMIT = 1 << 16

# curl errors that no retry can change: the request itself is wrong. (Not E_UNSUPPORTED_PROTOCOL: next_hop lets
# only http(s) through, so libcurl gives it for an answer that is not HTTP, which aiohttp retries as a bad status
# line.)
NOT_RETRIED = {pycurl.E_URL_MALFORMAT}


def ca_locations() -> tuple[str | None, str | None]:
    """(CA file, CA folder) for TLS verification: what Python's ssl trusts by default, as aiohttp's default context
    does (OpenSSL's default paths, SSL_CERT_FILE and SSL_CERT_DIR honoured, so a mirror behind an in-house CA works
    in both clients); certifi's bundle where this system has neither."""
    paths = ssl.get_default_verify_paths()
    cafile = paths.cafile if paths.cafile and os.path.isfile(paths.cafile) else None
    capath = paths.capath if paths.capath and os.path.isdir(paths.capath) else None
    if cafile is None and capath is None:
        cafile = certifi.where()
    return cafile, capath


class _Retry(Exception):
    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class _Transfer:
    """One cover's download: its attempts, and the hop in flight."""

    __slots__ = (
        "key",
        "url",
        "current",
        "hops",
        "attempt",
        "code",
        "location",
        "chunks",
        "size",
        "too_big",
        "refused",
        "reached",
        "error",
        "status",
    )

    def __init__(self, key: str, url: str):
        self.key, self.url = key, url
        self.attempt = 1
        self.error, self.status = "", None  # the last attempt's failure


class CurlCovers:
    """Covers by URL, `connections` transfers at a time (at most `per_host` to one host); `run` returns each
    cover's final Outcome once, with the key it was added under."""

    def __init__(
        self,
        *,
        connections: int,
        per_host: int,
        user_agent: str,
        max_bytes: int,
        timeout: float,
        max_attempts: int = 4,
        backoff: float = 0.5,
        allow_private: bool = True,
    ):
        self.max_bytes, self.max_attempts, self.backoff = max_bytes, max_attempts, backoff
        self.allow_private = allow_private
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, connections)
        self.multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, per_host)
        self.idle = [self._new_handle(user_agent, timeout) for _ in range(connections)]
        self.handles = list(self.idle)
        self.waiting: deque[_Transfer] = deque()  # to start when a handle is free
        self.retries: list[tuple[float, int, _Transfer]] = []  # (due, order, transfer): a heap
        self.order = itertools.count()
        self.finished: list[tuple[str, str, Outcome]] = []
        self.active = 0

    def _new_handle(self, user_agent: str, timeout: float) -> pycurl.Curl:
        handle = pycurl.Curl()
        handle.transfer = None
        handle.setopt(pycurl.NOSIGNAL, 1)  # no SIGALRM for DNS timeouts: this process has other work
        # as aiohttp: no proxy from the environment ("" explicitly disables the use of a proxy, even if there is an
        # environment variable set for it: curl.se/libcurl/c/CURLOPT_PROXY.html)
        handle.setopt(pycurl.PROXY, "")
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.FOLLOWLOCATION, 0)  # each hop is checked here (next_hop, check_hop)
        handle.setopt(pycurl.USERAGENT, user_agent)
        handle.setopt(pycurl.ACCEPT_ENCODING, "gzip, deflate")  # as aiohttp; the cap counts inflated bytes
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))  # per hop, as aiohttp's total
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(min(10.0, timeout) * 1000)))
        # A declared length over the cap: aborted before the body, once the headers are in (CURLE_FILESIZE_EXCEEDED);
        # since 8.4.0 also a body that grows past it, since 8.20.0 counted after decompression
        # (curl.se/libcurl/c/CURLOPT_MAXFILESIZE_LARGE.html). For any status: _failed reads which one it was.
        handle.setopt(pycurl.MAXFILESIZE_LARGE, self.max_bytes)
        cafile, capath = ca_locations()  # the wheel's libcurl knows no CA path of this system by itself
        if cafile:
            handle.setopt(pycurl.CAINFO, cafile)
        if capath:
            handle.setopt(pycurl.CAPATH, capath)
        handle.setopt(pycurl.HEADERFUNCTION, self._header_reader(handle))
        handle.setopt(pycurl.WRITEFUNCTION, self._writer(handle))
        if not self.allow_private:
            handle.setopt(pycurl.OPENSOCKETFUNCTION, self._global_sockets_only(handle))
        return handle

    @staticmethod
    def _header_reader(handle: pycurl.Curl):
        """Each answer's status and Location, from its header lines: getinfo is refused while a transfer runs
        (pycurl: "perform() is currently running"), so the body's writer could not tell a 200 from a 302, and
        CURLINFO_REDIRECT_URL is left unset when a transfer is cut (a redirect whose body passes the cap)."""

        def header(line: bytes):  # once per header line: kept to two cheap tests for the other lines
            if line.startswith(b"HTTP/"):  # a status line starts each answer (a 100 Continue has its own)
                parts = line.split(None, 2)
                transfer = handle.transfer
                transfer.code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                transfer.location = None
            elif line[:1] in b"Ll" and line[:9].lower() == b"location:":
                handle.transfer.location = line[9:].strip()
            return None

        return header

    def _writer(self, handle: pycurl.Curl):
        cap = self.max_bytes

        def write(chunk: bytes):
            transfer = handle.transfer
            transfer.size += len(chunk)
            if transfer.code != 200:  # a redirect's or an error's body: dropped, and cut if it goes on
                if transfer.size > UNREAD_BODY_LIMIT:
                    return 0  # stops the transfer (CURLE_WRITE_ERROR); _failed acts on the status
                return None
            if transfer.size > cap:  # decoded bytes: a small gzip body cannot inflate past the cap
                transfer.too_big = True
                return 0
            transfer.chunks.append(chunk)
            return None

        return write

    def _global_sockets_only(self, handle: pycurl.Curl):
        """Every connection, to every hop, after DNS and before connecting: a non-global address is refused, so
        neither a redirect nor a DNS answer (rebinding included) points a request at 127.0.0.1, 10.x or
        169.254.169.254 (what GlobalOnlyResolver does for aiohttp). libcurl calls this instead of socket(2) with
        each resolved address; CURL_SOCKET_BAD refuses that one (curl.se/libcurl/c/CURLOPT_OPENSOCKETFUNCTION.html)
        and libcurl tries the next."""

        def opensocket(purpose, address):
            host = address.addr[0].split("%", 1)[0] if isinstance(address.addr, tuple) else ""
            try:
                allowed = is_global_address(host)
            except ValueError:
                allowed = False
            transfer = handle.transfer
            if not allowed:
                if transfer is not None:
                    transfer.refused = host or "?"
                return pycurl.SOCKET_BAD
            if transfer is not None:
                transfer.reached = True  # a failure now is the connection's, retried as aiohttp retries it
            return socket.socket(address.family, address.socktype, address.protocol)

        return opensocket

    # --- the caller's side --------------------------------------------------------------------------------

    def add(self, key: str, url: str) -> None:
        self.waiting.append(_Transfer(key, url))

    def add_many(self, items: Iterable[tuple[str, str]]) -> None:
        self.waiting.extend(_Transfer(key, url) for key, url in items)

    def pending(self) -> int:
        """Covers added and not yet returned by run."""
        return len(self.waiting) + self.active + len(self.retries) + len(self.finished)

    def wait(self, extra: list[int] = (), limit: float = 1.0) -> list[int]:
        """Block until a socket of ours or a descriptor in `extra` is ready, a timer of curl's or a retry is due,
        or `limit` seconds pass; the ready descriptors of `extra`."""
        if self.finished or (self.waiting and self.idle):
            limit = 0.0
        else:
            ms = self.multi.timeout()
            if ms >= 0:
                limit = min(limit, ms / 1000)
            if self.retries:
                limit = min(limit, max(0.0, self.retries[0][0] - time.monotonic()))
        reads, writes, errors = self.multi.fdset()
        try:
            ready = select.select(reads + list(extra), writes, errors, limit)[0]
        except InterruptedError:
            return []
        return [fd for fd in extra if fd in ready]

    def run(self) -> list[tuple[str, str, Outcome]]:
        """Move every transfer on (send, read, follow, retry, start waiting ones) without blocking; the covers
        finished since the last call: (key, url, Outcome)."""
        self._start_due()
        while True:
            code, _ = self.multi.perform()
            if code != pycurl.E_CALL_MULTI_PERFORM:
                break
        while True:
            left, answered, failed = self.multi.info_read()
            for handle in answered:
                self._answered(handle)
            for handle, errno, message in failed:
                self._failed(handle, errno, message)
            if not left:
                break
        self._start_due()
        finished, self.finished = self.finished, []
        return finished

    def close(self) -> None:
        for handle in self.handles:
            if handle.transfer is not None:
                self.multi.remove_handle(handle)
            handle.close()
        self.multi.close()

    # --- one cover's hops -----------------------------------------------------------------------------------

    def _start_due(self) -> None:
        now = time.monotonic()
        while self.retries and self.retries[0][0] <= now:
            self.waiting.append(heapq.heappop(self.retries)[2])
        while self.waiting and self.idle:
            transfer = self.waiting.popleft()
            handle = self.idle.pop()
            try:
                transfer.current = parse_url(transfer.url)
                transfer.hops = 0
                self._request(handle, transfer)
            except Refused as exc:
                self._finish(handle, transfer, Outcome(exc.status, transfer.attempt, exc.http_status, error=str(exc)))

    def _request(self, handle: pycurl.Curl, transfer: _Transfer) -> None:
        check_hop(transfer.current, self.allow_private)
        transfer.chunks, transfer.size, transfer.too_big, transfer.refused, transfer.reached = [], 0, False, None, False
        transfer.code, transfer.location = 0, None
        handle.transfer = transfer
        handle.setopt(pycurl.URL, str(transfer.current))
        self.multi.add_handle(handle)
        self.active += 1

    def _answered(self, handle: pycurl.Curl) -> None:
        self.multi.remove_handle(handle)
        self.active -= 1
        self._decide(handle, handle.transfer, handle.getinfo(pycurl.RESPONSE_CODE))

    def _decide(self, handle: pycurl.Curl, transfer: _Transfer, status: int) -> None:
        """What an answer's status means, as _get_following decides it for aiohttp."""
        try:
            if status in REDIRECT_STATUS:
                transfer.hops += 1
                if transfer.hops > MAX_REDIRECTS:
                    raise too_many_redirects(transfer.url)
                location = transfer.location  # raw bytes: no answer can make a decode fail; next_hop judges them
                location = None if location is None else location.decode("utf-8", "surrogateescape")
                transfer.current = next_hop(transfer.current, status, location)
                self._request(handle, transfer)
                return
            if status in RETRYABLE_STATUS:
                raise _Retry(f"HTTP {status}", status)
        except Refused as exc:
            outcome = Outcome(exc.status, transfer.attempt, exc.http_status, error=str(exc))
        except _Retry as exc:
            self._retry(handle, transfer, str(exc), exc.http_status)
            return
        else:
            final = str(transfer.current)
            if status == 404:
                outcome = Outcome("no_art", transfer.attempt, 404, final_url=final, error="no front cover (404)")
            elif status == 200:
                outcome = Outcome("ok", transfer.attempt, 200, data=b"".join(transfer.chunks), final_url=final)
            else:
                outcome = Outcome("failed", transfer.attempt, status, final_url=final, error=f"HTTP {status}")
        self._finish(handle, transfer, outcome)

    def _failed(self, handle: pycurl.Curl, errno: int, message: str) -> None:
        self.multi.remove_handle(handle)
        self.active -= 1
        transfer = handle.transfer
        if transfer.code not in (0, 200) and errno in (pycurl.E_WRITE_ERROR, pycurl.E_FILESIZE_EXCEEDED):
            # a redirect's or an error's body cut (too long, or declared over the cap): its headers are all in
            # (libcurl checks a declared length once they are), and aiohttp acts on the status without the body
            self._decide(handle, transfer, transfer.code)
            return
        if transfer.too_big:
            outcome = Outcome(
                "bad_image", transfer.attempt, 200, error=f"decoded body exceeds the cap of {self.max_bytes} bytes"
            )
        elif errno == pycurl.E_FILESIZE_EXCEEDED:
            length = int(handle.getinfo(pycurl.CONTENT_LENGTH_DOWNLOAD_T))  # -1: none declared
            # a declared length over the cap (nothing read), or else the inflated bytes passed it as they came
            size = f"body of {length} bytes" if length > self.max_bytes else "decoded body"
            outcome = Outcome(
                "bad_image", transfer.attempt, 200, error=f"{size} exceeds the cap of {self.max_bytes} bytes"
            )
        elif transfer.refused is not None and not transfer.reached:
            host = (transfer.current.raw_host or "")[:80]
            error = f"{host} resolves to no global address ({transfer.refused})"
            logger.info("refused %s: %s", transfer.current, error)
            outcome = Outcome("refused", transfer.attempt, None, error=f"refused: {error}"[:300])
        elif errno in NOT_RETRIED:
            outcome = Outcome("failed", transfer.attempt, None, error=f"curl error {errno}: {message}"[:300])
        else:
            self._retry(handle, transfer, f"curl error {errno}: {message}", None)
            return
        self._finish(handle, transfer, outcome)

    def _retry(self, handle: pycurl.Curl, transfer: _Transfer, error: str, status: int | None) -> None:
        transfer.error, transfer.status = error, status
        if transfer.attempt >= self.max_attempts:
            outcome = Outcome("failed", transfer.attempt, status, error=error[:300] or "failed")
            self._finish(handle, transfer, outcome)
            return
        delay = retry_delay(self.backoff, transfer.attempt)
        log_retry(transfer.url, error, transfer.attempt, self.max_attempts, delay)
        transfer.attempt += 1
        heapq.heappush(self.retries, (time.monotonic() + delay, next(self.order), transfer))
        self._release(handle)

    def _finish(self, handle: pycurl.Curl, transfer: _Transfer, outcome: Outcome) -> None:
        transfer.chunks = None
        self.finished.append((transfer.key, transfer.url, outcome))
        self._release(handle)

    def _release(self, handle: pycurl.Curl) -> None:
        handle.transfer = None
        self.idle.append(handle)


def fetch_all(urls: list[str], **settings) -> list[Outcome]:
    """Every URL's Outcome, in order (tests, and anyone who wants a few covers without a download process).
    settings: CurlCovers's keywords (connections, per_host, user_agent, max_bytes, timeout, ...)."""
    engine = CurlCovers(**settings)
    try:
        engine.add_many((str(i), url) for i, url in enumerate(urls))
        outcomes: dict[str, Outcome] = {}
        while engine.pending():
            engine.wait()
            for key, _, outcome in engine.run():
                outcomes[key] = outcome
        return [outcomes[str(i)] for i in range(len(urls))]
    finally:
        engine.close()
