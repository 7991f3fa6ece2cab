"""Full-scale rehearsal: README's commands for a real run, against a simulator with real-world timing, measured
stage by stage (issue 13). Run by hand; writes benchmarks/results/rehearsal-<N>.json and prints a table.

    python benchmarks/rehearsal.py --per-genre 4000                 # the headline: 15 x 4,000
    python benchmarks/rehearsal.py --per-genre 1000 --kill-after 120 \
        --compare-with benchmarks/results/rehearsal-1000.json

The simulator (`equigen simulate --realistic`, its own process) answers MusicBrainz in 200-800 ms under the
real 1 request/s rule, each Cover Art Archive 307 and archive.org 302 in 100-400 ms, image bodies at 2 MB/s per
connection with at most 48 at once (429/503 beyond), and resets/stalls 0.2 %/0.1 % of image requests. Its world
is sized so the thinnest genre holds --per-genre usable covers plus the margin (33 artists per cover per genre).

Stages, exactly as README gives them: fetch --per-genre N, dedup, balance --per-genre N, split, verify, and
baseline (resnet50 and efficientnet_b0, one epoch at 64 px on CPU, --max-train-batches to bound it: the
epoch time is extrapolated from the batches run). Per stage: wall time, CPU time, peak RSS (/usr/bin/time),
bytes added to the data folder, and for fetch the MusicBrainz requests, retries and failures by kind (from
the simulator's request log) and covers stored per published cover (from the catalog).

--kill-after S sends SIGKILL to the first fetch after S seconds and runs the same command again;
--compare-with checks the dataset checksums against an uninterrupted rehearsal of the same seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _common as C  # noqa: E402

ROOT = BENCH.parent
# 20,000 artists leave 689 usable covers in the thinnest genre (Blues): 29 per cover. 30 left Blues at 4,093 usable
# for --per-genre 4000 and 3,994 after dedup (2026-11-25 rehearsal); 33 leaves room for the 5 % margin.
ARTISTS_PER_COVER = 33
TIME = "/usr/bin/time"


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def sim_log(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/__sim__/log", timeout=600) as response:
        return json.loads(response.read())


def timed(args: list[str], data_dir: Path, log: Path, kill_after: float | None = None) -> dict:
    """One `equigen ARGS` under /usr/bin/time: wall, CPU, peak RSS, bytes added to the data folder."""
    stats_file = Path(tempfile.mktemp(prefix="time-"))
    before = folder_bytes(data_dir)
    cmd = [TIME, "-f", "%e %U %S %M", "-o", str(stats_file), sys.executable, "-m", "equigen.cli", *args]
    started = time.monotonic()
    with open(log, "a") as out:
        out.write(f"\n$ equigen {' '.join(args)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=ROOT, start_new_session=True)
        try:
            rc = proc.wait(timeout=kill_after)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: time and the equigen under it
            proc.wait()
            rc, killed = -9, True
    wall = time.monotonic() - started
    fields = stats_file.read_text().split()[-4:] if stats_file.exists() and not killed else ["nan"] * 4
    stats_file.unlink(missing_ok=True)
    return {
        "args": args,
        "rc": rc,
        "killed": killed,
        "wall_s": round(wall, 1),
        "cpu_s": round(float(fields[1]) + float(fields[2]), 1),
        "peak_rss_mb": round(float(fields[3]) / 1024, 1),
        "bytes_added": folder_bytes(data_dir) - before,
    }


def request_counts(log: list[dict]) -> dict:
    """Requests and non-200 answers by service from the simulator's log (status 0: a connection reset)."""
    out: dict = {}
    for service in ("musicbrainz", "coverart", "image"):
        mine = [e for e in log if e["service"] == service]
        out[service] = {"requests": len(mine), "by_status": dict(Counter(str(e["status"]) for e in mine))}
    return out


def catalog_summary(catalog: Path) -> dict:
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as conn:
        last = json.loads(conn.execute("SELECT value FROM meta WHERE key='last_fetch'").fetchone()[0])
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM covers GROUP BY status").fetchall())
        release_groups = conn.execute("SELECT COUNT(*) FROM release_groups").fetchone()[0]
    return {"last_fetch": last, "cover_statuses": statuses, "release_groups": release_groups}


def save(out: Path, result: dict) -> None:
    """After every stage: a rehearsal that stops half-way keeps what it measured."""
    out.write_text(json.dumps(C.repo_relative(result), indent=2) + "\n")


def short_genres(catalog: Path, per_genre: int) -> dict:
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT genre, COUNT(*) FROM selection GROUP BY genre").fetchall()
    return {g: n for g, n in rows if n < per_genre}


