"""Training input pipeline: Parquet shards (equigen.baseline.data) vs torchvision ImageFolder on the same JPEGs.

    python benchmarks/bench_loader.py [--n 3000] [--batch 64] [--workers 2] [--epochs 3] [--smoke] [--ours-only]

Data: `n` distinct simulator covers (500 px JPEGs, the bytes the simulator serves), labelled with their
genre, written once as train shards with equigen.shards.write_split (500 rows a shard) and as an
ImageFolder tree (<genre>/<mbid>.jpg) holding the same bytes, under benchmarks/work/loader/.
Both: the same transform object (equigen.baseline.data.transforms(224, train=True): RandomResizedCrop
+ horizontal flip + normalize), batch size, worker count and shuffling; images/s over the epochs after
the first (the first warms the page cache and starts the persistent workers).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

NAME = "bench_loader"


def build_data(n: int, smoke: bool) -> tuple[Path, Path, list[str]]:
    import hashlib

    from equigen.shards import write_split

    world = C.bench_world(smoke)
    genres = list(world.taxonomy.genres)
    mbids = [m for m in C.usable_mbids(world, genred=True)][:n]
    data = C.covers(world, mbids, 500)
    root = C.WORK / ("loader-smoke" if smoke else "loader") / f"n{len(mbids)}"
    shards, folder = root / "shards", root / "imagefolder"
    if not (shards / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        rows = []
        for m, b in zip(mbids, data):
            rg = world.by_mbid[m]
            rows.append(
                {
                    "label": genres.index(rg.genre),
                    "genre": rg.genre,
                    "release_group_mbid": m,
                    "artist_mbid": rg.artist.mbid,
                    "artist_name": rg.artist.name,
                    "title": rg.title,
                    "year": None,
                    "phash": None,
                    "sha256": hashlib.sha256(b).hexdigest(),
                    "width": 500,
                    "height": 500,
                    "ext": "jpg",
                }
            )
            path = folder / rg.genre / f"{m}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b)
        frame = pd.DataFrame(rows)
        by_sha = dict(zip(frame["sha256"], data))
        write_split(shards, "train", frame, lambda r: by_sha[r.sha256], genres, 500)
        (shards / "done").write_text("ok\n")
    return shards, folder, genres


def images_per_second(loader, epochs: int, sampler=None) -> tuple[float, int]:
    """Images/s over epochs 2..epochs (epoch 1 is warm-up)."""
    seen, elapsed = 0, 0.0
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        count = 0
        for x, _ in loader:
            count += x.shape[0]
        if epoch > 0 or epochs == 1:
            elapsed += time.perf_counter() - t0
            seen += count
    return seen / elapsed, seen


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=224)
    args = p.parse_args()
    if args.smoke:
        args.n, args.batch, args.workers, args.epochs = 48, 16, 0, 1
    import torch
    from torch.utils.data import DataLoader

    from equigen.baseline.data import load_split, train_loader, transforms

    torch.set_num_threads(1)
    shards, folder, genres = build_data(args.n, args.smoke)
    ds = load_split(shards, "train", args.image_size, len(genres))
    loader = train_loader(ds, args.batch, args.workers, seed=0, rank=0, world=1, pin_memory=False)
    ours, n_ours = images_per_second(loader, args.epochs, loader.sampler)
    details = {
        "n": len(ds),
        "batch": args.batch,
        "workers": args.workers,
        "epochs_timed": max(1, args.epochs - 1),
        "ours_img_s": ours,
    }
    goal = ">= 1x ImageFolder"
    rows = []
    tv = None if args.ours_only else C.anchor("torchvision", install=not args.no_install)
    if tv is not None:
        from torchvision.datasets import ImageFolder

        ref_ds = ImageFolder(str(folder), transform=transforms(args.image_size, True))
        ref_loader = DataLoader(
            ref_ds,
            batch_size=args.batch,
            shuffle=True,
            num_workers=args.workers,
            drop_last=len(ref_ds) >= args.batch,
            persistent_workers=args.workers > 0,
            generator=torch.Generator().manual_seed(0),
        )
        ref, _ = images_per_second(ref_loader, args.epochs)
        # again ours, then the reference, to even out drift on a shared machine; keep the best of each
        ours2, _ = images_per_second(loader, args.epochs, loader.sampler)
        ref2, _ = images_per_second(ref_loader, args.epochs)
        details.update(ours_img_s_runs=[ours, ours2], imagefolder_img_s_runs=[ref, ref2])
        ours, ref = max(ours, ours2), max(ref, ref2)
        rows.append(
            C.row(
                f"Loader {len(ds):,} covers 500 px -> {args.image_size} px tensors, batch {args.batch}, "
                f"{args.workers} workers",
                f"{ours:.0f} img/s (Parquet shards)",
                f"{ref:.0f} img/s (torchvision {C.version_of('torchvision')} ImageFolder)",
                ours / ref,
                goal,
                bool(ours / ref >= 1.0),
                "same transform object; best of 2 runs each, epoch 1 of each run untimed",
            )
        )
    else:
        rows.append(C.row(f"Loader {len(ds):,} covers (ours only)", f"{ours:.0f} img/s", "-", None, goal, None))
    print(details)
    C.write_results(NAME, rows, args, details)


if __name__ == "__main__":
    main()
