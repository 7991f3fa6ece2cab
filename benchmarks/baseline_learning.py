"""Does the baseline really learn? The whole pipeline on a larger simulator world, then both models vs chance.

Builds 15 genres x 200 covers (simulator world with 8,000 artists, 250 px thumbnails), trains resnet18 and
efficientnet_b0 at 96 px for a few epochs on the CPU, and writes benchmarks/results/baseline_learning.json.
Run by hand:  python benchmarks/baseline_learning.py [--per-genre 200 --epochs 6 --image-size 96]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from equigen.baseline import BaselineConfig, run_baseline
from equigen.core.config import load_settings
from equigen.core.options import BalanceOptions, SplitOptions  # noqa: E402
from equigen.curate.balance import run_balance
from equigen.curate.dedup import run_dedup
from equigen.harvest.fetch import FetchOptions, run_fetch
from equigen.publish.split import run_split
from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _common as C  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-genre", type=int, default=200)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--models", default="resnet18,efficientnet_b0")
    p.add_argument("--artists", type=int, default=8000)
    p.add_argument("--smoke", action="store_true", help="toy size (seconds), result not recorded")
    a = p.parse_args()
    if a.smoke:
        a.per_genre, a.epochs, a.image_size, a.artists = 6, 1, 32, 600
    work = BENCH / "work" / ("baseline_learning_smoke" if a.smoke else "baseline_learning")
    console = Console(stderr=True)
    times = {}
    wc = WorldConfig(seed=1, n_artists=a.artists, cover_px=64 if a.smoke else None)
    with simulator_in_thread(world_config=wc, sim_config=SimConfig(log_requests=False)) as sim:
        s = load_settings(data_dir=work, musicbrainz_url=sim.url, coverart_url=sim.url, thumbnail=250)
        t = time.monotonic()
        run_fetch(s, FetchOptions(per_genre=a.per_genre), console=console)
        times["fetch"] = time.monotonic() - t
    t = time.monotonic()
    run_dedup(s, console=console)
    run_balance(s, BalanceOptions(per_genre=a.per_genre, seed=0, artist_cap=max(2, a.per_genre // 25)), console=console)
    run_split(s, SplitOptions(seed=0), console=console)
    times["curate"] = time.monotonic() - t
    shutil.rmtree(s.runs_dir / "learning", ignore_errors=True)
    models = tuple(a.models.split(","))
    cfg = BaselineConfig(
        models=models,
        epochs=a.epochs,
        image_size=a.image_size,
        batch_size=64,
        lr=2e-3,
        patience=a.epochs,
        workers=1,
        run_name="learning",
    )
    t = time.monotonic()
    result = run_baseline(s.dataset_dir, s.runs_dir, cfg, progress=False)
    times["baseline"] = time.monotonic() - t
    row = {
        "per_genre": a.per_genre,
        "epochs": a.epochs,
        "image_size": a.image_size,
        "seconds": times,
        "models": {
            m: {
                k: result.models[m][k]
                for k in ("accuracy", "macro_f1", "top3_accuracy", "chance", "best_epoch", "train_images_per_s")
            }
            for m in models
        },
        "report": str(result.report),
    }
    print(json.dumps(row, indent=2))
    if not a.smoke:
        (BENCH / "results").mkdir(exist_ok=True)
        (BENCH / "results" / "baseline_learning.json").write_text(json.dumps(C.repo_relative(row), indent=2) + "\n")


if __name__ == "__main__":
    main()