def dataset_digest(dataset: Path) -> str:
    """sha256 of checksums.sha256 without the manifest line (its source URLs carry the simulator's port)."""
    lines = [line for line in (dataset / "checksums.sha256").read_text().splitlines() if "manifest" not in line]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def baseline_epoch(runs: Path) -> dict:
    out = {}
    for metrics in sorted(runs.glob("rehearsal/*/seed-0/history.json")):
        history = json.loads(metrics.read_text())
        model = metrics.parent.parent.name
        images = sum(h["train_images"] for h in history)
        seconds = sum(h["train_seconds"] for h in history)
        out[model] = {
            "train_images_timed": images,
            "train_seconds": round(seconds, 1),
            "images_per_s": round(images / seconds, 1) if seconds else None,
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-genre", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--artists", type=int, help=f"world size [default: {ARTISTS_PER_COVER} x --per-genre]")
    p.add_argument("--work", type=Path, help="data folder parent [default: benchmarks/work/rehearsal-N]")
    p.add_argument("--kill-after", type=float, help="SIGKILL the first fetch after this many seconds, then resume")
    p.add_argument("--compare-with", type=Path, help="an uninterrupted rehearsal's JSON: checksums must match")
    p.add_argument("--baseline-batches", type=int, default=40, help="train batches timed per model (of 64 images)")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="the data folder already holds this rehearsal's finished fetch: run the later stages",
    )
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    n = a.per_genre
    artists = a.artists or ARTISTS_PER_COVER * n
    tag = f"{n}" + ("-killed" if a.kill_after else "")
    work = a.work or BENCH / "work" / f"rehearsal-{tag}"
    data = work / "data"
    if data.exists() and not a.resume:
        raise SystemExit(f"{data} exists: remove it first (a rehearsal starts from nothing), or --continue")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    out = a.out or BENCH / "results" / f"rehearsal-{tag}.json"
    out.parent.mkdir(exist_ok=True)
    sim, url = (
        C.simulator_process(["--seed", str(a.seed), "--artists", str(artists), "--realistic"])
        if not a.resume
        else (None, "")
    )
    result: dict = {
        "per_genre": n,
        "seed": a.seed,
        "artists": artists,
        "simulator": "equigen simulate --realistic",
        "machine": os.uname().nodename,
        "cores": os.cpu_count(),
        "stages": {},
    }
    try:
        env_args = ["--data-dir", str(data)]
        fetch = ["fetch", *env_args, "--musicbrainz-url", url, "--coverart-url", url, "--per-genre", str(n)]
        os.environ.setdefault("EQUIGEN_CONTACT", "rehearsal@example.org")
        if a.resume:  # measured by the run that fetched: what the catalog says of it
            stage = {"continued": True, "rc": 0}
            stage["wall_s"] = catalog_summary(data / "catalog.sqlite")["last_fetch"]["wall_seconds"]
        else:
            stage = timed(fetch, data, log, kill_after=a.kill_after)
            if stage["killed"]:
                resumed = timed(fetch, data, log)
                stage = {
                    "killed_after_s": a.kill_after,
                    "first": stage,
                    "resumed": resumed,
                    "wall_s": round(stage["wall_s"] + resumed["wall_s"], 1),
                    "rc": resumed["rc"],
                }
            stage["requests"] = request_counts(sim_log(url))
        stage["catalog"] = catalog_summary(data / "catalog.sqlite")
        result["stages"]["fetch"] = stage
        save(out, result)
        if stage["rc"] != 0:
            raise SystemExit(f"fetch failed (see {log})")
        for name, args in (
            ("dedup", ["dedup", *env_args]),
            ("balance", ["balance", *env_args, "--per-genre", str(n), "--seed", str(a.seed)]),
            ("split", ["split", *env_args, "--seed", str(a.seed)]),
            ("verify", ["verify", str(data / "dataset")]),
        ):
            result["stages"][name] = timed(args, data, log)
            if name == "balance" and result["stages"][name]["rc"] != 0:
                # A genre the world cannot fill after dedup: published short, as a user would (README).
                result["stages"]["balance_refused"] = result["stages"][name]
                result["stages"][name] = timed([*args, "--allow-short"], data, log)
                result["short_genres"] = short_genres(data / "catalog.sqlite", n)
            save(out, result)
            if result["stages"][name]["rc"] != 0:
                raise SystemExit(f"{name} failed (see {log})")
        result["dataset_digest"] = dataset_digest(data / "dataset")
        if not a.skip_baseline:
            args = [
                "baseline",
                *env_args,
                "--models",
                "resnet50,efficientnet_b0",
                "--epochs",
                "1",
                "--image-size",
                "64",
                "--seeds",
                "0",
                "--no-pretrained",
                "--max-train-batches",
                str(a.baseline_batches),
                "--workers",
                "2",
                "--name",
                "rehearsal",
                "--no-progress",
            ]
            result["stages"]["baseline"] = timed(args, data, log)
            epoch = baseline_epoch(data / "runs")
            train_size = json.loads((data / "runs" / "rehearsal" / "report.json").read_text())["images"]["train"]
            for model in epoch.values():
                model["epoch_s_estimate"] = (
                    round(train_size / model["images_per_s"], 0) if model["images_per_s"] else None
                )
            result["stages"]["baseline"]["per_model"] = epoch
            result["stages"]["baseline"]["train_images"] = train_size
            save(out, result)
    finally:
        if sim is not None:
            sim.send_signal(signal.SIGINT)
            try:
                sim.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sim.kill()
    if a.compare_with:
        other = json.loads(a.compare_with.read_text())
        result["compared_with"] = {
            "file": str(a.compare_with),
            "same_dataset": other["dataset_digest"] == result["dataset_digest"],
        }
    save(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "stages"}, indent=2))
    for name, s in result["stages"].items():
        print(
            f"{name:8} wall {s['wall_s']:>8} s  cpu {s.get('cpu_s', '-'):>8} s  rss {s.get('peak_rss_mb', '-'):>8} MB"
            f"  disk +{s.get('bytes_added', 0) / 1e6:,.0f} MB"
        )
    if a.compare_with and not result["compared_with"]["same_dataset"]:
        print("DATASET DIFFERS from", a.compare_with)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
