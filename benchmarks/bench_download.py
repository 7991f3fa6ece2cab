"""Cover download throughput: our fetch download stage vs img2dataset, against the same local server.

    python benchmarks/bench_download.py [--concurrency 32] [--repeat 2] [--limit N] [--smoke] [--ours-only]

Server: the simulator in its own process (benchmarks/_sim_server.py) with the benchmark world's
covers (500 px JPEGs, ~54 kB) preloaded, request logging and the MusicBrainz rate limit off.
URLs: the Cover Art Archive ones, {base}/release-group/<mbid>/front-500, each answered by
307 -> 302 -> image (3 HTTP requests per cover); both tools fetch the same covers (art ok, not
flaky, resolved to a genre: ~9,300).

- ours: `run_fetch(settings, FetchOptions(discover=False))` on a catalog holding those release groups (inserted
  beforehand, untimed, with the taxonomy fingerprint a discovering fetch leaves), in a fresh process that starts
  the download processes' forkserver before its own imports and freezes the GC before exiting, as `equigen fetch
  --skip-discovery` does: download
  (libcurl in the download processes), validate (JPEG decode), sha256, pHash, store
  in the content-addressed image folder, record in SQLite. --concurrency downloads at a time, split over
  one download process per core (each with its own libcurl transfers); the parent records. --one-loop-too also runs
  every download on the parent's one event loop (validation in 2 threads).
- bare aiohttp: the same URLs and concurrency, one event loop, redirects followed and bodies read,
  nothing else: what the HTTP path alone costs on this machine.
- img2dataset (in its own venv, benchmarks/work/bench-venv or $EQUIGEN_BENCH_VENV, since it pins older
  pandas/albumentations):
  output_format files, resize_mode no, skip_reencode (so it decodes to validate but keeps the bytes),
  sha256 on (its default), exif off, retries 0, processes_count x thread_count = --concurrency
  (2 x 16), 500 URLs per shard so both processes get work.
Both are timed by wall clock from process start to exit (interpreter start and imports included);
ours also reports its own busy-time rate. CPU: each tool's CPU seconds (ours: the process;
img2dataset: its process tree) and the server's, over the same window.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "bench_download"
BENCH_VENV = C.BENCH_VENV

I2D_SCRIPT = r"""
import json, sys
from img2dataset import download
a = json.loads(sys.argv[1])
download(url_list=a["urls"], input_format="txt", output_folder=a["out"], output_format="files",
         resize_mode="no", skip_reencode=True, processes_count=a["processes"], thread_count=a["threads"],
         number_sample_per_shard=a["per_shard"], timeout=30, retries=0, extract_exif=False,
         compute_hash="sha256", enable_wandb=False, distributor="multiprocessing")
"""

OURS_SCRIPT = r"""
import json, os, sys, time
t0 = time.monotonic()
a = json.loads(sys.argv[1])
from equigen.harvest.forkserver import start_forkserver_early
if not a.get("threads"):  # as `equigen fetch --skip-discovery` does, before importing its verb
    start_forkserver_early()
from rich.console import Console
from equigen.core.config import load_settings
import equigen.harvest.downloader
from equigen.harvest.fetch import FetchOptions, run_fetch
if a.get("threads"):  # every download on one event loop, validated in 2 threads (no download processes)
    equigen.harvest.downloader.DOWNLOAD_PROCESSES_MIN_COVERS = 1 << 62
settings = load_settings(data_dir=a["data_dir"], musicbrainz_url=a["url"], coverart_url=a["url"],
                         concurrency=a["concurrency"], per_host=a["concurrency"])
stats = run_fetch(settings, FetchOptions(discover=False), console=Console(stderr=True, quiet=True))
print(json.dumps({"downloaded": stats.downloaded, "ok": stats.ok, "failed": stats.failed,
                  "bytes": stats.bytes,
                  "by_status": stats.by_status, "busy_s": stats.download_seconds, "fetch_wall_s": stats.wall_seconds,
                  "rate_busy": stats.covers_per_second, "process_s": time.monotonic() - t0,
                  "main_process_cpu_s": sum(os.times()[:2])}))  # the parent (recording) process, threads included
