"""The simulator's HTTP side: MusicBrainz ws/2 (JSON search and lookup) and the Cover Art Archive
redirect chain over one aiohttp.web app, with MusicBrainz's rate limit and planted faults.

Paths served on one base URL:
  /ws/2/release-group?query=..&limit=..&offset=..&fmt=json     search (1 request/s per client)
  /ws/2/release-group/<mbid>?inc=artist-credits+tags&fmt=json  lookup
  /release-group/<mbid>[/front|/front-250|/front-500|/front-1200]   CAA index / 307 redirect
  /download/mbid-<rel>/<file>    302 to the storage node (archive.org's role)
  /ia/<node>/items/mbid-<rel>/<file>   the image bytes
  /__sim__/log, /__sim__/truth, /__sim__/health   for tests and tools

Search understands the Lucene subset clients send (field:"value", AND/OR/NOT, parentheses); `tag`
values are tokenized as MusicBrainz's Solr analyses them (equigen/core/search_analysis.py), so `tag:"metal"` also
returns "death metal" albums.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

from aiohttp import web

from equigen.core.errors import EquigenError, check_number, first_line
from equigen.core.mbids import is_mbid
from equigen.core.options import check_seed
from equigen.core.search_analysis import mb_tokens, phrase_in
from equigen.simulator.world import PRIMARY_TYPE_IDS, SECONDARY_TYPE_IDS, ReleaseGroup, World, WorldConfig

BAD_MBID = "../../etc/passwd"
GENERIC_AGENTS = ("python/", "python-requests", "python-urllib", "aiohttp")  # lower case prefixes
RATE_LIMIT_MESSAGE = (
    "Your requests are exceeding the allowable rate limit. Please see "
    "https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting for more information."
)
_FRONT = {"front": 0, "front-250": 250, "front-500": 500, "front-1200": 1200}
_IMAGE_FILE = re.compile(r"mbid-([0-9a-f-]{36})-(\d+)(?:_thumb(250|500|1200))?\.jpg")
_OVERSIZE_CHUNK = 1 << 20


@dataclass(frozen=True)
class SimConfig:
    """Server behaviour knobs (the world's content and faults live in WorldConfig)."""

    rate_limit: int = 1  # MusicBrainz requests per client per window; 0 = unlimited
    rate_window: float = 1.0  # seconds
    rate_tolerance: float = 0.02  # seconds of clock/network jitter forgiven at the window's edge
    retry_after: bool = True  # send Retry-After: 1 with rate-limit 503s
    require_user_agent: bool = True  # 403 for a missing or generic library User-Agent
    mb_error_rate: float = 0.0  # extra random 503s on MusicBrainz
    image_error_rate: float = 0.0  # random transient 500s on image bytes
    flaky_failures: int = 2  # failures of each flaky image before it succeeds
    latency_ms: float = 0.0  # added to every non-/__sim__/ request
    # Real-world timing (all off by default; SimConfig.realistic() turns them on, `equigen simulate --realistic`):
    mb_latency_ms: tuple[float, float] = (0.0, 0.0)  # each MusicBrainz answer, uniform in [lo, hi]
    redirect_latency_ms: tuple[float, float] = (0.0, 0.0)  # each CAA 307 and each archive.org 302
    image_bytes_per_s: float = 0.0  # per-connection bandwidth of an image body; 0 = unlimited
    image_host_limit: int = 0  # image bodies served at once; beyond it 429 or 503 (alternating); 0 = none
    reset_rate: float = 0.0  # image requests whose connection is reset before an answer
    stall_rate: float = 0.0  # image requests that hang (the client's timeout must fire)
    stall_seconds: float = 120.0
    bad_mbid: bool = False  # every search gets an extra first match whose id is not a UUID
    bad_redirect: bool = False  # one release group's CAA redirect points at ftp://
    redirect_loop: bool = False  # one release group's CAA redirect chain never ends
    log_requests: bool = True
    # Processes that draw covers on a cache miss (forked with the world, before serving; Linux only);
    # 0: threads of this process, which the GIL holds to about 100 covers/s.
    render_processes: int = 0

    @classmethod
    def realistic(cls, **overrides) -> SimConfig:
        """Timing of the real services as issue 13 sets it: MusicBrainz answers in 200-800 ms, each Cover Art
        Archive 307 and archive.org 302 in 100-400 ms, image bodies at 2 MB/s per connection with at most 48
        served at once (429/503 beyond), 0.2 % connection resets and 0.1 % stalls. The rate limit stays the
        real 1 request/s."""
        return cls(
            **{
                "mb_latency_ms": (200.0, 800.0),
                "redirect_latency_ms": (100.0, 400.0),
                "image_bytes_per_s": 2_000_000.0,
                "image_host_limit": 48,
                "reset_rate": 0.002,
                "stall_rate": 0.001,
                **overrides,
            }
        )

    @property
    def timed(self) -> bool:
        return bool(
            self.latency_ms
            or max(self.mb_latency_ms)
            or max(self.redirect_latency_ms)
            or self.image_bytes_per_s
            or self.image_host_limit
            or self.reset_rate
            or self.stall_rate
        )


@dataclass(slots=True)
class LogEntry:
    t: float  # time.time() when the request arrived (before any simulated latency)
    method: str
    path: str
    query_string: str
    status: int  # 0 = the connection was dropped on purpose
    user_agent: str
    service: str  # musicbrainz | coverart | image | sim


def _service(path: str) -> str:
    if path.startswith("/ws/2/"):
        return "musicbrainz"
    if path.startswith(("/download/", "/ia/")):
        return "image"
    if path.startswith(("/release-group/", "/release/")):
        return "coverart"
    return "sim"


# ---- Lucene subset --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>AND\b|OR\b|NOT\b|&&|\|\||!)"
    r'|(?P<field>[A-Za-z][\w-]*):(?:"(?P<fq>(?:[^"\\]|\\.)*)"|(?P<fv>[^\s()"]+))'
    r'|"(?P<q>(?:[^"\\]|\\.)*)"|(?P<v>[^\s()"]+))',
    re.IGNORECASE,
)
_UNESCAPE = re.compile(r"\\(.)")

