"""One cover, start to finish (download, validate, hash, store), and the download processes that run many.

`download_and_store_cover` is what a download on the parent's event loop runs (small runs, downloads beside
discovery): aiohttp, then `validate_and_store`. Large download-only runs (a manifest rebuild, a resumed fetch)
start one download process per core (`process_main`): each downloads the MBIDs its parent sends over libcurl
(curl_covers.py, the same policy at half the CPU per cover), validates, hashes and stores each cover on arrival
(`validate_and_store`, its pHash on one BLAS thread) and answers with results, so HTTP, JPEG decoding and file
writes run on every core and no image bytes cross a process boundary. The covers finished in one pass travel as
one message. The parent records results (downloader.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import pickle
import signal
import threading
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
from threadpoolctl import threadpool_limits

from equigen.core.config import Settings
from equigen.core.images import BadImage, inspect_image
from equigen.core.records import CoverResult
from equigen.core.storage import store_image
from equigen.harvest.coverart import GlobalOnlyResolver, Outcome, cover_url, get_cover_bytes, is_local_url

THUMBNAIL_SLACK = 2  # a front-500 answer may be at most 1000 px a side


def libcurl_available() -> bool:
    """pycurl is installed (it has wheels for Linux x86-64, macOS and Windows, not for Linux on ARM, where it is
    left out and a download-only run downloads on the parent's event loop instead of in download processes)."""
    return importlib.util.find_spec("pycurl") is not None


@dataclass(frozen=True)
class CoverJob:
    """What downloading one cover needs from the settings (picklable: it travels to download processes)."""

    coverart_url: str
    thumbnail: int
    user_agent: str
    data_dir: Path
    max_bytes: int
    max_pixels: int
    min_side: int
    max_attempts: int
    timeout: float

    @classmethod
    def of(cls, settings: Settings) -> CoverJob:
        return cls(
            settings.coverart_url,
            settings.thumbnail,
            settings.user_agent,
            settings.data_dir,
            settings.max_bytes,
            settings.max_pixels,
            settings.min_side,
            settings.max_attempts,
            settings.timeout,
        )


def one_blas_thread() -> threadpool_limits:
    """Validation's pHash matrix products on one BLAS thread (a context manager). OpenBLAS would split each
    tiny product over every core and spin-wait for the others: on 2 busy cores that cost 280 instead of 85 µs
    of CPU per cover, taken from the other download process."""
    return threadpool_limits(limits=1, user_api="blas")


def new_session(job: CoverJob, connections: int, per_host: int) -> aiohttp.ClientSession:
    """An HTTP session for cover downloads. Redirects may only leave the global internet when the configured
    archive is itself local (simulator, mirror). The User-Agent is the session's (no header merge per
    request) and cookies are neither kept nor sent (the archive sets none; a jar is work on every hop)."""
    timeout = aiohttp.ClientTimeout(total=job.timeout, sock_connect=min(10.0, job.timeout))
    resolver = None if is_local_url(job.coverart_url) else GlobalOnlyResolver()
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=per_host, ttl_dns_cache=300, resolver=resolver)
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        headers={"User-Agent": job.user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def download_and_store_cover(
    session: aiohttp.ClientSession, validator: Executor | None, job: CoverJob, mbid: str
) -> tuple[CoverResult, int]:
    """Download one front cover, then validate, hash and store it: (result, attempts). In `validator` (threads
    beside a loop that has other work), or, with None, on this thread (a download process: its cores are
    already busy: a thread measured no faster, and inline there is no hand-off per cover)."""
    url = cover_url(job.coverart_url, mbid, job.thumbnail)
    outcome = await get_cover_bytes(
        session,
        url,
        max_bytes=job.max_bytes,
        max_attempts=job.max_attempts,
        allow_private=is_local_url(job.coverart_url),
    )
    if outcome.status != "ok":
        return CoverResult(mbid, outcome.status, outcome.http_status, outcome.error, source_url=url), outcome.attempts
    args = (job.data_dir, job.max_pixels, job.min_side, mbid, url, outcome.http_status, outcome.data)
    max_side = THUMBNAIL_SLACK * job.thumbnail
    if validator is None:
        return validate_and_store(*args, max_side), outcome.attempts
    result = await asyncio.get_running_loop().run_in_executor(validator, validate_and_store, *args, max_side)
    return result, outcome.attempts


def validate_and_store(
    data_dir: Path,
    max_pixels: int,
    min_side: int,
    mbid: str,
    url: str,
    http_status: int | None,
    data: bytes | None,
    max_side: int | None = None,
) -> CoverResult:
    """Validate and hash downloaded bytes and store them (in a validation thread, or a download process's loop).

    max_side: a thumbnail far larger than the size asked for is not what the archive serves there.
    """
    data = data or b""
    try:
        info = inspect_image(data, max_pixels, min_side, max_side)  # the size is judged before decoding
    except BadImage as exc:
        return CoverResult(mbid, "bad_image", http_status, str(exc)[:300], bytes=len(data), source_url=url)
    path = store_image(data_dir, info.sha256, info.ext, data)
    return CoverResult(
        mbid,
        "ok",
        http_status,
        None,
        info.sha256,
        info.phash,
        info.width,
        info.height,
        len(data),
        info.format,
        path,
        url,
    )


# --- a download process ---------------------------------------------------------------------------------------
# Parent -> process: a list of MBIDs to download, or None: stop now (what is in flight is dropped, as a
# cancelled download in the parent would be: the catalog still says pending, the next run fetches it).
# Process -> parent: ("results", [(CoverResult, attempts), ...]) | ("log", name, levelno, message)
#                    | ("fatal", mbid, errno, message, filename)  an OSError storing: disk full, folder gone
#                    | ("crash", message)  any other error: a bug, reported with its traceback


_send_lock = threading.Lock()  # a log line may come from another thread than the results


def _send(conn: Connection, message: tuple) -> None:
    with _send_lock:
        conn.send(message)


class _PipeLogHandler(logging.Handler):
    """Log records of a download process go to the parent, whose handlers (-v, --log-file) write them."""

    def __init__(self, conn: Connection, level: int):
        super().__init__(level)
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _send(self.conn, ("log", record.name, record.levelno, record.getMessage()))
        except (OSError, ValueError):  # the parent is gone: nobody to tell
            pass


def process_main(conn: Connection, job: CoverJob, connections: int, per_host: int, log_level: int) -> None:
    """Entry point of a download process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it records results, then stops us
    root = logging.getLogger("equigen")
    root.handlers[:] = [_PipeLogHandler(conn, log_level)]
    root.setLevel(log_level)
    root.propagate = False
    try:
        with one_blas_thread():
            _serve(conn, job, connections, per_host)
    except Exception as exc:  # reported to the parent, which raises it
        _report_crash(conn, exc)


def _report_crash(conn: Connection, error: BaseException) -> None:
    """The error itself when it pickles (an EquigenError reaches the user as its one line), and its traceback."""
    text = traceback.format_exc(limit=8)
    try:
        pickle.dumps(error)
    except Exception:
        error = None
    try:
        _send(conn, ("crash", error, text))
    except (OSError, ValueError):
        pass


def _serve(conn: Connection, job: CoverJob, connections: int, per_host: int) -> None:
    """Download what the parent sends until it says stop (None) or goes away; the covers finished in one pass
    travel as one message. HTTP in libcurl (curl_covers.py); validation on this thread, between passes (every
    core already runs a download process: a thread measured no faster, and inline there is no hand-off)."""
    from equigen.harvest.curl_covers import (
        CurlCovers,  # pycurl: only download processes need it (see libcurl_available)
    )

    engine = CurlCovers(
        connections=connections,
        per_host=per_host,
        user_agent=job.user_agent,
        max_bytes=job.max_bytes,
        timeout=job.timeout,
        max_attempts=job.max_attempts,
        allow_private=is_local_url(job.coverart_url),
    )
    pipe = conn.fileno()
    max_side = THUMBNAIL_SLACK * job.thumbnail
    try:
        while True:
            # Blocks until a socket of curl's or the pipe is ready, or a timer of curl's or a retry is due (at most
            # 1 s): an idle process sleeps here and takes no CPU.
            if engine.wait([pipe]):
                try:
                    while conn.poll():
                        message = conn.recv()
                        if message is None:
                            return  # stop now: what is in flight stays pending in the catalog
                        engine.add_many((mbid, cover_url(job.coverart_url, mbid, job.thumbnail)) for mbid in message)
                except (EOFError, OSError):  # the parent is gone: nobody to download for
                    return
            messages = answer_finished(job, engine.run(), max_side)
            try:
                for message in messages:
                    _send(conn, message)
            except (OSError, ValueError):  # the parent is gone
                return
    finally:
        engine.close()


def answer_finished(job: CoverJob, finished: list[tuple[str, str, Outcome]], max_side: int) -> list[tuple]:
    """The messages for the covers one pass finished, each validated, hashed and stored: their results in one
    message, and an OSError storing one (disk full, folder gone) as ("fatal", ...) after a message with the
    results before it, so that the parent records those before it stops the run."""
    messages: list[tuple] = []
    results = []
    for mbid, url, outcome in finished:
        if outcome.status != "ok":
            result = CoverResult(mbid, outcome.status, outcome.http_status, outcome.error, source_url=url)
        else:
            args = (job.data_dir, job.max_pixels, job.min_side, mbid, url, outcome.http_status, outcome.data)
            try:
                result = validate_and_store(*args, max_side)
            except OSError as exc:
                if results:
                    messages.append(("results", results))
                    results = []
                messages.append(("fatal", mbid, exc.errno, exc.strerror or str(exc), exc.filename))
                continue
        results.append((result, outcome.attempts))
    if results:
        messages.append(("results", results))
    return messages
