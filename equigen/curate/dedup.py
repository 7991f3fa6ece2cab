"""The `dedup` verb: the catalog's covers clustered by pHash distance, each cover's cluster recorded in the catalog,
and reports (dedup.json, a sheet of example pairs) out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from equigen.core.catalog import Catalog
from equigen.core.config import Settings
from equigen.core.dedup_rules import dedup_rows, hashes_from_hex, popcount
from equigen.core.errors import EquigenError
from equigen.core.lock import data_folder_lock
from equigen.core.options import DedupOptions
from equigen.curate.reports import reports_dir, write_json

MAX_LISTED_CLUSTERS = 20
SHEET_PAIRS = 12


def _distance(a: pd.Series, b: pd.Series) -> np.ndarray:
    return popcount(hashes_from_hex(a.tolist()) ^ hashes_from_hex(b.tolist())).astype(int)


def _member_pairs(covers: pd.DataFrame) -> pd.DataFrame:
    """Each non-canonical cluster member with its canonical cover: the pairs the report shows."""
    members = covers[covers["cluster_size"] > 1]
    canon = members[members["is_canonical"]].set_index("cluster_id")
    others = members[~members["is_canonical"]]
    pairs = pd.DataFrame(
        {
            "cluster_id": others["cluster_id"].to_numpy(),
            "a": canon.loc[others["cluster_id"], "mbid"].to_numpy(),
            "b": others["mbid"].to_numpy(),
            "exact": canon.loc[others["cluster_id"], "sha256"].to_numpy() == others["sha256"].to_numpy(),
            "distance": _distance(canon.loc[others["cluster_id"], "phash"], others["phash"]),
        }
    )
    return pairs.sort_values(["distance", "cluster_id", "b"], ignore_index=True)


def _sheet_examples(pairs: pd.DataFrame, k: int = SHEET_PAIRS) -> pd.DataFrame:
    """Up to k pairs covering every distance seen, largest first (the ones near the threshold test it)."""
    order = pairs.assign(turn=pairs.groupby("distance").cumcount()).sort_values(
        ["turn", "distance"], ascending=[True, False], kind="stable"
    )
    return order.head(k).sort_values(["distance", "cluster_id"]).drop(columns="turn")


def _thumb(data_dir: Path, path: str | None, side: int = 240):
    from PIL import Image

    try:
        with Image.open(data_dir / str(path)) as image:
            image.draft("RGB", (side, side))
            thumb = image.convert("RGB")
            thumb.thumbnail((side, side))
            return thumb
    except (OSError, ValueError):
        return Image.new("RGB", (side, side), (200, 200, 200))  # file gone: a grey box keeps the sheet


def write_pairs_sheet(path: Path, data_dir: Path, covers: pd.DataFrame, examples: pd.DataFrame, threshold: int) -> None:
    """A PNG of duplicate pairs side by side (canonical left), captioned with distance and genres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    by_mbid = covers.set_index("mbid")
    cols = 3
    rows = max(1, -(-len(examples) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.6, rows * 3.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pair in zip(axes.flat, examples.itertuples(index=False)):
        a, b = by_mbid.loc[pair.a], by_mbid.loc[pair.b]
        left, right = _thumb(data_dir, a["path"]), _thumb(data_dir, b["path"])
        canvas = Image.new("RGB", (left.width + right.width + 12, max(left.height, right.height)), (255, 255, 255))
        canvas.paste(left, (0, 0))
        canvas.paste(right, (left.width + 12, 0))
        ax.imshow(canvas)
        kind = "exact copy (same sha256)" if pair.exact else f"pHash distance {pair.distance}"
        ax.set_title(kind, fontsize=11, fontweight="bold")
        genres = f"{a['genre']}  |  {b['genre']}"
        size = f"{a['width']}x{a['height']}  |  {b['width']}x{b['height']}"
        colour = "firebrick" if a["genre"] != b["genre"] else "black"
        ax.text(
            0.5, -0.04, f"{genres}\n{size}", transform=ax.transAxes, ha="center", va="top", fontsize=9, color=colour
        )
    if examples.empty:
        axes[0, 0].text(0.5, 0.5, "no duplicates found", ha="center", va="center", fontsize=14)
    fig.suptitle(f"Duplicate pairs (threshold {threshold}): canonical cover left, dropped copy right", fontsize=13)
    fig.tight_layout(h_pad=3.5)  # room for the two caption lines under each pair
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dedup_report(covers: pd.DataFrame, threshold: int) -> dict:
    """Counts and the largest clusters; `covers` is covers_frame joined with dedup_rows' output."""
    multi = covers[covers["cluster_size"] > 1]
    one_sha = multi.groupby("cluster_id")["sha256"].nunique() == 1
    conflicts = multi.groupby("cluster_id")["conflict"].first()
    sizes = multi.groupby("cluster_id").size().sort_values(ascending=False, kind="stable")
    largest = []
    for cid in sizes.index[:MAX_LISTED_CLUSTERS]:
        members = multi[multi["cluster_id"] == cid].sort_values(["is_canonical", "mbid"], ascending=[False, True])
        largest.append(
            {
                "cluster_id": int(cid),
                "size": int(sizes[cid]),
                "exact": bool(one_sha[cid]),
                "conflict": bool(conflicts[cid]),
                "members": [
                    {
                        "mbid": m.mbid,
                        "genre": m.genre,
                        "artist": m.artist_name,
                        "title": m.title,
                        "width": int(m.width),
                        "height": int(m.height),
                        "canonical": bool(m.is_canonical),
                    }
                    for m in members.itertuples(index=False)
                ],
            }
        )
    return {
        "threshold": threshold,
        "covers": len(covers),
        "clusters": int(covers["cluster_id"].nunique()),
        "duplicate_clusters": len(sizes),
        "exact_duplicate_clusters": int(one_sha.sum()),  # every member has the same bytes
        "near_duplicate_clusters": int((~one_sha).sum()),  # at least two members differ in bytes
        "items_in_clusters": len(multi),
        "items_dropped": int(len(multi) - len(sizes)),  # non-canonical members
        "label_conflicts": int(conflicts.sum()),
        "largest_clusters": largest,
    }


def run_dedup(settings: Settings, options: DedupOptions | None = None, console: Console | None = None) -> dict:
    """Cluster the ok covers, store the clusters (clearing any selection), write reports/dedup.{json,png}.

    The data folder is locked (see lock.py): one writer per folder; the options were checked when built.
    """
    options = options or DedupOptions()
    with data_folder_lock(settings.data_dir, "dedup", create=False):
        return _dedup(settings, options.threshold, console or Console(stderr=True))


def _dedup(settings: Settings, threshold: int, console: Console) -> dict:
    with Catalog.existing(settings.catalog_path) as catalog:
        covers = catalog.covers_frame("ok")
        if covers.empty:
            raise EquigenError(
                f"the catalog in {settings.data_dir} holds no downloaded covers: run `equigen fetch` first"
            )
        clusters = dedup_rows(covers, threshold)
        catalog.replace_clusters(clusters)
        catalog.set_meta("dedup_threshold", str(threshold))
    covers = covers.merge(clusters, on="mbid", validate="one_to_one")
    report = dedup_report(covers, threshold)
    reports = reports_dir(settings)
    write_json(reports / "dedup.json", report)
    pairs = _member_pairs(covers)
    write_pairs_sheet(reports / "dedup_pairs.png", settings.data_dir, covers, _sheet_examples(pairs), threshold)

    table = Table(title=f"dedup (pHash distance <= {threshold})")
    table.add_column("")
    table.add_column("count", justify="right")
    for label, key in [
        ("covers", "covers"),
        ("duplicate clusters", "duplicate_clusters"),
        ("  exact (same bytes)", "exact_duplicate_clusters"),
        ("  near", "near_duplicate_clusters"),
        ("covers in clusters", "items_in_clusters"),
        ("dropped (non-canonical)", "items_dropped"),
        ("clusters with a label conflict", "label_conflicts"),
    ]:
        table.add_row(label, str(report[key]))
    console.print(table)
    console.print(f"reports: {reports / 'dedup.json'}, {reports / 'dedup_pairs.png'}")
    return report
