"""`equigen split`: split the balanced selection and publish it as a dataset folder.

Layout of <data_dir>/dataset (built in a temporary sibling folder and swapped in only when complete):

    data/{split}-{i:05d}-of-{n:05d}.parquet   images + metadata, Hugging Face layout (equigen.publish.shards)
    manifest.parquet                         each item and its Cover Art Archive URL, no images (equigen.core.manifest)
    croissant.json                           Croissant 1.0 metadata (equigen.publish.card)
    README.md                                dataset card, YAML front matter for the Hub (equigen.publish.card)
    plots/split_genre_counts.png, plots/artist_sizes.png, plots/label_confidence.png (equigen.publish.card)
    checksums.sha256                         sha256sum of every other file
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from equigen.core.catalog import Catalog
from equigen.core.config import Settings
from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError, inert
from equigen.core.images import FORMAT_EXT
from equigen.core.lock import data_folder_lock
from equigen.core.manifest import MANIFEST, MANIFEST_SOURCE, write_manifest
from equigen.core.options import SplitOptions
from equigen.publish.card import PLOTS_DIR, samples_name, write_card, write_contact_sheet, write_croissant, write_plots
from equigen.publish.shards import write_checksums, write_split
from equigen.publish.split_rules import (
    SplitReport,
    group_ids,
    grouped_stratified_split,
    shared_artist,
    split_report,
)


def run_split(settings: Settings, options: SplitOptions | None = None, console: Console | None = None) -> dict:
    """Split the balanced selection, publish the dataset folder, store the splits; return a summary.

    The data folder is locked (see lock.py): one writer per folder; the options were checked when built.
    """
    options = options or SplitOptions()
    with data_folder_lock(settings.data_dir, "split", create=False):
        return _split(settings, options, console or Console(stderr=True))


def _split(settings: Settings, options: SplitOptions, console: Console) -> dict:
    ratios, seed, shard_rows = options.ratios, options.seed, options.shard_rows
    started = time.perf_counter()
    with Catalog.existing(settings.catalog_path) as catalog:
        taxonomy = catalog.taxonomy(settings.taxonomy_path)  # the one the catalog was harvested with
        genres_all = taxonomy.genres
        recover_interrupted_split(settings.dataset_dir, console)
        selection = catalog.selection_frame()
        if selection.empty:
            raise EquigenError(
                f"the catalog in {settings.data_dir} has no balanced selection: run `equigen balance` first"
            )
        unknown = sorted(set(selection["genre"]) - set(genres_all))
        if unknown:
            raise EquigenError(f"selected genres {unknown[:3]} are not in the taxonomy: re-run `equigen balance`")
        # ClassLabel names: the taxonomy's genres that are present, in taxonomy order.
        genres = [g for g in genres_all if g in set(selection["genre"])]
        stored = selection["split"]
        if catalog.get_meta("selection_source") == MANIFEST_SOURCE and stored.isin(SPLITS).all():
            # A rebuild from a published manifest keeps the publisher's splits.
            assignment = pd.Series(stored.to_numpy(), index=selection["mbid"].to_numpy(), name="split")
            console.print("using the splits stored from the manifest")
        else:
            assignment = grouped_stratified_split(selection, ratios, seed)
        report = split_report(selection, assignment, ratios)
        empty = [split for split in SPLITS if not report.split_sizes.get(split)]
        if empty:
            raise EquigenError(
                f"split {'/'.join(empty)} would be empty: {len(selection)} covers in "
                f"{report.n_groups} artist groups are too few; balance more covers per genre"
            )
        items = dataset_items(selection, assignment, genres)
        stats = leakage_stats(selection, assignment)

        target = settings.dataset_dir
        build = target.with_name(f".{target.name}.build-{os.getpid()}")
        shutil.rmtree(build, ignore_errors=True)
        try:
            written = write_dataset(build, items, genres, settings.data_dir, shard_rows)
            write_plots(build, items, genres)
            for split in SPLITS if options.samples_per_split else SPLITS[:1]:  # the train split's sheet is in the card
                write_contact_sheet(
                    build / PLOTS_DIR / samples_name(split),
                    items,
                    genres,
                    image_loader(settings.data_dir),
                    split,
                    seed=seed,
                )
            write_card(
                build,
                items,
                genres,
                report,
                stats,
                written,
                ratios,
                seed,
                shard_rows,
                ambiguity_ratio=taxonomy.ambiguity_ratio,
            )
            write_croissant(build, items, genres)
            write_checksums(build)
            _swap_in(build, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        catalog.set_splits(items[["release_group_mbid", "split"]].rename(columns={"release_group_mbid": "mbid"}))

    elapsed = time.perf_counter() - started
    _print_summary(console, report, stats, genres, target, elapsed)
    return {
        "dataset_dir": target,
        "counts": report.counts,
        "worst_dev_pp": report.worst_dev_pp,
        "split_sizes": report.split_sizes,
        "n_groups": report.n_groups,
        "leakage": stats,
        "seconds": elapsed,
    }


# --- pure helpers -------------------------------------------------------------------------


def dataset_items(selection: pd.DataFrame, assignment: pd.Series, genres: list[str]) -> pd.DataFrame:
    """One row per published item with the shard columns, split, ext, path and source_url.

    Order: by split, then by sha256 of the release group MBID: a fixed pseudo-random order, so
    shards mix genres for streaming and a rebuild from the manifest needs no seed to match.
    """
    label_of = {g: i for i, g in enumerate(genres)}
    year = pd.to_numeric(selection["first_release_date"].astype("string").str.slice(0, 4), errors="coerce")
    items = pd.DataFrame(
        {
            "split": selection["mbid"].map(assignment),
            "label": selection["genre"].map(label_of).astype("int64"),
            "genre": selection["genre"],
            # float32 here already, as in the shards: a rebuild from the manifest sees the very same values.
            "label_votes": pd.to_numeric(selection["label_votes"], errors="coerce").astype("Int32"),
            "label_confidence": pd.to_numeric(selection["label_confidence"], errors="coerce").astype("Float32"),
            "release_group_mbid": selection["mbid"],
            "artist_mbid": selection["artist_mbid"],
            "artist_name": selection["artist_name"],
            "title": selection["title"],
            "year": year.astype("Int32"),
            "phash": selection["phash"],
            "sha256": selection["sha256"],
            "width": selection["width"].astype("Int32"),
            "height": selection["height"].astype("Int32"),
            "ext": [
                FORMAT_EXT.get(f) or (Path(p).suffix.lstrip(".").lower() or "jpg")
                for f, p in zip(selection["format"], selection["path"].fillna(""))
            ],
            "path": selection["path"],
            "source_url": selection["source_url"],
        }
    )
    items["order"] = [hashlib.sha256(m.encode()).hexdigest() for m in items["release_group_mbid"]]
    items["split_index"] = items["split"].map({s: i for i, s in enumerate(SPLITS)})
    return items.sort_values(["split_index", "order"]).drop(columns=["order", "split_index"]).reset_index(drop=True)


def leakage_stats(selection: pd.DataFrame, assignment: pd.Series) -> dict:
    """Group and artist counts, and how many artists / duplicate clusters span splits (should be 0)."""
    split = selection["mbid"].map(assignment)
    shared = selection["artist_mbid"].map(shared_artist)
    artist_splits = split[shared].groupby(selection.loc[shared, "artist_mbid"]).nunique()
    clustered = selection["cluster_id"].notna()
    cluster_splits = split[clustered].groupby(selection.loc[clustered, "cluster_id"]).nunique()
    groups = group_ids(selection)
    return {
        "groups": int(groups.max()) + 1,
        "largest_group": int(np.bincount(groups).max()),
        "artists": int(len(artist_splits)),
        "unshared_artist_items": int((~shared).sum()),  # Various Artists or no artist id: own groups
        "artists_in_several_splits": int((artist_splits > 1).sum()),
        "clusters_in_several_splits": int((cluster_splits > 1).sum()),
    }


# --- writers ------------------------------------------------------------------------------


def write_dataset(out: Path, items: pd.DataFrame, genres: list[str], data_dir: Path, shard_rows: int) -> dict:
    """Shards and manifest; returns per split {num_examples, num_bytes, files}."""
    load_image = image_loader(data_dir)
    written = {}
    for split in SPLITS:
        rows = items[items["split"] == split]
        paths, num_bytes = write_split(out, split, rows, load_image, genres, shard_rows)
        written[split] = {"num_examples": len(rows), "num_bytes": int(num_bytes), "files": paths}
    write_manifest(out / MANIFEST, items)
    return written


def image_loader(data_dir: Path):
    """`load(row) -> bytes`: a published item's stored cover, checked against its catalog sha256."""
    data_dir = Path(data_dir)

    def load_image(row) -> bytes:
        path = data_dir / str(row.path)
        try:
            data = path.read_bytes()
        except OSError:
            raise EquigenError(f"cover image {path} is missing or unreadable: re-run `equigen fetch`") from None
        if hashlib.sha256(data).hexdigest() != row.sha256:
            raise EquigenError(f"cover image {path} does not match its catalog sha256: re-run `equigen fetch`")
        return data

    return load_image


