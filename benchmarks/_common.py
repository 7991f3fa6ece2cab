"""Shared helpers for the benchmark scripts: machine info, timing, anchors, simulator covers, result rows.

Each script writes benchmarks/results/<name>.json (or benchmarks/work/smoke/<name>.json with --smoke,
so a smoke run never overwrites a measured result); benchmarks/make_results.py renders RESULTS.md.
Large generated data (rendered covers, shards, downloads) lives under benchmarks/work/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / "work"
RESULTS = BENCH_DIR / "results"
# img2dataset pins older pandas and pulls albumentations/opencv/wandb: it gets a venv of its own (git-ignored).
BENCH_VENV = Path(os.environ.get("EQUIGEN_BENCH_VENV", WORK / "bench-venv"))

# The world the benchmarks draw covers from: the default world with more artists (about 11,000 covers with art).
BENCH_SEED = 0
BENCH_ARTISTS = 3000


def machine() -> str:
    """'<cpu model>, N cores, M GiB' of this machine."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        pass
    return f"{model}, {os.cpu_count()} cores{mem}, no GPU used"


def today() -> str:
    return _dt.date.today().isoformat()


def system_busy(seconds: float = 1.0) -> float:
    """Fraction of all cores busy over `seconds` (from /proc/stat): other work that would skew a timing."""

    def snap():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    try:
        t0, i0 = snap()
        time.sleep(seconds)
        t1, i1 = snap()
    except OSError:
        return float("nan")
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


BUSY_BEFORE: float | None = None


def parser(doc: str | None) -> argparse.ArgumentParser:
    global BUSY_BEFORE
    if "--smoke" not in sys.argv:
        # A shared machine: wait (up to QUIET_WAIT_S) for other work to stop before timing anything.
        deadline = time.monotonic() + float(os.environ.get("EQUIGEN_BENCH_QUIET_WAIT_S", "300"))
        BUSY_BEFORE = system_busy(1.0)
        while BUSY_BEFORE > 0.1 and time.monotonic() < deadline:
            BUSY_BEFORE = system_busy(2.0)
        if BUSY_BEFORE > 0.1:
            print(
                f"[bench] warning: the machine was {BUSY_BEFORE:.0%} busy before this run: timings will be low",
                file=sys.stderr,
            )
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="toy size: seconds, for tests/test_benchmarks_smoke.py")
    p.add_argument("--ours-only", action="store_true", help="skip the anchor(s): measure our side only")
    p.add_argument("--no-install", action="store_true", help="never pip-install a missing anchor")
    return p


