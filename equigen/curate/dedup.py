"""The `dedup` and `balance` verbs: catalog in, catalog + reports (JSON, PNG) out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from equigen.core.balance_rules import BalanceResult, check_balance_options, select_balanced
from equigen.core.catalog import Catalog
from equigen.core.config import Settings
from equigen.core.dedup_rules import DEFAULT_THRESHOLD, dedup_rows, hashes_from_hex, popcount
from equigen.core.defaults import DEFAULT_PER_GENRE, MAX_SEED
from equigen.core.errors import EquigenError, check_number, inert
from equigen.core.lock import data_folder_lock
from equigen.core.storage import write_atomic

MAX_LISTED_CLUSTERS = 20
SHEET_PAIRS = 12


def _reports_dir(settings: Settings) -> Path:
    path = settings.data_dir / "reports"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EquigenError(f"cannot create {path}: {exc.strerror or exc}") from None
    return path


def _write_json(path: Path, payload: dict) -> None:
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


# --- dedup ----------------------------------------------------------------------------------


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


def run_dedup(settings: Settings, threshold: int | None = None, console: Console | None = None) -> dict:
    """Dedup with the data folder locked (see lock.py): one writer per folder; arguments checked first."""
    if threshold is not None:
        check_number("--threshold (bits)", threshold, 0, 64, integer=True)
    with data_folder_lock(settings.data_dir, "dedup", create=False):
        return _run_dedup_unlocked(settings, threshold=threshold, console=console)


def _run_dedup_unlocked(settings: Settings, threshold: int | None = None, console: Console | None = None) -> dict:
    """Cluster the ok covers, store the clusters (clearing any selection), write reports/dedup.{json,png}."""
    console = console or Console(stderr=True)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    if not 0 <= threshold <= 64:
        raise EquigenError(f"--threshold must be between 0 and 64 bits, got {threshold}")
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
    reports = _reports_dir(settings)
    _write_json(reports / "dedup.json", report)
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


# --- balance --------------------------------------------------------------------------------


def _balance_genres(catalog: Catalog, settings: Settings) -> list[str]:
    """The genres that were fetched (taxonomy order); all taxonomy genres when none were searched (manifest)."""
    taxonomy = catalog.taxonomy(settings.taxonomy_path)
    searched = set(catalog.discovery_progress()["genre"])
    return [g for g in taxonomy.genres if g in searched] or list(taxonomy.genres)


def write_balance_plot(path: Path, result: BalanceResult) -> None:
    """Grouped bars per genre: eligible canonical covers before, selected after, and the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(7.0, 0.75 * len(table) + 2), 4.8))
    eligible = "eligible (canonical, labelled" + (
        f", confidence >= {result.min_confidence:g})" if result.min_confidence > 0 else ")"
    )
    ax.bar(x - 0.2, table["eligible"], 0.4, label=eligible, color="#9bb7d4")
    ax.bar(x + 0.2, table["selected"], 0.4, label="selected", color="#1f4e79")
    ax.axhline(result.per_genre, color="firebrick", linestyle="--", linewidth=1.2, label=f"target {result.per_genre}")
    for xi, row in zip(x, table.itertuples(index=False)):
        if row.shortfall > 0:
            ax.annotate(
                f"-{row.shortfall}", (xi + 0.2, row.selected), ha="center", va="bottom", fontsize=8, color="firebrick"
            )
    ax.set_xticks(x, table["genre"], rotation=35, ha="right")
    ax.set_xlabel("genre")
    ax.set_ylabel("covers")
    ax.set_title(f"Balance: {result.per_genre} per genre, artist cap {result.artist_cap}, seed {result.seed}")
    top = max(int(table["eligible"].max()) if len(table) else 0, result.per_genre)
    ax.set_ylim(0, 1.25 * top)  # headroom for the legend
    ax.legend(loc="upper right", ncol=3, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _balance_table(result: BalanceResult) -> Table:
    table = Table(title=f"balance: {result.per_genre} per genre, artist cap {result.artist_cap}, seed {result.seed}")
    columns = {
        "genre": "genre",
        "ok covers": "covers",
        "duplicates": "duplicates",
        "below confidence": "below_confidence",
        "eligible": "eligible",
        "over cap": "over_cap",
        "usable under cap": "usable",
        "selected": "selected",
    }
    if result.min_confidence <= 0:
        del columns["below confidence"]
    for column in [*columns, "short"]:
        table.add_column(column, justify="left" if column == "genre" else "right")
    for row in result.table.to_dict(orient="records"):
        short = f"[red]{row['shortfall']}[/red]" if row["shortfall"] > 0 else ""
        table.add_row(*[inert(row[key]) if key == "genre" else str(row[key]) for key in columns.values()], short)
    return table


def shortfall_lines(result: BalanceResult) -> list[str]:
    """Per short genre: what it has, and what duplicates, confidence and the artist cap took from its ok covers."""
    lines = []
    for row in result.table[result.table["shortfall"] > 0].itertuples(index=False):
        lost = [f"{row.duplicates} to duplicates (dedup keeps one cover per cluster)"]
        if result.min_confidence > 0:
            lost.append(f"{row.below_confidence} to --min-confidence {result.min_confidence:g}")
        lost.append(f"{row.over_cap} to the artist cap of {result.artist_cap}")
        lines.append(
            f"{row.genre}: {row.usable} usable of {row.covers} ok covers, short by {row.shortfall}; "
            f"lost {', '.join(lost)}"
        )
    return lines


def run_balance(
    settings: Settings,
    per_genre: int = DEFAULT_PER_GENRE,
    seed: int = 0,
    artist_cap: int | None = None,
    allow_short: bool = False,
    min_confidence: float = 0.0,
    console: Console | None = None,
) -> dict:
    """Balance with the data folder locked (see lock.py): one writer per folder; arguments checked first."""
    check_balance_options(per_genre, artist_cap, min_confidence)
    check_number("--seed", seed, 0, MAX_SEED, integer=True)
    with data_folder_lock(settings.data_dir, "balance", create=False):
        return _run_balance_unlocked(
            settings,
            per_genre=per_genre,
            seed=seed,
            artist_cap=artist_cap,
            allow_short=allow_short,
            min_confidence=min_confidence,
            console=console,
        )


def _run_balance_unlocked(
    settings: Settings,
    per_genre: int = DEFAULT_PER_GENRE,
    seed: int = 0,
    artist_cap: int | None = None,
    allow_short: bool = False,
    min_confidence: float = 0.0,
    console: Console | None = None,
) -> dict:
    """Select per_genre canonical covers per fetched genre and store the selection.

    A genre that cannot reach per_genre fails the run (catalog untouched) unless allow_short:
    then short genres keep all their usable covers. Writes reports/balance.{json,png} either way.
    min_confidence > 0: only covers whose label_confidence is at least that are eligible.
    """
    console = console or Console(stderr=True)
    check_balance_options(per_genre, artist_cap, min_confidence)
    with Catalog.existing(settings.catalog_path) as catalog:
        clusters = catalog.clusters_frame()
        if clusters.empty:
            raise EquigenError(
                f"the catalog in {settings.data_dir} has no duplicate clusters: run `equigen dedup` first"
            )
        covers = catalog.covers_frame("ok")
        stale = len(set(covers["mbid"]) - set(clusters["mbid"]))
        if stale:
            raise EquigenError(f"{stale} covers were fetched after the last dedup: run `equigen dedup` again")
        genres = _balance_genres(catalog, settings)
        rows = covers.merge(clusters, on="mbid", validate="one_to_one")
        result = select_balanced(rows, genres, per_genre, seed, artist_cap, min_confidence=min_confidence)
        short = result.short_genres()

        reports = _reports_dir(settings)
        report = {
            "per_genre": per_genre,
            "seed": seed,
            "artist_cap": result.artist_cap,
            "min_confidence": result.min_confidence,
            "allow_short": allow_short,
            "stored": not short or allow_short,
            "short_genres": short,
            "below_min_confidence": result.below_confidence,
            "genres": result.table.to_dict(orient="records"),
        }
        _write_json(reports / "balance.json", report)
        write_balance_plot(reports / "balance.png", result)
        console.print(_balance_table(result))
        if result.min_confidence > 0:
            console.print(
                f"--min-confidence {result.min_confidence:g}: {sum(result.below_confidence.values())} "
                "canonical covers with lower or unknown label confidence were not eligible"
            )
        if short:
            for line in shortfall_lines(result):
                console.print(f"[yellow]short:[/] {escape(line)}", highlight=False)
        if short and not allow_short:
            lower = ", lower --min-confidence" if result.min_confidence > 0 else ""
            raise EquigenError(
                f"{len(short)} genre(s) cannot reach {per_genre} covers ({', '.join(short)}; the 'short:' lines "
                f"above say what duplicates, confidence and the artist cap took): fetch more, lower --per-genre, "
                f"raise --artist-cap{lower}, or pass --allow-short to keep them short"
            )
        catalog.replace_selection(result.selected)
        catalog.set_meta("selection_source", "balance")
        catalog.set_meta(
            "balance", json.dumps({k: report[k] for k in ("per_genre", "seed", "artist_cap", "min_confidence")})
        )
    console.print(
        f"selected {len(result.selected)} covers; reports: {reports / 'balance.json'}, {reports / 'balance.png'}"
    )
    return report
