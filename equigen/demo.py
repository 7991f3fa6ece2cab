"""`equigen demo`: the whole pipeline, offline, against the simulator started in-process.

Same code paths as a real run (fetch over real sockets, then dedup, balance, split, verify,
baseline); only the base URLs point at the simulator on a free loopback port. Re-running resumes:
the fetch continues from the catalog, later stages are recomputed (deterministic for the seed),
the baseline run `demo` is trained again. `--fresh` deletes the demo folder first.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from equigen.core.config import load_settings
from equigen.core.errors import EquigenError, check_number
from equigen.core.lock import LOCK_NAME, data_folder_lock
from equigen.core.options import BalanceOptions, SplitOptions

# What EquiGen writes in a data folder: `demo --fresh` deletes these and nothing else.
EQUIGEN_ENTRIES = ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "images", "dataset", "reports", "runs")

DEMO_SEED = 0
DEMO_RUN = "demo"
# The simulator is on loopback, so the demo paces MusicBrainz at 10 requests/s, and the simulator enforces that
# limit (503 + Retry-After beyond it) as the real service enforces its 1/s; real runs keep the 1 s interval.
DEMO_MB_INTERVAL = 0.1


def run_demo(
    data_dir: Path,
    per_genre: int = 40,
    epochs: int = 8,
    fresh: bool = False,
    image_size: int = 48,
    models: tuple[str, ...] = ("resnet18", "efficientnet_b0"),
    seeds: tuple[int, ...] = (0,),
    console: Console | None = None,
) -> dict:
    from equigen.baseline import BaselineConfig, run_baseline
    from equigen.curate.balance import run_balance
    from equigen.curate.dedup import run_dedup
    from equigen.harvest.fetch import FetchOptions, run_fetch
    from equigen.publish.split import run_split
    from equigen.publish.verify import run_verify
    from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread

    console = console or Console(stderr=True)
    data_dir = Path(data_dir)
    check_number("--per-genre", per_genre, 1, 10_000, integer=True)
    cfg = BaselineConfig(  # checked now, so a bad --epochs fails before the pipeline runs, not after it
        models=models,
        epochs=epochs,
        image_size=image_size,
        batch_size=32,
        lr=3e-3,  # from scratch, 8 epochs: 3e-3 left chance fastest of 2e-3, 3e-3 and 4e-3 on the demo world
        patience=epochs,
        seeds=seeds,
        pretrained=False,
        workers=1,
        run_name=DEMO_RUN,
    ).validated()
    if fresh and data_dir.exists():
        with data_folder_lock(data_dir, "demo --fresh", create=False):  # never under another command's feet
            remove_equigen_files(data_dir)
    timings: dict[str, float] = {}
    started = time.monotonic()

    def stage(name: str):
        console.rule(f"[bold]{name}")
        timings[name] = time.monotonic()

    def done(name: str):
        timings[name] = time.monotonic() - timings[name]

    sim_config = SimConfig(log_requests=False, rate_limit=round(1 / DEMO_MB_INTERVAL))
    with simulator_in_thread(world_config=WorldConfig(seed=DEMO_SEED), sim_config=sim_config) as sim:
        console.print(
            f"simulator (MusicBrainz + Cover Art Archive look-alike) at {sim.url}; MusicBrainz paced at "
            f"{sim_config.rate_limit} requests/s, as the simulator allows (the real service: 1/s)"
        )
        settings = load_settings(
            data_dir=data_dir,
            musicbrainz_url=sim.url,
            coverart_url=sim.url,
            thumbnail=250,
            mb_interval=DEMO_MB_INTERVAL,
        )
        stage("fetch")
        run_fetch(settings, FetchOptions(per_genre=per_genre), console=console)
        done("fetch")
    stage("dedup")
    run_dedup(settings, console=console)
    done("dedup")
    stage("balance")
    run_balance(settings, BalanceOptions(per_genre=per_genre, seed=DEMO_SEED), console=console)
    done("balance")
    stage("split")
    run_split(settings, SplitOptions(seed=DEMO_SEED), console=console)
    done("split")
    stage("verify")
    if not run_verify(settings.dataset_dir, console=console):
        raise EquigenError("the demo dataset failed verification (table above)")
    done("verify")
    stage("baseline")
    # Offline by design: no ImageNet weights can be downloaded here, so both models train from scratch.
    console.print(
        "baseline from scratch (--no-pretrained): the demo runs offline; real runs fine-tune ImageNet weights"
    )
    shutil.rmtree(settings.runs_dir / DEMO_RUN, ignore_errors=True)
    result = run_baseline(settings.dataset_dir, settings.runs_dir, cfg, progress=console.is_terminal)
    done("baseline")
    total = time.monotonic() - started

    console.rule("[bold]result")
    console.print(model_table(result.models, models))
    timing = Table(title="stage times (s)")
    for name in timings:
        timing.add_column(name, justify="right")
    timing.add_column("total", justify="right")
    timing.add_row(*(f"{timings[n]:.1f}" for n in timings), f"{total:.1f}")
    console.print(timing)
    run_dir = result.run_dir
    console.print(f"dataset card : {settings.dataset_dir / 'README.md'}")
    console.print(f"dataset plots: {settings.dataset_dir / 'plots'}")
    console.print(f"curation     : {settings.data_dir / 'reports'}")
    console.print(f"report       : {result.report}")
    if result.comparison:
        console.print(f"comparison   : {result.comparison}", markup=False, highlight=False)
    for m in models:
        console.print(f"{m:<13}: {run_dir / m / 'confusion_matrix.png'}  {run_dir / m / 'confident_errors.png'}")
    summary = {
        "seconds": round(total, 1),
        "stages": {k: round(v, 1) for k, v in timings.items()},
        "report": str(result.report),
        "comparison": result.comparison,
        "dataset": str(settings.dataset_dir),
    }
    (data_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "result": result}


def remove_equigen_files(data_dir: Path) -> None:
    """Delete what EquiGen wrote in `data_dir` (catalog, images, dataset, reports, runs, demo.json, interrupted
    split folders), never a file of the user's; the caller holds the folder's lock."""
    if not (data_dir / "catalog.sqlite").exists() and any(p.name != LOCK_NAME for p in data_dir.iterdir()):
        raise EquigenError(f"{data_dir} is not an equigen data folder; refusing to delete it with --fresh")
    for entry in data_dir.iterdir():
        ours = entry.name in EQUIGEN_ENTRIES or entry.name == "demo.json" or entry.name.startswith(".dataset.")
        if not ours:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def model_table(metrics: dict, models) -> Table:
    table = Table(title="baseline on the demo dataset (test split)")
    for col in ("model", "accuracy", "top-3", "macro P", "macro R", "macro F1", "chance"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for m in models:
        r = metrics[m]
        table.add_row(
            m,
            *(
                f"{r[k]:.3f}"
                for k in ("accuracy", "top3_accuracy", "macro_precision", "macro_recall", "macro_f1", "chance")
            ),
        )
    return table