Predicate = Callable[[ReleaseGroup], bool]


def _tag_predicate(value: str) -> Predicate:
    """`tag:"death metal"` as MusicBrainz answers it: a phrase over the tokens of any one tag.

    Tags and the query value go through the search server's analysis (see equigen/core/search_analysis.py, after
    metabrainz/mbsssss common/fieldtypes.xml `text_mult` and metabrainz/mb-solr
    MusicbrainzTokenizerImpl.jflex), so "metal" matches "death metal" and "Heavy-Metal",
    "hip hop" matches "hip-hop", and "death metal" does not match plain "metal". An unquoted
    value is treated the same way (the real edismax may OR the tokens of an unquoted `tag:a-b`).
    """
    phrase = mb_tokens(value)
    seen: dict[str, bool] = {}  # per tag spelling: the world's vocabulary is small

    def match(tag: str) -> bool:
        hit = seen.get(tag)
        if hit is None:
            hit = seen[tag] = phrase_in(phrase, mb_tokens(tag))
        return hit

    return lambda rg: any(match(t) for t, _ in rg.tags)


def _field_predicate(name: str, value: str) -> Predicate:
    if name == "tag":
        return _tag_predicate(value)
    value = value.lower()
    if name in ("primarytype", "type"):
        return lambda rg: rg.primary_type.lower() == value
    if name == "secondarytype":
        return lambda rg: any(s.lower() == value for s in rg.secondary_types)
    if name == "arid":
        return lambda rg: rg.artist.mbid == value
    if name in ("artist", "artistname"):
        return lambda rg: value in rg.artist.name.lower()
    if name == "rgid":
        return lambda rg: rg.mbid == value
    if name in ("releasegroup", "title"):
        return lambda rg: value in rg.title.lower()
    raise ValueError(f"unsupported search field {name!r}")


