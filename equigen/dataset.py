"""`equigen split`: split the balanced selection and publish it as a dataset folder.

Layout of <data_dir>/dataset (built in a temporary sibling folder and swapped in only when complete):

    data/{split}-{i:05d}-of-{n:05d}.parquet   images + metadata, Hugging Face layout (equigen.shards)
    manifest.parquet                         every item with its Cover Art Archive URL (no images)
    croissant.json                           Croissant 1.0 metadata
    README.md                                dataset card (YAML front matter for the Hub)
    plots/split_genre_counts.png, plots/artist_sizes.png, plots/label_confidence.png
    checksums.sha256                         sha256sum of every other file
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from equigen import __version__
from equigen.catalog import Catalog
from equigen.config import Settings
from equigen.errors import EquigenError
from equigen.lock import data_folder_lock
from equigen.images import FORMAT_EXT
from equigen.mbids import is_mbid
from equigen.rebuild import MANIFEST_SOURCE
from equigen.shards import (DATA_DIR, SPLITS, WRITE_OPTIONS, check_parquet_size, hf_features, sha256_file, shard_files, write_checksums,
                            write_split)
from equigen.split import DEFAULT_RATIOS, group_ids, grouped_stratified_split, shared_artist, split_report
from equigen.taxonomy import load_taxonomy

MANIFEST = "manifest.parquet"
PLOTS_DIR = "plots"
PRETTY_NAME = "EquiGen album covers by genre"

# Manifest contract: column -> Arrow type. Strings may be null except where the reader requires them.
MANIFEST_COLUMNS = {
    "split": pa.string(), "genre": pa.string(), "label": pa.int64(),
    "label_votes": pa.int32(), "label_confidence": pa.float32(), "release_group_mbid": pa.string(),
    "artist_mbid": pa.string(), "artist_name": pa.string(), "title": pa.string(), "year": pa.int32(),
    "sha256": pa.string(), "phash": pa.string(), "width": pa.int32(), "height": pa.int32(),
    "source_url": pa.string(),
}
# Columns a manifest written before they existed lacks: read as unknown (null).
OPTIONAL_MANIFEST_COLUMNS = ("label_votes", "label_confidence")


def run_split(
    settings: Settings,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
    shard_rows: int = 2000,
    console: Console | None = None,
) -> dict:
    """Split with the data folder locked (see lock.py): one writer per folder."""
    with data_folder_lock(settings.data_dir, "split", create=False):
        return _run_split_unlocked(settings, ratios=ratios, seed=seed, shard_rows=shard_rows, console=console)


def _run_split_unlocked(
    settings: Settings,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    seed: int = 0,
    shard_rows: int = 2000,
    console: Console | None = None,
) -> dict:
    """Split the balanced selection, publish the dataset folder, store the splits; return a summary."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    if shard_rows < 1:
        raise EquigenError(f"--shard-rows must be at least 1, got {shard_rows}")
    taxonomy = load_taxonomy(settings.taxonomy_path)
    genres_all = taxonomy.genres
    if not settings.catalog_path.is_file():
        raise EquigenError(f"no catalog at {settings.catalog_path}: run `equigen fetch` first")
    recover_interrupted_split(settings.dataset_dir, console)
    with Catalog(settings.catalog_path) as catalog:
        selection = catalog.selection_frame()
        if selection.empty:
            raise EquigenError(
                f"the catalog in {settings.data_dir} has no balanced selection: run `equigen balance` first")
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
        empty = [split for split in SPLITS if not report["split_sizes"].get(split)]
        if empty:
            raise EquigenError(f"split {'/'.join(empty)} would be empty: {len(selection)} covers in "
                               f"{report['n_groups']} artist groups are too few; balance more covers per genre")
        items = dataset_items(selection, assignment, genres)
        stats = leakage_stats(selection, assignment)

        target = settings.dataset_dir
        build = target.with_name(f".{target.name}.build-{os.getpid()}")
        shutil.rmtree(build, ignore_errors=True)
        try:
            written = write_dataset(build, items, genres, settings.data_dir, shard_rows)
            write_plots(build, items, genres)
            write_card(build, items, genres, report, stats, written, ratios, seed, shard_rows,
                       ambiguity_ratio=taxonomy.ambiguity_ratio)
            write_croissant(build, items, genres)
            write_checksums(build)
            _swap_in(build, target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        catalog.set_splits(items[["release_group_mbid", "split"]].rename(columns={"release_group_mbid": "mbid"}))

    elapsed = time.perf_counter() - started
    _print_summary(console, report, stats, genres, target, elapsed)
    return {
        "dataset_dir": target, "counts": report["counts"], "worst_dev_pp": report["worst_dev_pp"],
        "split_sizes": report["split_sizes"], "n_groups": report["n_groups"], "leakage": stats,
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
    items = pd.DataFrame({
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
        "ext": [FORMAT_EXT.get(f) or (Path(p).suffix.lstrip(".").lower() or "jpg")
                for f, p in zip(selection["format"], selection["path"].fillna(""))],
        "path": selection["path"],
        "source_url": selection["source_url"],
    })
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
        "unshared_artist_items": int((~shared).sum()),   # Various Artists or no artist id: own groups
        "artists_in_several_splits": int((artist_splits > 1).sum()),
        "clusters_in_several_splits": int((cluster_splits > 1).sum()),
    }


def label_confidence_table(items: pd.DataFrame, genres: list[str]) -> pd.DataFrame:
    """Per genre (in `genres` order): how strongly MusicBrainz tag votes back the published labels.

    Columns: covers, known (covers whose evidence is known), median_votes, median_confidence,
    min_confidence, full (share of known covers with confidence 1.0), below_075 (share below 0.75).
    Shares are fractions; statistics of a genre without known evidence are NaN.
    """
    votes = pd.to_numeric(items["label_votes"], errors="coerce").astype("float64")
    confidence = pd.to_numeric(items["label_confidence"], errors="coerce").astype("float64")
    rows = []
    for genre in genres:
        mine = (items["genre"] == genre).to_numpy()
        conf = confidence[mine].dropna()
        rows.append({
            "genre": genre, "covers": int(mine.sum()), "known": len(conf),
            "median_votes": float(votes[mine].median()) if votes[mine].notna().any() else np.nan,
            "median_confidence": float(conf.median()) if len(conf) else np.nan,
            "min_confidence": float(conf.min()) if len(conf) else np.nan,
            "full": float((conf >= 1.0).mean()) if len(conf) else np.nan,
            "below_075": float((conf < 0.75).mean()) if len(conf) else np.nan,
        })
    return pd.DataFrame(rows, columns=["genre", "covers", "known", "median_votes", "median_confidence",
                                       "min_confidence", "full", "below_075"])


# --- writers ------------------------------------------------------------------------------

def write_dataset(out: Path, items: pd.DataFrame, genres: list[str], data_dir: Path, shard_rows: int) -> dict:
    """Shards and manifest; returns per split {num_examples, num_bytes, files}."""
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

    written = {}
    for split in SPLITS:
        rows = items[items["split"] == split]
        paths, num_bytes = write_split(out, split, rows, load_image, genres, shard_rows)
        written[split] = {"num_examples": len(rows), "num_bytes": int(num_bytes), "files": paths}
    write_manifest(out / MANIFEST, items)
    return written


def write_manifest(path: Path, items: pd.DataFrame) -> None:
    columns = {name: [None if pd.isna(v) else v for v in items[name]] for name in MANIFEST_COLUMNS}
    table = pa.Table.from_pydict(columns, schema=pa.schema(MANIFEST_COLUMNS.items()))
    pq.write_table(table, path, **WRITE_OPTIONS)


def read_manifest(path: Path | str) -> pd.DataFrame:
    """A manifest.parquet as a DataFrame, checked against the contract (one-line EquigenError if bad)."""
    path = Path(path)
    # ~100k items of a few hundred bytes each; a manifest carries no images
    check_parquet_size(path, "manifest", max_rows=5_000_000, bytes_per_row=4096)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise EquigenError(f"manifest {path} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"manifest {path} is not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names and c not in OPTIONAL_MANIFEST_COLUMNS]
    if missing:
        raise EquigenError(f"manifest {path} lacks columns {missing}")
    for name in OPTIONAL_MANIFEST_COLUMNS:
        if name not in table.column_names:   # an older manifest: the label's evidence is unknown
            table = table.append_column(name, pa.nulls(table.num_rows, MANIFEST_COLUMNS[name]))
    for name, dtype in MANIFEST_COLUMNS.items():
        actual = table.schema.field(name).type
        if not (actual == dtype or pa.types.is_null(actual)
                or (pa.types.is_integer(dtype) and pa.types.is_integer(actual))
                or (pa.types.is_floating(dtype) and (pa.types.is_floating(actual) or pa.types.is_integer(actual)))
                or (pa.types.is_string(dtype) and pa.types.is_large_string(actual))):
            raise EquigenError(f"manifest {path}: column {name} is {actual}, expected {dtype}")
    frame = table.select(list(MANIFEST_COLUMNS)).to_pandas()
    try:
        for name in ("label", "year", "width", "height", "label_votes"):
            frame[name] = frame[name].astype("Int64" if name == "label" else "Int32")
    except (TypeError, ValueError, OverflowError):
        raise EquigenError(f"manifest {path}: column {name} has values out of its integer range") from None
    frame["label_confidence"] = frame["label_confidence"].astype("Float64")
    problems = []
    if (frame["label_votes"] < 0).any():
        problems.append("negative label_votes")
    if not frame["label_confidence"].between(0, 1).fillna(True).all():
        problems.append("label_confidence values outside [0, 1]")
    if not frame["split"].isin(SPLITS).all():
        problems.append(f"split values outside {list(SPLITS)}")
    if not frame["release_group_mbid"].map(is_mbid).all():
        problems.append("release_group_mbid values that are not MBIDs")
    if frame["release_group_mbid"].duplicated().any():
        problems.append("duplicate release_group_mbid values")
    if not frame["sha256"].astype("string").str.fullmatch(r"[0-9a-f]{64}").fillna(False).all():
        problems.append("sha256 values that are not 64 hex digits")
    if frame["genre"].isna().any() or frame["label"].isna().any():
        problems.append("rows without genre or label")
    elif (frame.groupby("label")["genre"].nunique() > 1).any() or (frame.groupby("genre")["label"].nunique() > 1).any():
        problems.append("labels and genres that do not correspond one to one")
    if problems:
        raise EquigenError(f"manifest {path} is invalid: {'; '.join(problems)}")
    return frame


def write_plots(out: Path, items: pd.DataFrame, genres: list[str]) -> None:
    """Split x genre stacked bars and the artist-size histogram (PNG, no timestamps)."""
    from matplotlib.figure import Figure   # no pyplot: no global state, no GUI backend
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    folder = out / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    counts = pd.crosstab(items["genre"], items["split"]).reindex(index=genres, columns=list(SPLITS), fill_value=0)
    fig = Figure(figsize=(8, 0.35 * len(genres) + 1.6))
    ax = fig.add_subplot()
    left = np.zeros(len(genres))
    for split, color in zip(SPLITS, ("#4c72b0", "#dd8452", "#55a868")):
        ax.barh(genres, counts[split].to_numpy(), left=left, label=split, color=color)
        left += counts[split].to_numpy()
    ax.invert_yaxis()
    ax.set_xlabel("covers")
    ax.set_title("Covers per genre and split", pad=24)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(SPLITS), frameon=False, fontsize="small")
    fig.tight_layout()
    fig.savefig(folder / "split_genre_counts.png", dpi=100, metadata={"Software": None})

    shared = items["artist_mbid"].map(shared_artist)
    sizes = items.loc[shared, "artist_mbid"].value_counts().to_numpy()
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    if len(sizes):
        # One bin per size; the log count axis shows the long tail next to the many one-cover artists.
        ax.hist(sizes, bins=np.arange(0.5, sizes.max() + 1.5), color="#4c72b0", edgecolor="white")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("covers per artist (Various Artists and unknown artists excluded)")
    ax.set_ylabel("artists")
    ax.set_title(f"Artist sizes ({len(sizes)} artists)")
    fig.tight_layout()
    fig.savefig(folder / "artist_sizes.png", dpi=100, metadata={"Software": None})

    write_label_confidence_plot(folder / "label_confidence.png", items, genres)