import gc
gc.freeze()  # as the equigen command does before it exits (cli.main)
"""

# The limit of the network path: the same URLs, the same concurrency and event loop, aiohttp following the
# redirects and reading each body, nothing else (no validation, hashing, storing or bookkeeping).
BARE_SCRIPT = r"""
import asyncio, json, sys, time
t0 = time.monotonic()
import aiohttp
a = json.loads(sys.argv[1])
urls = open(a["urls"]).read().split()

async def main():
    ok = 0
    queue = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)
    connector = aiohttp.TCPConnector(limit=a["concurrency"], limit_per_host=a["concurrency"])
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker():
            nonlocal ok
            while not queue.empty():
                u = queue.get_nowait()
                async with session.get(u) as resp:
                    body = await resp.read()
                    ok += resp.status == 200 and len(body) > 0
        await asyncio.gather(*(worker() for _ in range(a["concurrency"])))
    return ok

ok = asyncio.run(main())
print(json.dumps({"ok": ok,
                  "process_s": time.monotonic() - t0}))
"""


def ensure_img2dataset(install: bool) -> Path | None:
    py = BENCH_VENV / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import img2dataset"], capture_output=True).returncode == 0:
        return py
    if not install:
        return None
    print(f"[bench] creating {BENCH_VENV} with img2dataset ...", file=sys.stderr, flush=True)
    if not py.exists():
        subprocess.run(["python3", "-m", "venv", str(BENCH_VENV)], check=True)
    r = subprocess.run([py, "-m", "pip", "install", "-q", "img2dataset"], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"[bench] img2dataset install failed:\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    return py


def start_server(smoke: bool, limit: int):
    cmd = (
        [sys.executable, str(C.BENCH_DIR / "_sim_server.py")]
        + (["--smoke"] if smoke else [])
        + (["--limit", str(limit)] if limit else [])
    )
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the simulator server did not start")
    return proc, json.loads(line)


def cpu_of(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores, /proc/stat)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def timed_child(cmd: list, server_pid: int, env=None) -> dict:
    """Wall time; client CPU = the whole machine's busy time minus the server's (worker processes of
    a process pool are not reaped children, so rusage would miss them; other load on the machine
    would count here too, which machine_busy_before in the results guards against)."""
    s0, m0, c0, t0 = cpu_of(server_pid), machine_busy_s(), children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    server = cpu_of(server_pid) - s0
    out = {
        "wall_s": wall,
        "cpu_s": machine_busy_s() - m0 - server,
        "rusage_children_cpu_s": children_cpu() - c0,
        "server_cpu_s": server,
        "rc": proc.returncode,
    }
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"{cmd[:3]} failed with {proc.returncode}")
    out["stdout"] = proc.stdout
    return out


_outputs = itertools.count()


def _fresh_output(work: Path, tool: str) -> Path:
    """A new folder for each run, all removed after the last one: deleting thousands of files just before a run
    makes ext4 search longer for free inodes (it avoids recently freed ones), which measured 92 -> 483 us of
    kernel CPU per new file over three delete-and-rewrite rounds here, against ~70 us on tmpfs."""
    return work / "runs" / f"{next(_outputs):02d}-{tool}"


def run_ours(
    url: str,
    world,
    mbids: list[str],
    concurrency: int,
    work: Path,
    server_pid: int,
    threads: bool = False,
) -> dict:
    from equigen.core.catalog import Catalog, ReleaseGroup

    data_dir = _fresh_output(work, "ours")
    groups = []
    for m in mbids:
        rg = world.by_mbid[m]
        groups.append(
            ReleaseGroup(
                rg.mbid,
                rg.title,
                rg.primary_type,
                rg.secondary_types,
                rg.first_release_date,
                rg.artist.mbid,
                rg.artist.name,
                rg.tags,
                rg.genre,
            )
        )
    with Catalog(data_dir / "catalog.sqlite") as cat:
        cat.add_release_groups(groups, found_via="benchmark")
        # as the fetch that discovered them leaves it: labelled under this taxonomy (no relabelling pass)
        cat.set_meta("taxonomy_fingerprint", world.taxonomy.fingerprint())
    arg = {"data_dir": str(data_dir), "url": url, "concurrency": concurrency, "threads": threads}
    arg = json.dumps(arg)
    res = timed_child([sys.executable, "-c", OURS_SCRIPT, arg], server_pid)
    res.update(json.loads(res.pop("stdout").strip().splitlines()[-1]))
    res["covers_per_s"] = res["ok"] / res["wall_s"]
    return res


def run_bare(url_file: Path, concurrency: int, server_pid: int) -> dict:
    arg = json.dumps({"urls": str(url_file), "concurrency": concurrency})
    res = timed_child([sys.executable, "-c", BARE_SCRIPT, arg], server_pid)
    res.update(json.loads(res.pop("stdout").strip().splitlines()[-1]))
    res["covers_per_s"] = res["ok"] / res["wall_s"]
    return res


def run_img2dataset(py: Path, urls: list[str], concurrency: int, work: Path, server_pid: int) -> dict:
    out_dir = _fresh_output(work, "img2dataset")
    url_file = work / "urls.txt"
    url_file.write_text("\n".join(urls) + "\n")
    processes = min(2, concurrency)
    arg = json.dumps(
        {
            "urls": str(url_file),
            "out": str(out_dir),
            "processes": processes,
            "threads": max(1, concurrency // processes),
            "per_shard": max(10, min(500, len(urls) // (4 * processes))),
        }
    )
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    res = timed_child([str(py), "-c", I2D_SCRIPT, arg], server_pid, env=env)
    res.pop("stdout")
    ok = failed = 0
    for f in out_dir.glob("*_stats.json"):
        s = json.loads(f.read_text())
        ok += s.get("successes", 0)
        failed += s.get("failed_to_download", 0) + s.get("failed_to_resize", 0)
    res.update(ok=ok, failed=failed, covers_per_s=ok / res["wall_s"])
    return res


def _rounds(runs: dict) -> str:
    """Each round's rates and ratio: whether the goal holds in every round, not only best against best."""
    ours = [r["covers_per_s"] for r in runs["ours"]]
    theirs = [r["covers_per_s"] for r in runs["img2dataset"]]
    ratios = ", ".join(f"{a / b:.2f}x" for a, b in zip(ours, theirs))
    return (
        f"rounds: ours {', '.join(f'{a:.0f}' for a in ours)}/s against img2dataset's "
        f"{', '.join(f'{b:.0f}' for b in theirs)}/s ({ratios})"
    )


