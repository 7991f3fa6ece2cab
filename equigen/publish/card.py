"""What a published dataset says about itself: the dataset card (README.md with the Hub's YAML front
matter; its text is data/card_template.md), the Croissant metadata and the plots the card shows.

Nothing here is time-dependent, so the same items give the same bytes.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from equigen import __version__
from equigen.core.defaults import SPLITS
from equigen.core.errors import one_line
from equigen.core.manifest import MANIFEST
from equigen.core.schema import COLUMNS, METADATA_COLUMNS
from equigen.core.storage import write_atomic
from equigen.publish.shards import DATA_DIR, hf_features, sha256_file, shard_files
from equigen.publish.split_rules import SplitReport, shared_artist

PLOTS_DIR = "plots"
SAMPLES = "samples.jpg"  # the train split's contact sheet; samples-<split>.jpg: the others (--samples-per-split)
SAMPLES_PER_GENRE = 12
SAMPLE_TILE = 96  # pixels per cover in the contact sheet
PRETTY_NAME = "EquiGen album covers by genre"
CARD_TEMPLATE = "data/card_template.md"  # inside the package; ${name} placeholders (string.Template)


# --- pure helpers -------------------------------------------------------------------------


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def md_text(text: object) -> str:
    """A name from a taxonomy or a shard as inert Markdown: one line, every Markdown character escaped (a genre
    named "[x](http://evil)" or "# heading" stays text in the card)."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


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
        rows.append(
            {
                "genre": genre,
                "covers": int(mine.sum()),
                "known": len(conf),
                "median_votes": float(votes[mine].median()) if votes[mine].notna().any() else np.nan,
                "median_confidence": float(conf.median()) if len(conf) else np.nan,
                "min_confidence": float(conf.min()) if len(conf) else np.nan,
                "full": float((conf >= 1.0).mean()) if len(conf) else np.nan,
                "below_075": float((conf < 0.75).mean()) if len(conf) else np.nan,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "genre",
            "covers",
            "known",
            "median_votes",
            "median_confidence",
            "min_confidence",
            "full",
            "below_075",
        ],
    )


# --- writers ------------------------------------------------------------------------------


def write_card(
    out: Path,
    items: pd.DataFrame,
    genres: list[str],
    report: SplitReport,
    stats: dict,
    written: dict,
    ratios,
    seed: int,
    shard_rows: int,
    ambiguity_ratio: float = 0.8,
) -> None:
    """README.md: Hub YAML front matter (configs, dataset_info) and the dataset card."""
    write_atomic(
        out / "README.md", card_text(items, genres, report, stats, written, ratios, seed, shard_rows, ambiguity_ratio)
    )


def card_template() -> Template:
    """The card's prose, kept out of the code so it reads and diffs as Markdown."""
    return Template(resources.files("equigen").joinpath(CARD_TEMPLATE).read_text(encoding="utf-8"))


