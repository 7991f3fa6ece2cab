"""Training memory against dataset size: peak memory of `equigen baseline` for a 64 px CPU epoch capped by
--max-train-batches, at 60,000 and 600,000 covers.

    python benchmarks/bench_train_rss.py [--n 60000,600000] [--batches 20] [--workers 2] [--keep]

Data: synthetic shards written directly with pyarrow in the shard contract (equigen.publish.shards.shard_schema,
its writer options: zstd, 100-row row groups, 2,000 rows a shard): the train split holds N covers, cycling
through the 3,000 distinct 500 px simulator covers bench_loader renders (about 42 KB each, so 60,000 covers
are 2.5 GB of shards, 600,000 are 25 GB); validation and test hold 2,000 each (evaluation runs in full,
and on 2 CPU cores a 90,000-cover test split would take the hour; its loader is the same streaming one).
Memory: the training process and its loader workers sampled every 0.2 s (psutil): peak RSS of the main
process, and the peak of the summed PSS of the whole tree (shared library pages counted once). Also,
for comparison, the peak RSS of the previous loader (benchmarks/_legacy_loader.py) just reading the same
train split into memory, which it did before training started. Shards are deleted afterwards unless --keep.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "bench_train_rss"
SHARD_ROWS = 2000


def write_dataset(root: Path, n_train: int, covers: list[bytes], genres: list[str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from equigen.core.parquet import WRITE_OPTIONS
    from equigen.publish.shards import shard_name, shard_schema

    schema = shard_schema(genres)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    total = 0
    for split, n in (("train", n_train), ("validation", 2000), ("test", 2000)):
        count = -(-n // SHARD_ROWS)
        for s in range(count):
            rows = range(s * SHARD_ROWS, min(n, (s + 1) * SHARD_ROWS))
            images = [{"bytes": covers[i % len(covers)], "path": f"{split}-{i}.jpg"} for i in rows]
            cols = {name: pa.nulls(len(rows), schema.field(name).type) for name in schema.names}
            cols["image"] = pa.array(images, schema.field("image").type)
            cols["label"] = pa.array([i % len(genres) for i in rows], pa.int64())
            cols["genre"] = pa.array([genres[i % len(genres)] for i in rows], pa.string())
            table = pa.Table.from_pydict(cols, schema=schema)
            path = data / shard_name(split, s, count)
            pq.write_table(table, path, **WRITE_OPTIONS)
            total += path.stat().st_size
    return total


def train_once(dataset: Path, runs: Path, args) -> dict:
    cmd = [sys.executable, "-m", "equigen.cli", "baseline", "--dataset", str(dataset), "--runs-dir", str(runs),
           "--name", "rss", "--models", args.model, "--epochs", "1", "--seeds", "0", "--no-pretrained",
           "--image-size", "64", "--batch-size", str(args.batch), "--workers", str(args.workers),
           "--max-train-batches", str(args.batches), "--patience", "0", "--device", "cpu", "--no-progress"]  # fmt: skip
    shutil.rmtree(runs, ignore_errors=True)
    t = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=C.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = C.TreeSampler(proc.pid)
    out, _ = proc.communicate()
    sampler.done = True
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed:\n{out[-3000:]}")
    return {
        "seconds": time.monotonic() - t,
        "peak_main_rss_gb": sampler.peak_rss / 1e9,
        "peak_tree_pss_gb": sampler.peak_pss / 1e9,
        "peak_tree_rss_gb": sampler.peak_tree_rss / 1e9,
        "loader_workers_seen": sampler.children,
    }


def legacy_rss(dataset: Path, genres: int) -> float:
    code = (
        "import resource, sys; sys.path.insert(0, 'benchmarks'); import _legacy_loader as L; from pathlib import Path;"
        f"ds = L.load_split(Path({str(dataset)!r}), 'train', 64, {genres});"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=C.REPO, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--n", default="60000,600000")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--model", default="resnet50")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    sizes = [int(x) for x in args.n.split(",")]
    if args.smoke:
        sizes, args.batches, args.workers, args.model = [300, 1200], 2, 1, "resnet18"
    world = C.bench_world(args.smoke)
    genres = list(world.taxonomy.genres)
    mbids = C.usable_mbids(world, genred=True)[: 48 if args.smoke else 3000]
    covers = C.covers(world, mbids, 500)
    details: dict = {
        "sizes": {},
        "distinct_covers": len(covers),
        "mean_cover_kb": sum(map(len, covers)) / len(covers) / 1e3,
    }
    for n in sizes:
        root = C.WORK / ("rss-smoke" if args.smoke else "rss") / f"n{n}"
        shutil.rmtree(root, ignore_errors=True)
        t = time.monotonic()
        size = write_dataset(root / "dataset", n, covers, genres)
        row = {"shard_gb": size / 1e9, "write_s": time.monotonic() - t}
        row.update(train_once(root / "dataset", root / "runs", args))
        if n == sizes[0]:
            row["legacy_loader_peak_rss_gb"] = legacy_rss(root / "dataset", len(genres))
        details["sizes"][n] = row
        print(f"[bench] {n:,} covers: {row}", flush=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    first, last = details["sizes"][sizes[0]], details["sizes"][sizes[-1]]
    growth = last["peak_tree_pss_gb"] - first["peak_tree_pss_gb"]
    rows = [
        C.row(
            f"Training peak memory, {args.model} 64 px CPU epoch capped at {args.batches} batches of {args.batch}, "
            f"{args.workers} workers: {sizes[0]:,} covers",
            f"{first['peak_tree_pss_gb']:.2f} GB (PSS, process + workers; main RSS {first['peak_main_rss_gb']:.2f})",
            f"{first.get('legacy_loader_peak_rss_gb', float('nan')):.2f} GB (previous loader, reading the split)",
            first["peak_tree_pss_gb"] / first["legacy_loader_peak_rss_gb"],
            "<= 2 GB",
            bool(first["peak_tree_pss_gb"] <= 2.0),
            "synthetic shards (pyarrow, the shard contract), 42 KB covers cycled; val/test 2,000 each",
        ),
        C.row(
            f"Training peak memory from {sizes[0]:,} to {sizes[-1]:,} covers",
            f"{last['peak_tree_pss_gb']:.2f} GB at {sizes[-1]:,} ({growth:+.2f} GB)",
            f"{first['peak_tree_pss_gb']:.2f} GB at {sizes[0]:,}",
            last["peak_tree_pss_gb"] / first["peak_tree_pss_gb"],
            "flat (within 0.1 GB)",
            bool(abs(growth) <= 0.1),
            f"{last['shard_gb']:.1f} GB of shards at {sizes[-1]:,}",
        ),
    ]
    print(details)
    C.write_results(NAME, rows, args, details)


if __name__ == "__main__":
    main()
