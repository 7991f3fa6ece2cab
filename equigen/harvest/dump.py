"""Reading a MusicBrainz JSON data dump of release groups, streamed, into the catalog's dump candidates.

MusicBrainz publishes twice-weekly JSON dumps (https://wiki.musicbrainz.org/Development/JSON_Data_Dumps):
`release-group.tar.xz` holds `mbdump/release-group`, one release group a line in the ws/2 lookup shape
with its tags and genres (tests/fixtures/dump/SOURCES.md). `fetch --from-dump` reads that tarball (tar
over xz, streamed: never extracted, never held whole) or the extracted member file, and gives each line
the search path's own validation, type filter and label (musicbrainz.parse_release_group, keep). The
labelled album release groups become dump candidates, each with a seeded rank: fetch then takes each
genre's candidates in rank order, not in file order (a dump is sorted by nothing useful to a sample).
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import signal
import tarfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from equigen.core.catalog import Catalog
from equigen.core.errors import EquigenError, first_line
from equigen.core.mbids import is_mbid
from equigen.core.records import ReleaseGroup
from equigen.core.taxonomy import AMBIGUOUS, UNLABELLED, Label
from equigen.harvest.musicbrainz import MalformedItem, keep, parse_release_group, wanted_type

logger = logging.getLogger(__name__)

DUMP_MEMBER = "mbdump/release-group"
MAX_LINE_BYTES = 4_000_000  # one release group line; real ones are a few kB (a Various Artists credit ~60 kB)
BATCH_LINES = 5_000  # lines per catalog transaction (and per progress update); a parse worker's chunk
PARSE_WORKERS = 2  # parse processes for a large dump: parsing is ~3/4 of the ingest's CPU (cProfile)
PARALLEL_FROM_BYTES = 8 << 20  # smaller dumps are parsed here: a process start costs more than they do
_XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass
class DumpCounts:
    """What one pass over a dump found, line by line."""

    lines: int = 0
    candidates: int = 0  # labelled album release groups stored as candidates
    filtered: int = 0  # valid release groups fetch does not want: not an album, a skipped secondary type
    unlabelled: int = 0  # valid albums whose tags name no genre, or two genres too closely (ambiguous)
    not_json: int = 0
    malformed: int = 0  # JSON, but not a usable release group (wrong types, malformed tags)
    bad_mbid: int = 0
    too_long: int = 0  # lines over MAX_LINE_BYTES (skipped unread)

    def add(self, other: DumpCounts) -> None:
        """Add another chunk's counts (all but `lines`, which says where the stored part of the dump ends)."""
        for name in self.__dataclass_fields__:
            if name != "lines":
                setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def skipped(self) -> int:
        return self.not_json + self.malformed + self.bad_mbid + self.too_long


class LineTooLong(ValueError):
    pass


class NotJson(ValueError):
    pass


class BadMbid(ValueError):
    pass