def parse_query(query: str) -> Predicate:
    """A predicate for the Lucene subset clients send: field:"value", bare terms, AND/OR/NOT, (...).

    Operators are case-insensitive; adjacent terms are ANDed. Raises ValueError on a malformed query.
    """
    tokens: list[tuple[str, object]] = []
    pos, text = 0, query.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse query near {text[pos : pos + 20]!r}")
        pos = m.end()
        if m["lp"] or m["rp"]:
            tokens.append(("paren", m[0].strip()))
        elif m["op"]:
            op = m["op"].upper()
            tokens.append(("op", {"&&": "AND", "||": "OR", "!": "NOT"}.get(op, op)))
        else:
            name = m["field"].lower() if m["field"] else "releasegroup"  # the default search field
            raw = next(g for g in (m["fq"], m["fv"], m["q"], m["v"]) if g is not None)
            value = _UNESCAPE.sub(r"\1", raw).strip()
            if not value:
                raise ValueError("empty search term")
            tokens.append(("term", (name, value)))
    if not tokens:
        raise ValueError("empty query")
    i = 0

    def peek() -> tuple[str, object] | None:
        return tokens[i] if i < len(tokens) else None

    def or_expr() -> Predicate:
        nonlocal i
        parts = [and_expr()]
        while peek() == ("op", "OR"):
            i += 1
            parts.append(and_expr())
        return parts[0] if len(parts) == 1 else (lambda rg: any(p(rg) for p in parts))

    def and_expr() -> Predicate:
        nonlocal i
        parts = [unary()]
        while (tok := peek()) is not None and tok not in (("op", "OR"), ("paren", ")")):
            if tok == ("op", "AND"):
                i += 1
            parts.append(unary())
        return parts[0] if len(parts) == 1 else (lambda rg: all(p(rg) for p in parts))

    def unary() -> Predicate:
        nonlocal i
        tok = peek()
        if tok == ("op", "NOT"):
            i += 1
            inner = unary()
            return lambda rg: not inner(rg)
        if tok == ("paren", "("):
            i += 1
            inner = or_expr()
            if peek() != ("paren", ")"):
                raise ValueError("unbalanced parentheses")
            i += 1
            return inner
        if tok is None or tok[0] != "term":
            raise ValueError(f"unexpected {tok[1] if tok else 'end of query'!r}")
        i += 1
        return _field_predicate(*tok[1])

    predicate = or_expr()
    if i != len(tokens):
        raise ValueError(f"unexpected {tokens[i][1]!r}")
    return predicate


# ---- JSON shapes ----------------------------------------------------------------------------------


def release_group_json(rg: ReleaseGroup, search: bool, inc: frozenset[str] = frozenset()) -> dict:
    """A release group as MusicBrainz ws/2 JSON: the search shape, or the lookup shape with `inc`."""
    secondary_ids = [SECONDARY_TYPE_IDS[s] for s in rg.secondary_types]
    primary_id = PRIMARY_TYPE_IDS[rg.primary_type]
    credit = [
        {
            "name": rg.artist.name,
            "artist": {"id": rg.artist.mbid, "name": rg.artist.name, "sort-name": rg.artist.sort_name},
        }
    ]
    tags = [{"count": n, "name": t} for t, n in rg.tags]
    if search:
        out = {
            "id": rg.mbid,
            "type-id": secondary_ids[0] if secondary_ids else primary_id,
            "score": 100,
            "primary-type-id": primary_id,
            "count": 1,
            "title": rg.title,
        }
        if rg.first_release_date:
            out["first-release-date"] = rg.first_release_date
        out["primary-type"] = rg.primary_type
        if rg.secondary_types:  # the search service omits empty lists
            out["secondary-types"] = list(rg.secondary_types)
            out["secondary-type-ids"] = secondary_ids
        out["artist-credit"] = credit
        out["releases"] = [{"id": rg.release_mbid, "title": rg.title, "status": "Official"}]
        if tags:
            out["tags"] = tags
        return out
    out = {
        "id": rg.mbid,
        "title": rg.title,
        "first-release-date": rg.first_release_date or "",
        "primary-type": rg.primary_type,
        "primary-type-id": primary_id,
        "secondary-types": list(rg.secondary_types),
        "secondary-type-ids": secondary_ids,
        "disambiguation": "",
    }
    if "artist-credits" in inc or "artists" in inc:
        out["artist-credit"] = credit
    if "tags" in inc:
        out["tags"] = tags
    if "releases" in inc:
        out["releases"] = [{"id": rg.release_mbid, "title": rg.title, "status": "Official"}]
    return out