@contextmanager
def timer(box: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        box[key] = time.perf_counter() - t0


def best_of(fn, repeat: int = 3) -> float:
    """Fastest wall time of `repeat` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def anchor(module: str, pip_name: str | None = None, *, install: bool = True):
    """Import an anchor, pip-installing it into this interpreter's environment on demand; None if unavailable."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    if not install:
        return None
    print(f"[bench] installing {pip_name or module} into {sys.prefix} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", pip_name or module], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(f"[bench] pip install {pip_name or module} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        print(f"[bench] {module} installed but does not import: {exc}", file=sys.stderr)
        return None


def version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# ---- simulator covers --------------------------------------------------------------------------

_WORLD = None


def bench_world(smoke: bool = False):
    """The benchmark world (built once per process). Smoke: the small test world."""
    global _WORLD
    from equigen.simulator import World, WorldConfig

    if smoke:
        return World.build(WorldConfig.small(seed=BENCH_SEED, cover_px=None))
    if _WORLD is None:
        _WORLD = World.build(WorldConfig(seed=BENCH_SEED, n_artists=BENCH_ARTISTS))
    return _WORLD


def usable_mbids(world, distinct: bool = True, genred: bool = False) -> list[str]:
    """Release groups with a good cover (art ok, not flaky); distinct: no planted duplicates;
    genred: resolved to a taxonomy genre (what `covers_to_fetch` hands the downloader)."""
    genres = set(world.taxonomy.genres)
    out = []
    for rg in world.release_groups:
        if rg.art != "ok" or rg.flaky:
            continue
        if distinct and rg.duplicate_of is not None:
            continue
        if genred and rg.genre not in genres:
            continue
        out.append(rg.mbid)
    return out


def cover_cache_dir(world, size: int) -> Path:
    return WORK / "covers" / f"seed{world.config.seed}-a{world.config.n_artists}-{world.side(size)}"


def covers(world, mbids: list[str], size: int = 500) -> list[bytes]:
    """Exactly the bytes the simulator serves for these covers, cached on disk under benchmarks/work/covers/."""
    from concurrent.futures import ThreadPoolExecutor

    folder = cover_cache_dir(world, size)
    folder.mkdir(parents=True, exist_ok=True)

    def one(mbid: str) -> bytes:
        path = folder / f"{mbid}.jpg"
        if path.exists():
            return path.read_bytes()
        data = world.cover_bytes(mbid, size)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return data

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return list(pool.map(one, mbids, chunksize=32))


# ---- results ------------------------------------------------------------------------------------


def row(
    comparison: str, ours: str, anchor: str, ratio: float | None, goal: str, met: bool | None, notes: str = "", **extra
) -> dict:
    return {
        "comparison": comparison,
        "ours": ours,
        "anchor": anchor,
        "ratio": None if ratio is None else round(float(ratio), 2),
        "goal": goal,
        "met": met,
        "notes": notes,
        "extra": extra,
    }


def repo_relative(doc):
    """A results document with every absolute path inside the repository written relative to it (a string, a
    Path, in any dict or list), so a committed result names no folder of the machine it ran on."""
    if isinstance(doc, dict):
        return {k: repo_relative(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [repo_relative(v) for v in doc]
    if isinstance(doc, Path | str) and os.path.isabs(str(doc)):
        try:
            return Path(doc).resolve().relative_to(REPO.resolve()).as_posix()
        except ValueError:  # outside the repository (a temporary folder): kept as it is
            return str(doc)
    return str(doc) if isinstance(doc, Path) else doc


def write_results(name: str, rows: list[dict], args, details: dict | None = None) -> Path:
    # Only a full run (both sides, full size) is a result; smoke and ours-only runs go under work/.
    out_dir = WORK / "smoke" if args.smoke else WORK / "ours-only" if getattr(args, "ours_only", False) else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    doc = {
        "benchmark": name,
        "script": f"benchmarks/{name}.py",
        "argv": sys.argv[1:],
        "machine": machine(),
        "date": today(),
        "python": platform.python_version(),
        "smoke": bool(args.smoke),
        "ours_only": bool(getattr(args, "ours_only", False)),
        "machine_busy_before": None if BUSY_BEFORE is None else round(BUSY_BEFORE, 3),
        "rows": rows,
        "details": details or {},
    }
    path.write_text(json.dumps(repo_relative(doc), indent=2, default=str) + "\n")
    for r in rows:
        met = {True: "MET", False: "MISSED", None: "-"}[r["met"]]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']}x"
        print(f"{r['comparison']}: ours {r['ours']} | anchor {r['anchor']} | ratio {ratio} | goal {r['goal']}: {met}")
    print(f"[bench] wrote {path.relative_to(REPO)}")
    return path


def version_of_in(venv: Path, dist: str) -> str:
    """A distribution's version inside another venv (without importing it)."""
    for meta in Path(venv).glob(f"lib/python3*/site-packages/{dist.replace('-', '_')}-*.dist-info/METADATA"):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return "?"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def simulator_process(knobs: list[str], wait_s: float = 300.0) -> tuple[subprocess.Popen, str]:
    """`equigen simulate --port P KNOBS` in its own process (so its CPU is not the client's), once it answers."""
    import urllib.request

    port = free_port()
    cmd = [sys.executable, "-m", "equigen.cli", "simulate", "--port", str(port), *knobs]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/__sim__/health", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"simulator did not start: {proc.stdout.read() if proc.stdout else ''}")


class TreeSampler:
    """Peak main-process RSS and peak summed PSS of a process and its children, every 0.2 s."""

    def __init__(self, pid: int):
        import psutil

        self.proc = psutil.Process(pid)
        self.peak_rss = self.peak_pss = self.peak_tree_rss = 0
        self.children = 0
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import psutil

        while not self.done:
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                rss = pss = 0
                for p in procs:
                    try:
                        full = p.memory_full_info()
                        rss += full.rss
                        pss += full.pss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
                self.peak_pss, self.peak_tree_rss = max(self.peak_pss, pss), max(self.peak_tree_rss, rss)
                self.children = max(self.children, len(procs) - 1)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.2)