def parse_dump_line(
    line: bytes, label: Callable[[Iterable[tuple[str, int]]], Label], skipped_secondary: Iterable[str]
) -> ReleaseGroup | None:
    """One dump line -> its ReleaseGroup when fetch wants it (a labelled album), None when it is valid but not
    wanted; NotJson, BadMbid or MalformedItem when it is not a release group we can trust. Pure."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise NotJson("not a JSON line") from None
    if isinstance(raw, dict):
        if not is_mbid(raw.get("id")):
            raise BadMbid(f"release-group id {str(raw.get('id'))[:40]!r} is not an MBID")
        primary, secondary = raw.get("primary-type"), raw.get("secondary-types") or []
        if (
            isinstance(primary, str | None)
            and isinstance(secondary, list)
            and all(isinstance(s, str) for s in secondary)
            and not wanted_type(primary, secondary, skipped_secondary)
        ):
            return None  # most of a dump is singles, EPs, compilations: dropped before tags are read and labelled
    group = parse_release_group(raw, label)
    return group if keep(group, tuple(skipped_secondary)) else None


def candidate_rank(seed: int, mbid: str) -> int:
    """The seeded order fetch takes a genre's dump candidates in: a hash of (seed, MBID), a signed 63-bit
    integer (SQLite's INTEGER). Independent of the file's order and of which other lines the dump holds."""
    digest = hashlib.blake2b(f"{seed}:{mbid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class _CountingReader:
    """A binary file that counts the bytes read from it (the progress bar follows the compressed file)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.bytes_read = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bytes_read += len(data)
        return data


class _PlainPosition:
    """bytes_read of a plain file read directly: its position."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    @property
    def bytes_read(self) -> int:
        return self.raw.tell()


@contextmanager
def open_dump(path: Path) -> Iterator[tuple[BinaryIO, _CountingReader | _PlainPosition]]:
    """The release-group lines of `path` as a binary stream, and the reader counting the file's bytes.

    A `.tar.xz` (recognised by its xz magic, whatever its name) is read as a stream (`r|xz`: no seeking,
    nothing extracted) up to its `mbdump/release-group` member; anything else is the member file itself.
    """
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise EquigenError(f"cannot read the dump {path}: {exc.strerror or exc}") from None
    with raw:
        counting = _CountingReader(raw)
        if raw.read(len(_XZ_MAGIC)) != _XZ_MAGIC:
            raw.seek(0)
            yield raw, _PlainPosition(raw)  # type: ignore[misc]
            return
        raw.seek(0)
        try:
            tar = tarfile.open(fileobj=counting, mode="r|xz")  # type: ignore[arg-type]
            with tar:
                for member in tar:
                    if member.name.removeprefix("./") == DUMP_MEMBER and member.isfile():
                        stream = tar.extractfile(member)
                        if stream is not None:
                            yield stream, counting  # type: ignore[misc]
                            return
        except (tarfile.TarError, EOFError, lzma.LZMAError) as exc:  # corrupt or truncated, also midway
            raise EquigenError(f"the dump {path} is not a readable tar.xz: {first_line(exc)}") from None
        raise EquigenError(f"the dump {path} holds no {DUMP_MEMBER}: is it MusicBrainz's release-group.tar.xz?")


def read_lines(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The stream's lines, each read with at most `limit` bytes in memory; None for a longer line (whose rest
    is read through and dropped)."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield line


def dump_key(path: Path, seed: int, skipped_secondary: Iterable[str], taxonomy_fingerprint: str) -> str:
    """What makes an ingest reusable: the same file (size, mtime), seed, type filter and taxonomy."""
    st = path.stat()
    return json.dumps(
        {
            "file": str(path.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "seed": seed,
            "skipped": sorted(skipped_secondary),
            "taxonomy": taxonomy_fingerprint,
        }
    )


def ingest_dump(
    catalog: Catalog,
    path: Path,
    *,
    label: Callable[[Iterable[tuple[str, int]]], Label],
    skipped_secondary: Iterable[str],
    seed: int,
    taxonomy_fingerprint: str,
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    workers: int | None = None,
) -> DumpCounts:
    """Store the dump's candidates in the catalog, resumably: every batch of lines is stored with the count of
    lines read so far in one transaction, and a killed ingest re-reads the file from the start, skipping (not
    parsing) the lines already stored. A finished ingest of the same key is not read again.

    workers: processes that parse the lines (None: one per core, up to PARSE_WORKERS, for a dump of
    PARALLEL_FROM_BYTES or more; else this process). Parsing is three quarters of the cost, so a second core
    halves the wall time; the batches are stored in file order whichever process parsed them."""
    path = Path(path)
    if not path.is_file():
        raise EquigenError(f"--from-dump {path}: no such file")
    skipped_secondary = tuple(skipped_secondary)
    key = dump_key(path, seed, skipped_secondary, taxonomy_fingerprint)
    state = catalog.dump_state()
    if state.get("key") != key:
        catalog.reset_dump(key)  # another dump, seed, filter or taxonomy: candidates not yet promoted go
        state = catalog.dump_state()
    counts = DumpCounts(**state.get("counts", {}))
    if state.get("done"):
        return counts
    total = os.path.getsize(path)
    if workers is None:
        workers = min(PARSE_WORKERS, os.cpu_count() or 1) if total >= PARALLEL_FROM_BYTES else 1
    with open_dump(path) as (stream, counting), _parser(workers, label, skipped_secondary, seed) as parse:
        for end, (found, batch, why) in parse(_chunks(read_lines(stream, MAX_LINE_BYTES), counts.lines)):
            for text in why:
                logger.debug("%s", text)
            counts.add(found)
            counts.lines = end
            catalog.add_dump_candidates(batch, _state(key, counts, done=False))
            on_progress(counting.bytes_read, total)
    catalog.add_dump_candidates([], _state(key, counts, done=True))
    on_progress(total, total)
    return counts


def _chunks(lines: Iterator[bytes | None], resume_after: int) -> Iterator[tuple[int, list]]:
    """(number of the chunk's last line, its lines), BATCH_LINES a chunk; the lines already stored are skipped
    unparsed."""
    chunk: list = []
    n = 0
    for n, line in enumerate(lines, 1):
        if n <= resume_after:
            continue
        chunk.append(line)
        if len(chunk) == BATCH_LINES:
            yield n, chunk
            chunk = []
    if chunk:
        yield n, chunk


def parse_chunk(
    first: int, lines: list, label, skipped_secondary: tuple[str, ...], seed: int
) -> tuple[DumpCounts, list, list[str]]:
    """One chunk of lines, the first numbered `first` -> what they held (counts without `lines`), the candidates
    with their ranks, and why the first malformed ones were skipped (logged by the caller: `-v`)."""
    found, batch, why = DumpCounts(), [], []
    for n, line in enumerate(lines, first):
        problem = _classify(line, label, skipped_secondary, seed, found, batch)
        if problem and len(why) < 10:
            why.append(f"dump line {n} skipped: {problem}")
    return found, batch, why


def _result(end: int, future) -> tuple[int, tuple]:
    try:
        return end, future.result()
    except BrokenProcessPool as exc:  # killed (out of memory?) or failed to start: nothing of the chunk stored
        raise EquigenError(f"a dump parse process died ({first_line(exc)[:200]}); run fetch again to resume") from None


_worker_args: tuple = ()


def _init_worker(*args) -> None:
    global _worker_args
    _worker_args = args
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the reader's to handle: it stops the pool


def _parse_in_worker(first: int, chunk: list) -> tuple[DumpCounts, list, list[str]]:
    return parse_chunk(first, chunk, *_worker_args)


@contextmanager
def _parser(workers: int, label, skipped_secondary: tuple[str, ...], seed: int):
    """A function mapping (end, lines) chunks to (end, parsed) in order: here, or in `workers` processes with
    at most 2 chunks each in flight (memory stays a few chunks, whatever the dump's size)."""
    if workers <= 1:
        yield lambda chunks: (
            (end, parse_chunk(end - len(lines) + 1, lines, label, skipped_secondary, seed)) for end, lines in chunks
        )
        return
    # spawn, not fork: the caller runs threads (the progress bar's), which a forked child must not inherit
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(label, skipped_secondary, seed)
    ) as pool:

        def parse(chunks):
            pending: deque = deque()
            for end, lines in chunks:
                pending.append((end, pool.submit(_parse_in_worker, end - len(lines) + 1, lines)))
                if len(pending) >= 2 * workers:
                    yield _result(*pending.popleft())
            while pending:
                yield _result(*pending.popleft())

        yield parse


def _classify(line, label, skipped_secondary, seed: int, counts: DumpCounts, batch: list) -> str | None:
    """Count one line and keep it when it is a candidate; returns why a malformed line was skipped."""
    if line is None:
        counts.too_long += 1
        return None
    if not line.strip():
        return None
    try:
        group = parse_dump_line(line, label, skipped_secondary)
    except NotJson:
        counts.not_json += 1
    except BadMbid:
        counts.bad_mbid += 1
    except MalformedItem as exc:
        counts.malformed += 1
        return first_line(exc)[:200]
    else:
        if group is None:
            counts.filtered += 1
        elif group.genre in (AMBIGUOUS, UNLABELLED):
            counts.unlabelled += 1
        else:
            counts.candidates += 1
            batch.append((group, candidate_rank(seed, group.mbid)))
    return None


def _state(key: str, counts: DumpCounts, done: bool) -> str:
    return json.dumps({"key": key, "done": done, "counts": asdict(counts)})