def recover_interrupted_split(target: Path, console: Console) -> None:
    """Undo what a killed split left (it runs under the folder lock, so nothing else is writing them).

    A kill while writing leaves `.dataset.build-PID`: removed. A kill between the two renames of the
    swap leaves no `dataset/` but `.dataset.old-PID`: the previous dataset is put back.
    """
    leftovers = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and leftovers:
        os.replace(leftovers.pop(), target)
        console.print(f"recovered the previous dataset from an interrupted split: {target}")
    for stale in [*leftovers, *target.parent.glob(f".{target.name}.build-*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
            console.print(f"removed {stale.name}, left by an interrupted split")


def _swap_in(build: Path, target: Path) -> None:
    """Replace `target` with the finished `build` folder (the old one is removed only afterwards)."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(build, target)
    except OSError:
        if old.exists():
            os.replace(old, target)  # put the previous dataset back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _print_summary(
    console: Console, report: SplitReport, stats: dict, genres: list[str], target: Path, elapsed: float
) -> None:
    counts = report.counts.reindex(index=genres, columns=list(SPLITS), fill_value=0)
    table = Table(title=f"Dataset written to {target}")
    table.add_column("genre")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("worst dev (pp)", justify="right")
    for genre in genres:
        dev = report.dev_pp.loc[genre].abs().max()
        table.add_row(inert(genre), *(str(int(counts.loc[genre, s])) for s in SPLITS), f"{dev:.3f}")
    table.add_row("total", *(str(int(counts[s].sum())) for s in SPLITS), f"{report.worst_dev_pp:.3f}", style="bold")
    console.print(table)
    console.print(
        f"groups {stats['groups']} (largest {stats['largest_group']}), artists {stats['artists']}, "
        f"artists in >1 split {stats['artists_in_several_splits']}, "
        f"duplicate clusters in >1 split {stats['clusters_in_several_splits']}; {elapsed:.1f} s"
    )
