"""`equigen split`: split the balanced selection and publish it as a dataset folder.

Layout of <data_dir>/dataset (built in a temporary sibling folder and swapped in only when complete):

    data/{split}-{i:05d}-of-{n:05d}.parquet   images + metadata, Hugging Face layout (equigen.shards)
    manifest.parquet                         every item with its Cover Art Archive URL (no images)
    croissant.json                           Croissant 1.0 metadata
    README.md                                dataset card (YAML front matter for the Hub)
    plots/split_genre_counts.png, plots/artist_sizes.png
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
from equigen.images import FORMAT_EXT
from equigen.mbids import is_mbid
from equigen.rebuild import MANIFEST_SOURCE
from equigen.shards import (DATA_DIR, SPLITS, WRITE_OPTIONS, hf_features, sha256_file, shard_files, write_checksums,
                            write_split)
from equigen.split import DEFAULT_RATIOS, group_ids, grouped_stratified_split, shared_artist, split_report
from equigen.taxonomy import load_taxonomy

MANIFEST = "manifest.parquet"
PLOTS_DIR = "plots"
PRETTY_NAME = "EquiGen album covers by genre"

# Manifest contract: column -> Arrow type. Strings may be null except where the reader requires them.
MANIFEST_COLUMNS = {
    "split": pa.string(), "genre": pa.string(), "label": pa.int64(), "release_group_mbid": pa.string(),
    "artist_mbid": pa.string(), "artist_name": pa.string(), "title": pa.string(), "year": pa.int32(),
    "sha256": pa.string(), "phash": pa.string(), "width": pa.int32(), "height": pa.int32(),
    "source_url": pa.string(),
}


def run_split(
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
    genres_all = load_taxonomy(settings.taxonomy_path).genres
    if not settings.catalog_path.is_file():
        raise EquigenError(f"no catalog at {settings.catalog_path}: run `equigen fetch` first")
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
            write_card(build, items, genres, report, stats, written, ratios, seed, shard_rows)
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
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise EquigenError(f"manifest {path} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"manifest {path} is not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names]
    if missing:
        raise EquigenError(f"manifest {path} lacks columns {missing}")
    for name, dtype in MANIFEST_COLUMNS.items():
        actual = table.schema.field(name).type
        if not (actual == dtype or (pa.types.is_integer(dtype) and pa.types.is_integer(actual))
                or (pa.types.is_string(dtype) and pa.types.is_large_string(actual))):
            raise EquigenError(f"manifest {path}: column {name} is {actual}, expected {dtype}")
    frame = table.select(list(MANIFEST_COLUMNS)).to_pandas()
    for name in ("label", "year", "width", "height"):
        frame[name] = frame[name].astype("Int64" if name == "label" else "Int32")
    problems = []
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


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(str(text), ensure_ascii=False)


def write_card(out: Path, items: pd.DataFrame, genres: list[str], report: dict, stats: dict, written: dict,
               ratios, seed: int, shard_rows: int) -> None:
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
license_details: "Metadata: CC0 (MusicBrainz). Cover images: copyrighted by their respective owners; included for non-commercial research only."
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

The metadata (release groups, artists, titles, dates, genre tags) comes from MusicBrainz and is CC0.
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

## Files

- `{DATA_DIR}/{{split}}-NNNNN-of-NNNNN.parquet`: `image` (original bytes + file name), `label`
  (ClassLabel), `genre`, `release_group_mbid`, `artist_mbid`, `artist_name`, `title`, `year`, `phash`,
  `sha256`, `width`, `height`.
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
_CROISSANT_TYPES = {"string": "sc:Text", "int32": "sc:Integer", "int64": "sc:Integer"}


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
        "creditText": ("Metadata CC0 from MusicBrainz. Cover images are copyrighted by their owners and are "
                       "included for non-commercial research only; the licence above covers the metadata only."),
        "distribution": distribution,
        "recordSet": [{
            "@type": "cr:RecordSet", "@id": "covers", "name": "covers",
            "description": "One record per album cover.", "field": fields,
        }],
    }
    (out / "croissant.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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