def card_text(
    items: pd.DataFrame,
    genres: list[str],
    report: SplitReport,
    stats: dict,
    written: dict,
    ratios,
    seed: int,
    shard_rows: int,
    ambiguity_ratio: float = 0.8,
) -> str:
    """The card: the template filled with the counts, sizes and statistics of this dataset."""
    feature_yaml = []
    for name, feature in hf_features(genres).items():
        if feature["_type"] == "Image":
            feature_yaml.append(f"  - name: {name}\n    dtype: image")
        elif feature["_type"] == "ClassLabel":
            names = "".join(f"\n          '{i}': {_q(g)}" for i, g in enumerate(genres))
            feature_yaml.append(f"  - name: {name}\n    dtype:\n      class_label:\n        names:{names}")
        else:
            feature_yaml.append(f"  - name: {name}\n    dtype: {feature['dtype']}")
    counts = report.counts.reindex(index=genres, columns=list(SPLITS), fill_value=0)
    table = ["| genre | label | " + " | ".join(SPLITS) + " | total |", "|---|---:|" + "---:|" * (len(SPLITS) + 1)]
    for label, genre in enumerate(genres):
        row = counts.loc[genre]
        table.append(
            f"| {md_text(genre)} | {label} | " + " | ".join(str(int(row[s])) for s in SPLITS) + f" | {int(row.sum())} |"
        )
    table.append("| **total** | | " + " | ".join(str(int(counts[s].sum())) for s in SPLITS) + f" | {len(items)} |")
    confidence_table, unknown_note = _label_confidence_table_md(items, genres)
    return card_template().substitute(
        pretty_name=PRETTY_NAME,
        pretty_name_yaml=_q(PRETTY_NAME),
        version=__version__,
        size_category=_size_category(len(items)),
        files_yaml="\n".join(f"  - split: {s}\n    path: {DATA_DIR}/{s}-*" for s in SPLITS),
        features_yaml="\n".join(feature_yaml),
        splits_yaml="\n".join(
            f"  - name: {s}\n    num_bytes: {written[s]['num_bytes']}\n    num_examples: {written[s]['num_examples']}"
            for s in SPLITS
        ),
        download_size=sum(p.stat().st_size for w in written.values() for p in w["files"]),
        dataset_size=sum(w["num_bytes"] for w in written.values()),
        n_items=len(items),
        n_genres=len(genres),
        per_genre=int(counts.sum(axis=1).max()),
        ratios=",".join(f"{r:g}" for r in ratios),
        seed=seed,
        shard_rows=shard_rows,
        counts_table="\n".join(table),
        worst_dev_pp=f"{report.worst_dev_pp:.3f}",
        **{
            key: stats[key]
            for key in (
                "groups",
                "largest_group",
                "artists",
                "unshared_artist_items",
                "artists_in_several_splits",
                "clusters_in_several_splits",
            )
        },
        ambiguity_pct=f"{100 * ambiguity_ratio:g}",
        confidence_table=confidence_table,
        unknown_evidence_note=unknown_note,
        data_dir=DATA_DIR,
        manifest=MANIFEST,
        plots_dir=PLOTS_DIR,
        samples=SAMPLES,
        samples_per_genre=SAMPLES_PER_GENRE,
    )


