"""fetch --from-dump (issue 25): ingest a 1,000,000-line MusicBrainz JSON dump, and harvest 15 x 1,000 from a dump.

    python benchmarks/bench_dump.py                 # 1,000,000 lines; 15 genres x 1,000 end to end
    python benchmarks/bench_dump.py --smoke         # toy size
    python benchmarks/bench_dump.py --skip-end-to-end   # the ingest again; the last full run's other rows kept

1. Ingest. The simulator's dump lines (`equigen/simulator/dump.py`, the world `bench_world()` builds: the real
   dump's line shape, tags and genres included) repeated to N lines, each copy under a new MBID, packed as
   `release-group.tar.xz` (`mbdump/release-group`, xz preset 1; cached under benchmarks/work/dump/). Ours:
   `harvest/dump.py`'s `ingest_dump` into a fresh catalog (stream, parse with the search path's parser, label,
   store the candidates), in a child process; peak memory: the larger of that child's VmHWM and the summed
   PSS of it and its parse processes (sampled every 0.2 s; shared library pages counted once).
   Anchor, in the same run and the same way: the bare pass every reader of this file makes -- the same tar.xz
   streamed (`tarfile` `r|xz`) and each line `json.loads`-ed, nothing validated, labelled or stored.
   Ratio: anchor time / our time (the share of ours that is reading and parsing at all).
2. End to end. A simulator world with >= 1,000 usable covers in each of the 15 genres (30,000 artists, 64 px
   covers, in this process), its dump written with `write_dump`, then `run_fetch(FetchOptions(per_genre=1000,
   from_dump=...))`: the simulator's request log must hold 0 MusicBrainz requests; CAA requests, covers stored,
   and balance's count per genre are reported. Labels: a discovery-only fetch by tag search (rate limit off) on
   the same world, and every release group both catalogs hold must carry the same genre, votes and confidence.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import REPO, RESULTS, WORK, TreeSampler, bench_world, parser, row, write_results  # noqa: E402

CHILD_OURS = r"""
import json, sys, time
from pathlib import Path
from equigen.core.catalog import Catalog
from equigen.core.taxonomy import load_taxonomy
from equigen.harvest.dump import ingest_dump
from equigen.harvest.musicbrainz import DEFAULT_SKIPPED_SECONDARY
path, out = Path(sys.argv[1]), Path(sys.argv[2])
tax = load_taxonomy(None)
t0 = time.perf_counter()
with Catalog(out / "catalog.sqlite") as catalog:
    counts = ingest_dump(catalog, path, label=tax.label, skipped_secondary=DEFAULT_SKIPPED_SECONDARY, seed=0,
                         taxonomy_fingerprint=tax.fingerprint())
wall = time.perf_counter() - t0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
import os
from equigen.harvest.dump import PARALLEL_FROM_BYTES, PARSE_WORKERS
workers = min(PARSE_WORKERS, os.cpu_count() or 1) if path.stat().st_size >= PARALLEL_FROM_BYTES else 1
print(json.dumps({"wall_s": wall, "hwm_kb": hwm, "workers": workers, "counts": counts.__dict__,
                  "catalog_mb": (out / "catalog.sqlite").stat().st_size / 1e6}))
"""

CHILD_ANCHOR = r"""
import json, sys, tarfile, time
t0 = time.perf_counter()
n = 0
with tarfile.open(sys.argv[1], mode="r|xz") as tar:
    for member in tar:
        if member.name == "mbdump/release-group":
            for line in tar.extractfile(member):
                json.loads(line)
                n += 1
            break