def write_label_confidence_plot(path: Path, items: pd.DataFrame, genres: list[str]) -> None:
    """Per genre box plots of label_confidence (left) and label_votes (right, log axis); PNG, no timestamps."""
    import inspect

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    votes = pd.to_numeric(items["label_votes"], errors="coerce").astype("float64")
    confidence = pd.to_numeric(items["label_confidence"], errors="coerce").astype("float64")
    by_genre = [(items["genre"] == g).to_numpy() for g in genres]
    conf_data = [confidence[m].dropna().to_numpy() for m in by_genre]
    vote_data = [votes[m].dropna().to_numpy() for m in by_genre]
    unknown = int(confidence.isna().sum())
    fig = Figure(figsize=(10, 0.4 * len(genres) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True)
    positions = np.arange(len(genres))
    # Matplotlib 3.10 replaced vert=False by orientation="horizontal" (vert is deprecated from 3.11).
    horizontal = ({"orientation": "horizontal"} if "orientation" in inspect.signature(Axes.boxplot).parameters
                  else {"vert": False})
    style = dict(**horizontal, widths=0.6, patch_artist=True, showfliers=True, manage_ticks=False,
                 medianprops={"color": "black"}, flierprops={"markersize": 3, "alpha": 0.5})
    for ax, data, color in ((left, conf_data, "#4c72b0"), (right, vote_data, "#dd8452")):
        shown = [i for i, d in enumerate(data) if len(d)]   # a genre without known evidence gets no box
        if shown:
            boxes = ax.boxplot([data[i] for i in shown], positions=positions[shown], **style)
            for patch in boxes["boxes"]:
                patch.set_facecolor(color)
                patch.set_alpha(0.6)
        ax.set_yticks(positions, [f"{g} (n={len(d)})" for g, d in zip(genres, conf_data)])
        ax.set_ylim(len(genres) - 0.5, -0.5)   # first genre on top
        ax.grid(axis="x", alpha=0.3)
    left.set_xlim(0, 1.02)
    left.axvline(0.75, color="firebrick", linestyle=":", linewidth=1)
    left.set_xlabel("label_confidence (winning genre's share of the votes)")
    known = [d for d in vote_data if len(d)]
    if known and all(d.min() > 0 for d in known):
        right.set_xscale("log")
        right.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        right.xaxis.set_major_formatter(ScalarFormatter())
        right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("label_votes (genre tag votes, log axis)")
    title = "Label evidence per genre"
    if unknown:
        title += f" ({unknown} covers with unknown evidence left out)"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(str(text), ensure_ascii=False)


def _label_confidence_section(items: pd.DataFrame, genres: list[str], ambiguity_ratio: float) -> str:
    """The card's "Label confidence" section: what the two columns mean and their distribution per genre."""
    stats = label_confidence_table(items, genres)

    def num(value: float, fmt: str) -> str:
        return "n/a" if pd.isna(value) else format(value, fmt)

    def votes(value: float) -> str:
        return "n/a" if pd.isna(value) else f"{value:.1f}".removesuffix(".0")

    def pct(value: float) -> str:
        return "n/a" if pd.isna(value) else f"{100 * value:.1f} %"

    table = ["| genre | covers | median votes | median confidence | min confidence | confidence 1.0 "
             "| confidence < 0.75 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in stats.itertuples(index=False):
        table.append(f"| {row.genre} | {row.covers} | {votes(row.median_votes)} | "
                     f"{num(row.median_confidence, '.3f')} | {num(row.min_confidence, '.3f')} | {pct(row.full)} | "
                     f"{pct(row.below_075)} |")
    overall = label_confidence_table(items.assign(genre="all"), ["all"]).iloc[0]
    table.append(f"| **all** | {overall.covers} | {votes(overall.median_votes)} | "
                 f"{num(overall.median_confidence, '.3f')} | {num(overall.min_confidence, '.3f')} | "
                 f"{pct(overall.full)} | {pct(overall.below_075)} |")
    unknown = int(overall.covers - overall.known)
    note = (f"\n\n{unknown} covers have unknown evidence (null in both columns): they come from a catalog or a "
            "manifest written before EquiGen recorded it, and are left out of the statistics." if unknown else "")
    return f"""## Label confidence

Each release group's genre comes from its MusicBrainz community tags, and every item publishes that
evidence in two columns (in the shards and in `{MANIFEST}`):

- `label_votes` (int32): the tag votes summed over every tag that maps to one of the genres (the
  winner's and all the others');
- `label_confidence` (float32): the winning genre's share of those votes, from 0 to 1; 1.0 means every
  mapped vote went to the published genre.

Ambiguous release groups, whose runner-up genre has at least {100 * ambiguity_ratio:g} % of the winner's
votes, are never included, nor are release groups without a mapped tag vote. `equigen balance
--min-confidence X` builds a dataset from covers with confidence of at least X only; filter on these
columns to train on the most certain labels or to study label noise. Per genre, over the covers whose
evidence is known:

{chr(10).join(table)}{note}

![Label confidence and votes per genre]({PLOTS_DIR}/label_confidence.png)"""


def write_card(out: Path, items: pd.DataFrame, genres: list[str], report: dict, stats: dict, written: dict,
               ratios, seed: int, shard_rows: int, ambiguity_ratio: float = 0.8) -> None:
    """README.md: Hub YAML front matter (configs, dataset_info) and the dataset card."""
    download_size = sum(p.stat().st_size for w in written.values() for p in w["files"])
    dataset_size = sum(w["num_bytes"] for w in written.values())
    feature_yaml = []
    for name, feature in hf_features(genres).items():
        if feature["_type"] == "Image":
            feature_yaml.append(f"  - name: {name}\n    dtype: image")
        elif feature["_type"] == "ClassLabel":
            names = "".join(f"\n          '{i}': {_q(g)}" for i, g in enumerate(genres))
            feature_yaml.append(f"  - name: {name}\n    dtype:\n      class_label:\n        names:{names}")
        else:
            feature_yaml.append(f"  - name: {name}\n    dtype: {feature['dtype']}")
    splits_yaml = "\n".join(f"  - name: {s}\n    num_bytes: {written[s]['num_bytes']}\n"
                            f"    num_examples: {written[s]['num_examples']}" for s in SPLITS)
    files_yaml = "\n".join(f"  - split: {s}\n    path: {DATA_DIR}/{s}-*" for s in SPLITS)
    counts = report["counts"].reindex(index=genres, columns=list(SPLITS), fill_value=0)
    table = ["| genre | label | " + " | ".join(SPLITS) + " | total |", "|---|---:|" + "---:|" * (len(SPLITS) + 1)]
    for label, genre in enumerate(genres):
        row = counts.loc[genre]
        table.append(f"| {genre} | {label} | " + " | ".join(str(int(row[s])) for s in SPLITS) + f" | {int(row.sum())} |")
    table.append("| **total** | | " + " | ".join(str(int(counts[s].sum())) for s in SPLITS) + f" | {len(items)} |")
    ratio_text = ",".join(f"{r:g}" for r in ratios)
    per_genre = int(counts.sum(axis=1).max())
    text = f"""---
pretty_name: {_q(PRETTY_NAME)}
license: other
license_name: cover-art-copyrighted-by-owners
license_details: "Metadata: CC0 (MusicBrainz core data); genre labels and label evidence derive from MusicBrainz tags (supplementary data, CC BY-NC-SA 3.0). Cover images: copyrighted by their respective owners; included for non-commercial research only."
task_categories:
- image-classification
tags:
- album-covers
- music
- genre-classification
- musicbrainz
- cover-art-archive
size_categories:
- {_size_category(len(items))}
configs:
- config_name: default
  data_files:
{files_yaml}
dataset_info:
  features:
{chr(10).join(feature_yaml)}
  splits:
{splits_yaml}
  download_size: {download_size}
  dataset_size: {dataset_size}
---

# {PRETTY_NAME}

{len(items)} album front covers labelled with one of {len(genres)} music genres, balanced per genre and split
into train / validation / test **by artist and by near-duplicate cluster**, so no artist and no
(near-)identical cover appears in two splits. Built with EquiGen {__version__}.

## Licence

The metadata (release groups, artists, titles, dates) comes from MusicBrainz core data and is CC0. The genre
labels and their evidence (`label_votes`, `label_confidence`) are derived from MusicBrainz community tags, which
are MusicBrainz supplementary data under CC BY-NC-SA 3.0 (see musicbrainz.org/doc/About/Data_License).
**The cover images are copyrighted by their respective owners** (labels, artists, designers); they are
served by the Cover Art Archive and are included here for non-commercial research on image classification
only. No licence to the artwork is granted. `manifest.parquet` lets anyone rebuild the dataset from the
Cover Art Archive instead of redistributing images.

## How it was built

```
equigen fetch   --per-genre <N>      # MusicBrainz search by genre tag + Cover Art Archive front covers
equigen dedup                        # exact (sha256) and near (pHash) duplicate clusters
equigen balance --per-genre {per_genre}
equigen split   --ratios {ratio_text} --seed {seed} --shard-rows {shard_rows}
equigen verify  <this folder>
```

Each release group gets one genre from its MusicBrainz tag votes (see the taxonomy in EquiGen); ambiguous
and unlabelled release groups are dropped, one canonical cover is kept per duplicate cluster, and at most a
few covers per artist per genre are kept.

**Split rule.** Covers sharing an artist, or a duplicate cluster, form one group (transitively); a group
goes to one split as a whole. Various Artists and covers without an artist id do not share an artist, so
each is its own group (they still join their duplicate cluster). Groups are assigned largest first to the
split that brings every genre's counts closest to the target ratios {ratio_text}.

## Counts

{chr(10).join(table)}

Worst deviation of a genre's split share from the target ratio: **{report['worst_dev_pp']:.3f} percentage points**.

| leakage statistic | value |
|---|---:|
| groups (artist ∪ duplicate cluster) | {stats['groups']} |
| largest group (covers) | {stats['largest_group']} |
| distinct artists | {stats['artists']} |
| covers by Various Artists or unknown artists (own groups) | {stats['unshared_artist_items']} |
| artists in more than one split | {stats['artists_in_several_splits']} |
| duplicate clusters in more than one split | {stats['clusters_in_several_splits']} |

![Covers per genre and split]({PLOTS_DIR}/split_genre_counts.png)

![Covers per artist]({PLOTS_DIR}/artist_sizes.png)

{_label_confidence_section(items, genres, ambiguity_ratio)}

## Files

- `{DATA_DIR}/{{split}}-NNNNN-of-NNNNN.parquet`: `image` (original bytes + file name), `label`
  (ClassLabel), `genre`, `label_votes`, `label_confidence`, `release_group_mbid`, `artist_mbid`,
  `artist_name`, `title`, `year`, `phash`, `sha256`, `width`, `height`.
- `{MANIFEST}`: every item with its split and Cover Art Archive `source_url`, no images.
- `croissant.json`: Croissant 1.0 metadata. `checksums.sha256`: `sha256sum -c checksums.sha256`.

## Loading

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_dir="path/to/this/folder")   # or load_dataset("path/to/this/folder")
ds["train"].features["label"].int2str(ds["train"][0]["label"])

import glob, pandas as pd
train = pd.concat(pd.read_parquet(p) for p in sorted(glob.glob("path/to/this/folder/{DATA_DIR}/train-*.parquet")))

import duckdb
duckdb.sql("SELECT genre, count(*) FROM '{DATA_DIR}/train-*.parquet' GROUP BY genre")
```

## Citation

```bibtex
@misc{{equigen_album_covers,
  title  = {{{PRETTY_NAME}}},
  note   = {{Built with EquiGen {__version__}; citation to be added}},
}}
```
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


CROISSANT_CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/", "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "sc": "https://schema.org/", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform", "equivalentProperty": "cr:equivalentProperty",
    "samplingRate": "cr:samplingRate",
}
_CROISSANT_TYPES = {"string": "sc:Text", "int32": "sc:Integer", "int64": "sc:Integer", "float32": "sc:Float"}


def write_croissant(out: Path, items: pd.DataFrame, genres: list[str]) -> None:
    """croissant.json: each shard as a FileObject (sha256), one FileSet over them, and a RecordSet."""
    shards = [p for paths in shard_files(out).values() for p in paths]
    distribution: list[dict] = [{
        "@type": "cr:FileObject", "@id": p.name, "name": p.name, "contentUrl": f"{DATA_DIR}/{p.name}",
        "encodingFormat": "application/x-parquet", "contentSize": f"{p.stat().st_size} B", "sha256": sha256_file(p),
    } for p in shards]
    distribution.append({
        "@type": "cr:FileSet", "@id": "parquet-shards", "name": "parquet-shards",
        "description": "All Parquet shards of all splits.", "encodingFormat": "application/x-parquet",
        "includes": f"{DATA_DIR}/*.parquet",
    })

    def field(name: str, data_type: str, description: str, **source) -> dict:
        return {"@type": "cr:Field", "@id": f"covers/{name}", "name": name, "description": description,
                "dataType": data_type, "source": {"fileSet": {"@id": "parquet-shards"}, **source}}

    descriptions = {
        "genre": "Genre name (the ClassLabel name of label).",
        "label_votes": ("MusicBrainz genre tag votes of the release group, summed over every tag mapped to one "
                        "of the genres (empty when unknown)."),
        "label_confidence": ("The winning genre's share of label_votes, from 0 to 1 (empty when unknown)."),
        "release_group_mbid": "MusicBrainz release group MBID.", "artist_mbid": "MusicBrainz artist MBID.",
        "artist_name": "Artist credit name.", "title": "Release group title.",
        "year": "Year of the first release (may be empty).", "phash": "64-bit perceptual hash, 16 hex digits.",
        "sha256": "SHA-256 of the image bytes.", "width": "Image width in pixels.", "height": "Image height in pixels.",
    }
    features = hf_features(genres)
    fields = [
        field("image", "sc:ImageObject", "The front cover image (original bytes).",
              extract={"column": "image"}, transform={"jsonPath": "bytes"}),
        field("label", "sc:Integer", "Genre label id: " + ", ".join(f"{i}={g}" for i, g in enumerate(genres)) + ".",
              extract={"column": "label"}),
        field("split", "sc:Text", "train, validation or test (from the shard file name).",
              extract={"fileProperty": "filename"}, transform={"regex": "^(train|validation|test)-.*\\.parquet$"}),
    ]
    fields += [field(name, _CROISSANT_TYPES[features[name]["dtype"]], text, extract={"column": name})
               for name, text in descriptions.items()]
    metadata = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": "equigen-album-covers",
        "description": (f"{len(items)} album front covers in {len(genres)} genres, balanced and split by artist and "
                        "near-duplicate cluster (no leakage across train/validation/test)."),
        "license": "https://creativecommons.org/publicdomain/zero/1.0/",
        "url": "https://musicbrainz.org/",
        "version": __version__,
        "citeAs": "EquiGen album covers by genre (citation to be added)",
        "keywords": ["album covers", "music genre", "image classification", "MusicBrainz", "Cover Art Archive"],
        "isAccessibleForFree": True,
        "creditText": ("Metadata CC0 from MusicBrainz; genre labels derived from MusicBrainz tags (CC BY-NC-SA 3.0). "
                       "Cover images are copyrighted by their owners and are "
                       "included for non-commercial research only; the licence above covers the metadata only."),
        "distribution": distribution,
        "recordSet": [{
            "@type": "cr:RecordSet", "@id": "covers", "name": "covers",
            "description": "One record per album cover.", "field": fields,
        }],
    }
    (out / "croissant.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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
            os.replace(old, target)   # put the previous dataset back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _print_summary(console: Console, report: dict, stats: dict, genres: list[str], target: Path, elapsed: float) -> None:
    counts = report["counts"].reindex(index=genres, columns=list(SPLITS), fill_value=0)
    table = Table(title=f"Dataset written to {target}")
    table.add_column("genre")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("worst dev (pp)", justify="right")
    for genre in genres:
        dev = report["dev_pp"].loc[genre].abs().max()
        table.add_row(genre, *(str(int(counts.loc[genre, s])) for s in SPLITS), f"{dev:.3f}")
    table.add_row("total", *(str(int(counts[s].sum())) for s in SPLITS), f"{report['worst_dev_pp']:.3f}", style="bold")
    console.print(table)
    console.print(
        f"groups {stats['groups']} (largest {stats['largest_group']}), artists {stats['artists']}, "
        f"artists in >1 split {stats['artists_in_several_splits']}, "
        f"duplicate clusters in >1 split {stats['clusters_in_several_splits']}; {elapsed:.1f} s"
    )