def _json(data: object, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers, content_type="application/json")


# ---- the app --------------------------------------------------------------------------------------


class _Simulator:
    """Request handlers and mutable server state (rate windows, flaky counters, error streams)."""

    def __init__(self, world: World, config: SimConfig, log: list[LogEntry]) -> None:
        self.world, self.config, self.log = world, config, log
        self.render_pool: ProcessPoolExecutor | None = None
        self._windows: dict[str, deque[float]] = {}
        self._queries: dict[str, list[ReleaseGroup]] = {}
        self._failures: dict[str, int] = {}
        self._dropped: set[int] = set()  # ids of in-flight requests whose connection was dropped
        # Separate streams so MusicBrainz traffic doesn't shift which images fail, and vice versa.
        self._mb_errors = random.Random(world.config.seed * 7919 + 1)
        self._image_errors = random.Random(world.config.seed * 7919 + 2)
        self._timing = random.Random(world.config.seed * 7919 + 3)  # latencies, resets, stalls
        self._serving_images = 0
        self._over_limit = 0
        self._sorted = sorted(world.release_groups, key=lambda rg: rg.mbid)
        self.planted: dict[str, str] = {}
        specials = [
            rg
            for rg in self._sorted
            if rg.findable
            and rg.genre in world.taxonomy.tags
            and rg.art == "ok"
            and not rg.flaky
            and rg.duplicate_of is None
        ]
        if config.bad_mbid:
            self.planted["bad_mbid"] = BAD_MBID
        if config.bad_redirect:
            self.planted["bad_redirect"] = specials[0].mbid
        if config.redirect_loop:
            self.planted["redirect_loop"] = specials[1].mbid

    def app(self) -> web.Application:
        middlewares = []
        if self.config.log_requests or self.config.timed:
            middlewares.append(self._middleware)
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/ws/2/release-group", self.search)
        app.router.add_get("/ws/2/release-group/{mbid}", self.lookup)
        app.router.add_get("/release-group/{mbid}", self.caa_index)
        app.router.add_get("/release-group/{mbid}/{which}", self.caa_front)
        app.router.add_get("/download/{item}/{file}", self.download)
        app.router.add_get("/ia/{node}/items/{item}/{file}", self.image)
        app.router.add_get("/__sim__/log", self.sim_log)
        app.router.add_get("/__sim__/truth", self.sim_truth)
        app.router.add_get("/__sim__/health", self.sim_health)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        arrived = time.time()
        if self.config.latency_ms and not request.path.startswith("/__sim__/"):
            await asyncio.sleep(self.config.latency_ms / 1000)
        if request.path.startswith("/ws/2/"):
            lo_hi = self.config.mb_latency_ms
        elif request.path.startswith(("/release-group/", "/download/")):  # the CAA 307, the archive.org 302
            lo_hi = self.config.redirect_latency_ms
        else:
            lo_hi = (0.0, 0.0)
        status = 500
        try:
            response = await handler(request)
            if lo_hi[1] > 0:
                # Time to answer, spent after the rate-limit gate has seen the request: a search is slow because
                # the server works on it, not because the request dawdles on its way in (sleeping first would let
                # two requests sent 1.05 s apart reach the gate 0.45 s apart).
                await asyncio.sleep(self._timing.uniform(*lo_hi) / 1000)
            status = 0 if id(request) in self._dropped else response.status
            self._dropped.discard(id(request))
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if self.config.log_requests:
                self.log.append(
                    LogEntry(
                        arrived,
                        request.method,
                        request.path,
                        request.query_string,
                        status,
                        request.headers.get("User-Agent", ""),
                        _service(request.path),
                    )
                )

    # ---- MusicBrainz --------------------------------------------------------------------------

    def _gate(self, request: web.Request) -> web.Response | None:
        """403 / 400 / 503 before any MusicBrainz work, as the real service answers them."""
        agent = request.headers.get("User-Agent", "").strip()
        if self.config.require_user_agent and (not agent or agent.lower().startswith(GENERIC_AGENTS)):
            return _json(
                {
                    "error": "Please provide a meaningful User-Agent (application name, version and "
                    "contact); see https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting"
                },
                403,
            )
        if request.query.get("fmt") != "json" and "application/json" not in request.headers.get("Accept", ""):
            return _json({"error": "this simulator answers JSON only: add fmt=json"}, 400)
        if self.config.rate_limit > 0 and not self._admit(f"{agent}\x00{request.remote}"):
            return self._unavailable()
        if self.config.mb_error_rate and self._mb_errors.random() < self.config.mb_error_rate:
            return self._unavailable()
        return None

    def _unavailable(self) -> web.Response:
        headers = {"Retry-After": "1"} if self.config.retry_after else None
        return _json({"error": RATE_LIMIT_MESSAGE}, 503, headers)

    def _admit(self, key: str) -> bool:
        """Sliding window per client; rejected requests don't use up the allowance."""
        now = time.monotonic()
        window = self._windows.setdefault(key, deque())
        horizon = now - self.config.rate_window + self.config.rate_tolerance
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= self.config.rate_limit:
            return False
        window.append(now)
        return True

    def _matches(self, query: str) -> list[ReleaseGroup]:
        hits = self._queries.get(query)
        if hits is None:
            predicate = parse_query(query)
            hits = [rg for rg in self._sorted if predicate(rg)]  # all score 100: ordered by id, stable paging
            if len(self._queries) > 1024:
                self._queries.clear()
            self._queries[query] = hits
        return hits

    async def search(self, request: web.Request) -> web.Response:
        if (refusal := self._gate(request)) is not None:
            return refusal
        query = request.query.get("query", "")
        try:
            limit = int(request.query.get("limit", "25"))
            offset = int(request.query.get("offset", "0"))
            hits = self._matches(query)
        except ValueError as exc:
            return _json({"error": f"Invalid query or paging: {exc}"}, 400)
        limit, offset = min(max(limit, 1), 100), max(offset, 0)
        rows: list[ReleaseGroup | None] = hits
        if self.config.bad_mbid and hits:
            rows = [None, *hits]  # one extra match at the top, so paging over the rest stays exact
        page = [release_group_json(rg or hits[0], search=True) for rg in rows[offset : offset + limit]]
        if page and rows[offset] is None:
            page[0]["id"] = BAD_MBID
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return _json({"created": created, "count": len(rows), "offset": offset, "release-groups": page})

    async def lookup(self, request: web.Request) -> web.Response:
        if (refusal := self._gate(request)) is not None:
            return refusal
        mbid = request.match_info["mbid"]
        if not is_mbid(mbid):
            return _json({"error": "Invalid mbid."}, 400)
        rg = self.world.by_mbid.get(mbid)
        if rg is None:
            return _json({"error": "Not Found"}, 404)
        inc = frozenset(re.split(r"[+ ]", request.query.get("inc", "")))
        return _json(release_group_json(rg, search=False, inc=inc))

    # ---- Cover Art Archive --------------------------------------------------------------------

    def _with_art(self, mbid: str) -> ReleaseGroup | web.Response:
        if not is_mbid(mbid):
            return web.Response(status=400, text=f"invalid MBID specified: {mbid}")
        rg = self.world.by_mbid.get(mbid)
        if rg is None or rg.art == "none":
            return web.Response(status=404, text=f"No cover art found for release group {mbid}")
        return rg

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def caa_index(self, request: web.Request) -> web.Response:
        rg = self._with_art(request.match_info["mbid"])
        if isinstance(rg, web.Response):
            return rg
        base = self._base(request)
        # The index links the archive.org download path, as the real one does.
        thumbs = {str(s): f"{base}/download/mbid-{rg.release_mbid}/{World.image_file(rg, s)}" for s in (250, 500, 1200)}
        image = {
            "approved": True,
            "back": False,
            "comment": "",
            "edit": 1 + rg.image_id % 100_000_000,
            "front": True,
            "id": rg.image_id,
            "image": f"{base}/download/mbid-{rg.release_mbid}/{World.image_file(rg, 0)}",
            "thumbnails": {**thumbs, "small": thumbs["250"], "large": thumbs["500"]},
            "types": ["Front"],
        }
        return _json({"images": [image], "release": f"{base}/release/{rg.release_mbid}"})

    async def caa_front(self, request: web.Request) -> web.Response:
        size = _FRONT.get(request.match_info["which"])
        rg = self._with_art(request.match_info["mbid"])
        if isinstance(rg, web.Response):
            return rg
        if size is None:
            return web.Response(status=404, text=f"No {request.match_info['which']} image found")
        if self.planted.get("bad_redirect") == rg.mbid:
            location = f"ftp://coverartarchive.invalid/{World.image_file(rg, size)}"
        else:
            location = f"{self._base(request)}/download/mbid-{rg.release_mbid}/{World.image_file(rg, size)}"
        return web.Response(status=307, headers={"Location": location})

    def _image_target(self, request: web.Request) -> tuple[ReleaseGroup, int] | None:
        """The release group and size named by an archive.org-style path, or None."""
        m = _IMAGE_FILE.fullmatch(request.match_info["file"])
        if not m or request.match_info["item"] != f"mbid-{m[1]}":
            return None
        rg = self.world.by_release.get(m[1])
        if rg is None or rg.art == "none" or str(rg.image_id) != m[2]:
            return None
        return rg, int(m[3] or 0)

    async def download(self, request: web.Request) -> web.Response:
        target = self._image_target(request)
        if target is None:
            return web.Response(status=404, text="Item not found")
        rg, _ = target
        if self.planted.get("redirect_loop") == rg.mbid:
            # A new URL each hop, so only a redirect cap (not "same URL twice") stops a client.
            hop = int(request.query.get("hop", "0")) + 1
            return web.Response(status=302, headers={"Location": f"{self._base(request)}{request.path}?hop={hop}"})
        location = (
            f"{self._base(request)}/ia/{World.storage_node(rg)}/items/"
            f"{request.match_info['item']}/{request.match_info['file']}"
        )
        return web.Response(status=302, headers={"Location": location})

    async def image(self, request: web.Request) -> web.StreamResponse:
        target = self._image_target(request)
        if target is None or request.match_info["node"] != str(World.storage_node(target[0])):
            return web.Response(status=404, text="Item not found")
        rg, size = target
        if rg.flaky:
            done = self._failures.get(request.path, 0)
            if done < self.config.flaky_failures:
                self._failures[request.path] = done + 1
                kind = (500, 502, 503, 0)[(rg.cover.seed + done) % 4]
                return self._drop(request) if kind == 0 else web.Response(status=kind, text="Temporary failure")
        if self.config.image_error_rate and self._image_errors.random() < self.config.image_error_rate:
            return web.Response(status=500, text="Internal Server Error")
        cfg = self.config
        if cfg.reset_rate or cfg.stall_rate:
            draw = self._timing.random()
            if draw < cfg.reset_rate:
                return self._drop(request)
            if draw < cfg.reset_rate + cfg.stall_rate:
                await asyncio.sleep(cfg.stall_seconds)  # the client gives up first
                return web.Response(status=504, text="Gateway Timeout")
        if cfg.image_host_limit and self._serving_images >= cfg.image_host_limit:
            self._over_limit += 1  # archive.org answers both ways when a client opens too many connections
            status = 429 if self._over_limit % 2 else 503
            return web.Response(status=status, text="Too many connections", headers={"Retry-After": "1"})
        self._serving_images += 1
        try:
            body = self.world.cached_cover(rg.mbid, size)
            if body is None:  # render off the event loop so one miss doesn't stall every other request
                loop = asyncio.get_running_loop()
                if self.render_pool is None:
                    body = await loop.run_in_executor(None, self.world.cover_prefix, rg.mbid, size)
                else:
                    body = await loop.run_in_executor(self.render_pool, _render_cover, rg.mbid, size)
                    self.world.remember_cover(rg.mbid, size, body)
            if rg.art == "oversize":
                return await self._stream_oversize(request, body)
            content_type = "image/png" if rg.art == "bomb" else "image/jpeg"
            if cfg.image_bytes_per_s:
                return await self._stream_paced(request, body, content_type, cfg.image_bytes_per_s)
            return web.Response(body=body, content_type=content_type)
        finally:
            self._serving_images -= 1

    async def _stream_paced(self, request: web.Request, body: bytes, content_type: str, rate: float):
        """The body in 16 KB chunks at `rate` bytes/s: a connection's bandwidth, not the whole server's."""
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(body)
        await response.prepare(request)
        chunk = 16 * 1024
        try:
            for start in range(0, len(body), chunk):
                piece = body[start : start + chunk]
                await asyncio.sleep(len(piece) / rate)  # the piece takes this long to cross the wire
                await response.write(piece)
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    async def _stream_oversize(self, request: web.Request, prefix: bytes) -> web.StreamResponse:
        """A real JPEG then zeros up to oversize_bytes, written in chunks (never held whole)."""
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = self.world.config.oversize_bytes
        await response.prepare(request)
        try:
            await response.write(prefix)
            left = self.world.config.oversize_bytes - len(prefix)
            zeros = bytes(_OVERSIZE_CHUNK)
            while left > 0:
                await response.write(zeros[: min(left, _OVERSIZE_CHUNK)])
                left -= _OVERSIZE_CHUNK
            await response.write_eof()
        except ConnectionError:  # the client stopped reading at its size cap, as it should
            pass
        return response

    def _drop(self, request: web.Request) -> web.Response:
        """Close the connection without an answer (a reset the client must retry)."""
        if self.config.log_requests:
            self._dropped.add(id(request))  # the middleware logs it as status 0
        request.transport.abort()
        return web.Response(status=500)  # never reaches the client: the transport is gone

    # ---- /__sim__/ ----------------------------------------------------------------------------

    async def sim_log(self, request: web.Request) -> web.Response:
        return _json([asdict(entry) for entry in list(self.log)])

    async def sim_truth(self, request: web.Request) -> web.Response:
        return _json({**self.world.truth(), "planted": self.planted})

    async def sim_health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok", "release_groups": len(self.world.release_groups)})