wall = time.perf_counter() - t0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"wall_s": wall, "hwm_kb": hwm, "lines": n}))
"""


def _derived_mbid(i: int) -> bytes:
    h = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


def make_dump(n_lines: int, smoke: bool) -> Path:
    """release-group.tar.xz with n_lines lines: the world's dump lines, repeated under new MBIDs (cached)."""
    from equigen.simulator.dump import DUMP_MEMBER, dump_lines

    world = bench_world(smoke)
    folder = WORK / "dump"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"release-group-seed{world.config.seed}-a{world.config.n_artists}-{n_lines}.tar.xz"
    if target.exists():
        return target
    base = list(dump_lines(world))
    assert all(line.startswith(b'{"id":"') for line in base)  # the MBID sits at [7:43]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        plain = Path(tmp) / "release-group"
        with open(plain, "wb") as out:
            for i in range(n_lines):
                line = base[i % len(base)]
                out.write(line if i < len(base) else line[:7] + _derived_mbid(i) + line[43:])
        part = Path(tmp) / "dump.tar.xz"
        with tarfile.open(part, "w:xz", preset=1) as tar:
            tar.add(plain, arcname=DUMP_MEMBER)
        os.replace(part, target)
    return target


def _child(code: str, *args: str) -> dict:
    """Run `code` in a child and return its JSON line, with the peak summed PSS of it and its processes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    sampler = TreeSampler(proc.pid)
    out, err = proc.communicate()
    sampler.done = True
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {err[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "tree_pss_mb": sampler.peak_pss / 2**20}


def bench_ingest(n_lines: int, smoke: bool, ours_only: bool) -> tuple[dict, dict]:
    path = make_dump(n_lines, smoke)
    with tempfile.TemporaryDirectory() as out:
        ours = _child(CHILD_OURS, str(path), out)
    anchor = None if ours_only else _child(CHILD_ANCHOR, str(path))
    mb = max(ours["hwm_kb"] / 1024, ours["tree_pss_mb"])
    goal_s, goal_mb = 120, 500
    c = ours["counts"]
    result = row(
        f"Ingest a {n_lines:,}-line release-group dump ({path.stat().st_size / 1e6:.0f} MB tar.xz), "
        f"{ours['workers']} parse process(es) beside the reader",
        f"{ours['wall_s']:.1f} s, peak {mb:.0f} MB (PSS of the reader and its parse processes; the reader's VmHWM "
        f"{ours['hwm_kb'] / 1024:.0f} MB); {c['candidates']:,} candidates, "
        f"{c['filtered']:,} other types, {c['unlabelled']:,} unlabelled; catalog {ours['catalog_mb']:.0f} MB",
        "-"
        if anchor is None
        else f"{anchor['wall_s']:.1f} s, peak {anchor['hwm_kb'] / 1024:.0f} MB "
        "(tarfile r|xz + json.loads per line, nothing validated or stored)",
        None if anchor is None else anchor["wall_s"] / ours["wall_s"],
        f"<= {goal_s} s and <= {goal_mb} MB peak on 2 cores",
        ours["wall_s"] <= goal_s and mb <= goal_mb,
        notes="lines: the simulator's dump lines repeated under new MBIDs; ratio = anchor time / ours",
    )
    return result, {"ours": ours, "anchor": anchor, "dump": str(path)}


def bench_end_to_end(per_genre: int, smoke: bool) -> tuple[list[dict], dict]:
    from rich.console import Console

    from equigen.core.catalog import Catalog
    from equigen.core.config import load_settings
    from equigen.harvest.fetch import FetchOptions, run_fetch
    from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread, write_dump

    quiet = Console(stderr=True, quiet=True)
    if smoke:
        wc = WorldConfig.small(seed=0)
    else:
        wc = WorldConfig(seed=0, n_artists=30_000, min_artists_per_genre=1200, art_coverage=0.7, cover_px=64)
    details: dict = {}
    with tempfile.TemporaryDirectory(dir=WORK) as tmp, simulator_in_thread(wc, SimConfig(rate_limit=0)) as sim:
        tmp = Path(tmp)
        dump = tmp / "release-group.tar.xz"
        t0 = time.perf_counter()
        details["dump_lines"] = write_dump(sim.world, dump)
        details["write_dump_s"] = round(time.perf_counter() - t0, 1)
        settings = load_settings(data_dir=tmp / "dump", musicbrainz_url=sim.url, coverart_url=sim.url)
        t0 = time.perf_counter()
        stats = run_fetch(settings, FetchOptions(per_genre=per_genre, from_dump=dump), console=quiet)
        wall = time.perf_counter() - t0
        services = [e.service for e in sim.log]
        mb_requests, caa_requests = services.count("musicbrainz"), services.count("coverart")
        searched = load_settings(
            data_dir=tmp / "search", musicbrainz_url=sim.url, coverart_url=sim.url, mb_interval=0.0
        )
        search_stats = run_fetch(searched, FetchOptions(per_genre=per_genre, download=False), console=quiet)
        with Catalog(settings.catalog_path) as a, Catalog(searched.catalog_path) as b:
            cols = ["mbid", "genre", "label_votes", "label_confidence"]
            left = a.covers_frame(status=None)[cols].set_index("mbid")
            right = b.covers_frame(status=None)[cols].set_index("mbid")
    common = left.index.intersection(right.index)
    differ = int((left.loc[common] != right.loc[common]).any(axis=1).sum())
    balanced = all(stats.usable[g] >= per_genre for g in stats.usable)
    short = {g: n for g, n in stats.usable.items() if n < per_genre}
    details.update(
        {
            "fetch_wall_s": round(wall, 1),
            "mb_requests_logged": mb_requests,
            "caa_requests_logged": caa_requests,
            "stats": {k: v for k, v in stats.__dict__.items() if k not in ("by_status",)},
            "labels_compared": len(common),
            "labels_differ": differ,
            "search_mb_requests": search_stats.mb_requests,
        }
    )
    genres = len(stats.usable)
    rows = [
        row(
            f"fetch --from-dump {genres} genres x {per_genre:,} against the simulator (64 px covers, in-process)",
            f"{mb_requests} MusicBrainz requests; {caa_requests:,} CAA requests, {stats.downloaded:,} covers tried, "
            f"{stats.stored:,} stored for {stats.published:,} to publish ({stats.stored_per_published:.3f} stored per "
            f"published), {stats.rounds} rounds, {wall:.0f} s; balanced: {'every genre' if balanced else short}",
            f"the search path on the same world: {search_stats.mb_requests} MusicBrainz requests (discovery alone)",
            None,
            "0 MusicBrainz requests, every genre balanceable at --per-genre",
            mb_requests == 0 and balanced,
            notes=f"dump of {details['dump_lines']:,} lines written in {details['write_dump_s']} s",
        ),
        row(
            f"Labels: fetch --from-dump vs the search path on the same world ({len(common):,} release groups in both)",
            f"{differ} differ in genre, votes or confidence",
            "the search path's labels (tag search, discovery only, rate limit off)",
            None,
            "equal labels",
            differ == 0 and len(common) > 0,
        ),
    ]
    return rows, details


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--per-genre", type=int, default=1000)
    p.add_argument("--skip-end-to-end", action="store_true")
    args = p.parse_args()
    lines = 20_000 if args.smoke else args.lines
    per_genre = 5 if args.smoke else args.per_genre
    WORK.mkdir(parents=True, exist_ok=True)
    rows, details = [], {}
    ingest, details["ingest"] = bench_ingest(lines, args.smoke, args.ours_only)
    rows.append(ingest)
    if not args.skip_end_to_end:
        more, details["end_to_end"] = bench_end_to_end(per_genre, args.smoke)
        rows += more
    elif (RESULTS / "bench_dump.json").exists() and not args.smoke:
        # Re-measure the ingest alone (e.g. on a quieter machine): the end-to-end rows of the last full run stay,
        # marked with that run's date and load.
        earlier = json.loads((RESULTS / "bench_dump.json").read_text())
        e2e = earlier["details"].get("end_to_end", {})
        when = e2e.get("measured") or (
            f"from the full run of {earlier['date']} (machine {earlier.get('machine_busy_before') or 0:.0%} busy)"
        )
        for old in earlier["rows"][1:]:
            notes = old.get("notes") or ""
            rows.append({**old, "notes": notes if when in notes else "; ".join(x for x in (notes, when) if x)})
        details["end_to_end"] = {**e2e, "measured": when}
    write_results("bench_dump", rows, args, details)


if __name__ == "__main__":
    main()