def _label_confidence_table_md(items: pd.DataFrame, genres: list[str]) -> tuple[str, str]:
    """The card's label-evidence table per genre (and overall), and a note on covers of unknown evidence."""
    stats = label_confidence_table(items, genres)

    def num(value: float, fmt: str) -> str:
        return "n/a" if pd.isna(value) else format(value, fmt)

    def votes(value: float) -> str:
        return "n/a" if pd.isna(value) else f"{value:.1f}".removesuffix(".0")

    def pct(value: float) -> str:
        return "n/a" if pd.isna(value) else f"{100 * value:.1f} %"

    table = [
        "| genre | covers | median votes | median confidence | min confidence | confidence 1.0 | confidence < 0.75 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in stats.itertuples(index=False):
        table.append(
            f"| {md_text(row.genre)} | {row.covers} | {votes(row.median_votes)} | "
            f"{num(row.median_confidence, '.3f')} | {num(row.min_confidence, '.3f')} | {pct(row.full)} | "
            f"{pct(row.below_075)} |"
        )
    overall = label_confidence_table(items.assign(genre="all"), ["all"]).iloc[0]
    table.append(
        f"| **all** | {overall.covers} | {votes(overall.median_votes)} | "
        f"{num(overall.median_confidence, '.3f')} | {num(overall.min_confidence, '.3f')} | "
        f"{pct(overall.full)} | {pct(overall.below_075)} |"
    )
    unknown = int(overall.covers - overall.known)
    note = (
        f"\n\n{unknown} covers have unknown evidence (null in both columns): they come from a catalog or a "
        "manifest written before EquiGen recorded it, and are left out of the statistics."
        if unknown
        else ""
    )
    return "\n".join(table), note


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(str(text), ensure_ascii=False)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def write_plots(out: Path, items: pd.DataFrame, genres: list[str]) -> None:
    """Split x genre stacked bars and the artist-size histogram (PNG, no timestamps)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
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
    horizontal = (
        {"orientation": "horizontal"}
        if "orientation" in inspect.signature(Axes.boxplot).parameters
        else {"vert": False}
    )
    style = dict(
        **horizontal,
        widths=0.6,
        patch_artist=True,
        showfliers=True,
        manage_ticks=False,
        medianprops={"color": "black"},
        flierprops={"markersize": 3, "alpha": 0.5},
    )
    for ax, data, color in ((left, conf_data, "#4c72b0"), (right, vote_data, "#dd8452")):
        shown = [i for i, d in enumerate(data) if len(d)]  # a genre without known evidence gets no box
        if shown:
            boxes = ax.boxplot([data[i] for i in shown], positions=positions[shown], **style)
            for patch in boxes["boxes"]:
                patch.set_facecolor(color)
                patch.set_alpha(0.6)
        ax.set_yticks(positions, [f"{g} (n={len(d)})" for g, d in zip(genres, conf_data)])
        ax.set_ylim(len(genres) - 0.5, -0.5)  # first genre on top
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


def samples_name(split: str) -> str:
    """plots/samples.jpg for train (the card shows it), plots/samples-<split>.jpg for the other splits."""
    return SAMPLES if split == SPLITS[0] else f"samples-{split}.jpg"


def pick_samples(
    items: pd.DataFrame, genres: list[str], split: str, per_genre: int = SAMPLES_PER_GENRE, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Pure: per genre (in `genres` order) up to `per_genre` rows of `split`, drawn with `seed`.

    Rows are put in sha256 order before drawing, so the same items and seed give the same covers whatever
    order the frame came in.
    """
    rng = np.random.default_rng(seed)
    picked = {}
    for genre in genres:
        mine = items[(items["split"] == split) & (items["genre"] == genre)].sort_values("sha256")
        take = rng.choice(len(mine), size=min(per_genre, len(mine)), replace=False) if len(mine) else []
        picked[genre] = mine.iloc[np.sort(np.asarray(take, dtype=int))]
    return picked


def write_contact_sheet(
    path: Path,
    items: pd.DataFrame,
    genres: list[str],
    load_image: Callable[[object], bytes],
    split: str = "train",
    per_genre: int = SAMPLES_PER_GENRE,
    seed: int = 0,
    tile: int = SAMPLE_TILE,
) -> None:
    """A JPEG grid: one row per genre (its name and count on the left), up to `per_genre` of its covers from
    `split`, each centre-cropped to a `tile` px square; seeded, so the same dataset gives the same bytes.

    `load_image(row)` returns a row's image bytes (the split verb's loader checks them against their sha256).
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    picked = pick_samples(items, genres, split, per_genre, seed)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    label_w, pad, title_h = 190, 4, 30
    width = label_w + per_genre * (tile + pad) + pad
    height = title_h + len(genres) * (tile + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    n_split = int((items["split"] == split).sum())
    draw.text(
        (pad, 8),
        f"{split}: {per_genre} covers per genre, seed {seed} ({n_split} covers in {split})",
        fill="black",
        font=font,
    )
    for r, genre in enumerate(genres):
        y = title_h + r * (tile + pad)
        rows = picked[genre]
        total = int(((items["split"] == split) & (items["genre"] == genre)).sum())
        name = one_line(genre)
        name = name if len(name) <= 22 else name[:21] + "…"
        draw.text((pad, y + tile // 2 - 16), name, fill="black", font=font)
        draw.text((pad, y + tile // 2 + 2), f"{total} in {split}", fill="#555555", font=font)
        for c, row in enumerate(rows.itertuples(index=False)):
            with Image.open(io.BytesIO(load_image(row))) as im:
                im.draft("RGB", (tile, tile))  # JPEG: decode at a reduced scale, the tile is small
                cover = ImageOps.fit(im.convert("RGB"), (tile, tile), Image.Resampling.BILINEAR)
            sheet.paste(cover, (label_w + pad + c * (tile + pad), y))
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=85, optimize=True)
    write_atomic(path, buf.getvalue())


CROISSANT_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "equivalentProperty": "cr:equivalentProperty",
    "samplingRate": "cr:samplingRate",
}
_CROISSANT_TYPES = {"string": "sc:Text", "int32": "sc:Integer", "int64": "sc:Integer", "float32": "sc:Float"}


def write_croissant(out: Path, items: pd.DataFrame, genres: list[str]) -> None:
    """croissant.json: each shard as a FileObject (sha256), one FileSet over them, and a RecordSet."""
    shards = [p for paths in shard_files(out).values() for p in paths]
    distribution: list[dict] = [
        {
            "@type": "cr:FileObject",
            "@id": p.name,
            "name": p.name,
            "contentUrl": f"{DATA_DIR}/{p.name}",
            "encodingFormat": "application/x-parquet",
            "contentSize": f"{p.stat().st_size} B",
            "sha256": sha256_file(p),
        }
        for p in shards
    ]
    distribution.append(
        {
            "@type": "cr:FileSet",
            "@id": "parquet-shards",
            "name": "parquet-shards",
            "description": "All Parquet shards of all splits.",
            "encodingFormat": "application/x-parquet",
            "includes": f"{DATA_DIR}/*.parquet",
        }
    )

    def field(name: str, data_type: str, description: str, **source) -> dict:
        return {
            "@type": "cr:Field",
            "@id": f"covers/{name}",
            "name": name,
            "description": description,
            "dataType": data_type,
            "source": {"fileSet": {"@id": "parquet-shards"}, **source},
        }

    features = hf_features(genres)
    fields = [
        field(
            "image",
            "sc:ImageObject",
            COLUMNS["image"].description,
            extract={"column": "image"},
            transform={"jsonPath": "bytes"},
        ),
        field(
            "label",
            "sc:Integer",
            "Genre label id: " + ", ".join(f"{i}={g}" for i, g in enumerate(genres)) + ".",
            extract={"column": "label"},
        ),
        field(
            "split",
            "sc:Text",
            "train, validation or test (from the shard file name).",
            extract={"fileProperty": "filename"},
            transform={"regex": "^(train|validation|test)-.*\\.parquet$"},
        ),
    ]
    fields += [
        field(name, _CROISSANT_TYPES[features[name]["dtype"]], COLUMNS[name].description, extract={"column": name})
        for name in METADATA_COLUMNS
        if name != "label"
    ]
    metadata = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": "equigen-album-covers",
        "description": (
            f"{len(items)} album front covers in {len(genres)} genres, balanced and split by artist and "
            "near-duplicate cluster (no leakage across train/validation/test)."
        ),
        "license": "https://creativecommons.org/publicdomain/zero/1.0/",
        "url": "https://musicbrainz.org/",
        "version": __version__,
        "citeAs": "EquiGen album covers by genre (citation to be added)",
        "keywords": ["album covers", "music genre", "image classification", "MusicBrainz", "Cover Art Archive"],
        "isAccessibleForFree": True,
        "creditText": (
            "Metadata CC0 from MusicBrainz; genre labels derived from MusicBrainz tags (CC BY-NC-SA 3.0). "
            "Cover images are copyrighted by their owners and are "
            "included for non-commercial research only; the licence above covers the metadata only."
        ),
        "distribution": distribution,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "covers",
                "name": "covers",
                "description": "One record per album cover.",
                "field": fields,
            }
        ],
    }
    write_atomic(out / "croissant.json", json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
