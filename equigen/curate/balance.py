"""The `balance` verb: exactly N covers per genre from the deduplicated catalog, recorded as the catalog's
selection, and reports (JSON, plot) out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from equigen.core.balance_rules import BalanceResult, select_balanced
from equigen.core.catalog import Catalog
from equigen.core.config import Settings
from equigen.core.errors import EquigenError, inert
from equigen.core.lock import data_folder_lock
from equigen.core.options import BalanceOptions
from equigen.curate.reports import reports_dir, write_json


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


def run_balance(settings: Settings, options: BalanceOptions | None = None, console: Console | None = None) -> dict:
    """Select options.per_genre canonical covers per fetched genre and store the selection.

    A genre that cannot reach per_genre fails the run (catalog untouched) unless allow_short:
    then short genres keep all their usable covers. Writes reports/balance.{json,png} either way.
    min_confidence > 0: only covers whose label_confidence is at least that are eligible.
    The data folder is locked (see lock.py): one writer per folder; the options were checked when built.
    """
    options = options or BalanceOptions()
    with data_folder_lock(settings.data_dir, "balance", create=False):
        return _balance(settings, options, console or Console(stderr=True))


def _balance(settings: Settings, options: BalanceOptions, console: Console) -> dict:
    per_genre, seed, allow_short = options.per_genre, options.seed, options.allow_short
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
        result = select_balanced(
            rows, genres, per_genre, seed, options.artist_cap, min_confidence=options.min_confidence
        )
        short = result.short_genres()

        reports = reports_dir(settings)
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
        write_json(reports / "balance.json", report)
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