def _filesystem(path: Path) -> str:
    """The type of the file system `path` is on (the longest mount point above it, /proc/mounts)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fs = line.split()[:3]
            if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) > len(best):
                best, kind = mount, fs
    except OSError:
        pass
    return kind


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="use only the first N covers")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where both tools write their covers (default benchmarks/work/); e.g. /dev/shm to keep the disk out "
        "of it: on a journal-less ext4, as on this VM, creating files just after thousands were deleted costs "
        "0.1-0.5 ms of kernel CPU each (the inode allocator skips recently freed inodes one by one)",
    )
    p.add_argument(
        "--one-loop-too",
        action="store_true",
        help="also run ours with every download on one event loop, validated in 2 threads (no download processes)",
    )
    args = p.parse_args()
    if args.smoke:
        args.limit, args.repeat, args.concurrency = args.limit or 60, 1, 8
    world = C.bench_world(args.smoke)
    genres = set(world.taxonomy.genres)
    pool = C.usable_mbids(world, distinct=False)
    if args.limit:
        pool = pool[: args.limit]
    mbids = [m for m in pool if world.by_mbid[m].genre in genres]
    work = (args.out_dir or C.WORK) / ("download-smoke" if args.smoke else "download")
    shutil.rmtree(work / "runs", ignore_errors=True)  # an earlier invocation's, if it was killed
    work.mkdir(parents=True, exist_ok=True)
    py = None if args.ours_only else ensure_img2dataset(not args.no_install)

    server, info = start_server(args.smoke, args.limit)
    try:
        url = info["url"]
        from equigen.harvest.coverart import cover_url

        urls = [cover_url(url, m, 500) for m in mbids]
        url_file = work / "urls.txt"
        url_file.write_text("\n".join(urls) + "\n")
        runs = {"ours": [], "img2dataset": [], "ours_one_loop": [], "bare_aiohttp": []}
        for _ in range(args.repeat):
            runs["bare_aiohttp"].append(run_bare(url_file, args.concurrency, server.pid))
            print("bare aiohttp", runs["bare_aiohttp"][-1], flush=True)
            if args.one_loop_too:
                runs["ours_one_loop"].append(run_ours(url, world, mbids, args.concurrency, work, server.pid, True))
                print(
                    "ours (one loop)",
                    {k: v for k, v in runs["ours_one_loop"][-1].items() if k != "by_status"},
                    flush=True,
                )
            runs["ours"].append(run_ours(url, world, mbids, args.concurrency, work, server.pid))
            print("ours", {k: v for k, v in runs["ours"][-1].items() if k != "by_status"}, flush=True)
            if py is not None:
                runs["img2dataset"].append(run_img2dataset(py, urls, args.concurrency, work, server.pid))
                print("img2dataset", runs["img2dataset"][-1], flush=True)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(work / "runs", ignore_errors=True)

    cores = os.cpu_count() or 1
    best = {k: max(v, key=lambda r: r["covers_per_s"]) for k, v in runs.items() if v}
    o = best["ours"]
    n = len(mbids)
    ours_txt = (
        f"{o['covers_per_s']:.0f} covers/s ({o['ok']}/{n} ok in {o['wall_s']:.1f} s wall; "
        f"busy-time rate {o['rate_busy']:.0f}/s; client CPU {o['cpu_s'] / o['wall_s']:.2f} cores, "
        f"server {o['server_cpu_s'] / o['wall_s']:.2f} cores)"
    )
    goal = ">= 2x img2dataset and >= 1,000 covers/s"
    details = {
        "covers": n,
        "concurrency": args.concurrency,
        "cores": cores,
        "runs": runs,
        "server_cpu_share_ours": o["server_cpu_s"] / (o["wall_s"] * cores),
        "output_dir": str(work),
        "output_filesystem": _filesystem(work),
    }
    if "ours_one_loop" in best:
        details["ours_one_loop_best_covers_per_s"] = best["ours_one_loop"]["covers_per_s"]
    b = best["bare_aiohttp"]
    details["bare_aiohttp_best_covers_per_s"] = b["covers_per_s"]
    details["ours_share_of_bare"] = o["covers_per_s"] / b["covers_per_s"] if b["covers_per_s"] else None
    details["cpu_ms_per_cover"] = {
        "ours_total": o["cpu_s"] / n * 1e3,
        "ours_parent_process": o["main_process_cpu_s"] / n * 1e3,
        "ours_download_processes": (o["cpu_s"] - o["main_process_cpu_s"]) / n * 1e3,
        "bare_aiohttp": b["cpu_s"] / n * 1e3,
    }
    ours_txt += (
        f"; CPU per cover {o['cpu_s'] / n * 1e3:.2f} ms, of which the parent "
        f"(recording) {o['main_process_cpu_s'] / n * 1e3:.2f} ms; a bare aiohttp client (download only) "
        f"{b['covers_per_s']:.0f}/s at {b['cpu_s'] / n * 1e3:.2f} ms per cover"
    )
    rows = []
    if "img2dataset" in best:
        i = best["img2dataset"]
        details["server_cpu_share_img2dataset"] = i["server_cpu_s"] / (i["wall_s"] * cores)
        ratio = o["covers_per_s"] / i["covers_per_s"] if i["covers_per_s"] else None
        rows.append(
            C.row(
                f"Download {n:,} CAA covers (500 px, 307->302->image), concurrency {args.concurrency}",
                ours_txt,
                f"{i['covers_per_s']:.0f} covers/s ({i['ok']}/{n} ok in {i['wall_s']:.1f} s; client CPU "
                f"{i['cpu_s'] / i['wall_s']:.2f} cores, server {i['server_cpu_s'] / i['wall_s']:.2f} cores; "
                f"img2dataset {C.version_of_in(BENCH_VENV, 'img2dataset')})",
                ratio,
                goal,
                bool(ratio is not None and ratio >= 2 and o["covers_per_s"] >= 1000),
                f"best of {args.repeat}; {_rounds(runs)}; covers written to {details['output_filesystem']}; server "
                f"shares the {cores} cores ({details['server_cpu_share_ours']:.0%} of machine CPU during ours)",
            )
        )
    else:
        rows.append(
            C.row(
                f"Download {n:,} CAA covers (ours only)",
                ours_txt,
                "-",
                None,
                goal,
                bool(o["covers_per_s"] >= 1000) and None,
            )
        )
    C.write_results(NAME, rows, args, details)


if __name__ == "__main__":
    main()