_RENDER_WORLD: World | None = None  # the world a forked render process draws from


def _render_cover(mbid: str, size: int) -> bytes:
    assert _RENDER_WORLD is not None
    return _RENDER_WORLD.render_cover(mbid, size)


def _started() -> None:
    pass


def _render_process_init(parent: int) -> None:
    """A render process ends with the server's process, even one killed without a chance to clean up."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def start_render_pool(world: World, processes: int) -> ProcessPoolExecutor:
    """`processes` forked copies of this process that draw covers of `world`, all forked now (before any
    request is served), so they inherit the built world instead of building it again."""
    global _RENDER_WORLD
    _RENDER_WORLD = world
    pool = ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_render_process_init,
        initargs=(os.getpid(),),
    )
    pool.submit(_started).result()  # a fork pool starts every process at the first submit
    return pool


class SimulatorHandle:
    """A running simulator: its URL, world and request log."""

    def __init__(
        self,
        runner: web.AppRunner,
        url: str,
        world: World,
        config: SimConfig,
        log: list[LogEntry],
        planted: dict[str, str],
    ) -> None:
        self._runner = runner
        self._render_pool: ProcessPoolExecutor | None = None
        self.url, self.world, self.config, self.log, self.planted = url, world, config, log, planted

    def musicbrainz_log(self) -> list[LogEntry]:
        return [entry for entry in self.log if entry.service == "musicbrainz"]

    async def close(self) -> None:
        await self._runner.cleanup()
        if self._render_pool is not None:
            self._render_pool.shutdown(cancel_futures=True)


async def start_simulator(
    world_config: WorldConfig | None = None,
    sim_config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    world: World | None = None,
) -> SimulatorHandle:
    """Build the world (or use `world`) and serve it on host:port (0 = a free port)."""
    world = world or World.build(world_config or WorldConfig())
    config = sim_config or SimConfig()
    log: list[LogEntry] = []
    sim = _Simulator(world, config, log)
    if config.render_processes:
        sim.render_pool = start_render_pool(world, config.render_processes)
    runner = web.AppRunner(sim.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    handle = SimulatorHandle(runner, f"http://{shown}:{bound}", world, config, log, sim.planted)
    handle._render_pool = sim.render_pool
    return handle


@contextmanager
def simulator_in_thread(
    world_config: WorldConfig | None = None,
    sim_config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    world: World | None = None,
) -> Iterator[SimulatorHandle]:
    """Run the simulator's event loop in a background thread (for synchronous callers)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["handle"] = loop.run_until_complete(start_simulator(world_config, sim_config, host, port, world))
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
            return
        finally:
            ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="equigen-simulator", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        loop.close()
        raise box["error"]  # type: ignore[misc]
    handle: SimulatorHandle = box["handle"]  # type: ignore[assignment]
    try:
        yield handle
    finally:
        asyncio.run_coroutine_threadsafe(handle.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def _split_knobs(knobs: dict) -> tuple[dict, dict]:
    world_names = {f.name for f in fields(WorldConfig)}
    sim_names = {f.name for f in fields(SimConfig)}
    unknown = set(knobs) - world_names - sim_names
    if unknown:
        raise TypeError(f"unknown simulator knobs: {sorted(unknown)}")
    given = {k: v for k, v in knobs.items() if v is not None}
    return ({k: v for k, v in given.items() if k in world_names}, {k: v for k, v in given.items() if k in sim_names})


def serve_forever(port: int = 8080, seed: int = 0, host: str = "127.0.0.1", realistic: bool = False, **knobs) -> None:
    """Serve until Ctrl-C (the `equigen simulate` command). Knobs are WorldConfig/SimConfig fields;
    `realistic` starts from SimConfig.realistic()'s timing."""
    check_number("--port", port, 0, 65535, integer=True)
    check_seed(seed)
    world_knobs, sim_knobs = _split_knobs(knobs)
    sim_config = SimConfig.realistic(**sim_knobs) if realistic else SimConfig(**sim_knobs)

    async def main() -> None:
        try:
            handle = await start_simulator(WorldConfig(seed=seed, **world_knobs), sim_config, host, port)
        except (OSError, UnicodeError) as exc:  # an address in use, or a host that is no address here
            raise EquigenError(
                f"cannot serve on {host}:{port}: {getattr(exc, 'strerror', None) or first_line(exc)}"
            ) from None
        print(
            f"EquiGen simulator (seed {seed}, {len(handle.world.release_groups)} release groups) at {handle.url}"
            f"\n  --musicbrainz-url {handle.url} --coverart-url {handle.url}\nCtrl-C stops.",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            await handle.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("simulator stopped", flush=True)
