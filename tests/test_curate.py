"""The dedup and balance verbs on a real harvested catalog (simulator world fetched over sockets)."""

from __future__ import annotations

import io
import json
import sqlite3

import pandas as pd
import pytest
from helpers import HARVEST_PER_GENRE, quiet_console
from PIL import Image
from rich.console import Console

from equigen.core.catalog import Catalog
from equigen.core.config import load_settings
from equigen.core.errors import EquigenError
from equigen.core.options import BalanceOptions, DedupOptions
from equigen.curate.balance import run_balance
from equigen.curate.dedup import run_dedup


def selection_count(settings) -> int:
    with sqlite3.connect(settings.catalog_path) as con:
        return con.execute("SELECT COUNT(*) FROM selection").fetchone()[0]


def test_dedup_then_balance(harvest_copy, harvest_sim):
    settings = harvest_copy
    report = run_dedup(settings, console=quiet_console())
    reports = settings.data_dir / "reports"
    assert json.loads((reports / "dedup.json").read_text()) == report
    with Image.open(reports / "dedup_pairs.png") as sheet:
        assert sheet.width > 800
    with Catalog(settings.catalog_path) as catalog:
        covers, clusters = catalog.covers_frame("ok"), catalog.clusters_frame()
    assert len(clusters) == len(covers) == report["covers"]
    assert clusters.groupby("cluster_id")["is_canonical"].sum().eq(1).all()

    # Every planted copy that was harvested together with its source lands in the source's cluster.
    cluster_of = clusters.set_index("mbid")["cluster_id"]
    planted = [
        d for d in harvest_sim.world.truth()["duplicates"] if d["mbid"] in cluster_of and d["source_mbid"] in cluster_of
    ]
    assert planted, "the harvest should contain planted duplicates"
    joined = sum(cluster_of[d["mbid"]] == cluster_of[d["source_mbid"]] for d in planted)
    assert joined / len(planted) >= 0.9
    assert report["items_dropped"] >= joined

    result = run_balance(settings, BalanceOptions(per_genre=4, seed=1), console=quiet_console())
    assert result["stored"] and not result["short_genres"]
    assert result["min_confidence"] == 0.0
    assert json.loads((reports / "balance.json").read_text())["min_confidence"] == 0.0
    with Catalog(settings.catalog_path) as catalog:
        selection = catalog.selection_frame()
    assert selection["is_canonical"].all()
    assert selection.groupby("genre").size().eq(4).all()
    assert (reports / "balance.png").is_file() and (reports / "balance.json").is_file()

    # Same seed, same selection; a shortfall fails and leaves the stored selection alone.
    run_balance(settings, BalanceOptions(per_genre=4, seed=1), console=quiet_console())
    with Catalog(settings.catalog_path) as catalog:
        pd.testing.assert_frame_equal(catalog.selection_frame(), selection)
    with pytest.raises(EquigenError, match="--allow-short"):
        run_balance(settings, BalanceOptions(per_genre=500, seed=1), console=quiet_console())
    assert selection_count(settings) == len(selection)
    short = run_balance(settings, BalanceOptions(per_genre=500, seed=1, allow_short=True), console=quiet_console())
    assert short["stored"] and short["short_genres"]
    assert selection_count(settings) == sum(row["selected"] for row in short["genres"])

    # --min-confidence: only covers at least that certain are eligible, and the report says so.
    strict = run_balance(
        settings, BalanceOptions(per_genre=500, seed=1, allow_short=True, min_confidence=0.9), console=quiet_console()
    )
    assert strict["min_confidence"] == 0.9
    with Catalog(settings.catalog_path) as catalog:
        chosen = catalog.selection_frame()
    assert len(chosen) and (chosen["label_confidence"] >= 0.9).all()
    assert sum(row["selected"] for row in strict["genres"]) == len(chosen)
    with pytest.raises(EquigenError, match="--min-confidence must be between 0 and 1"):
        run_balance(settings, BalanceOptions(per_genre=4, seed=1, min_confidence=1.5), console=quiet_console())

    # A new dedup clears the selection (clusters changed).
    run_dedup(settings, DedupOptions(threshold=0), console=quiet_console())
    assert selection_count(settings) == 0


def test_balance_needs_dedup(harvest_copy):
    with pytest.raises(EquigenError, match="run `equigen dedup` first"):
        run_balance(harvest_copy, BalanceOptions(per_genre=4), console=quiet_console())


def test_missing_or_empty_catalog(tmp_path):
    settings = load_settings(data_dir=tmp_path / "nothing-here")
    with pytest.raises(EquigenError, match="run `equigen fetch` first"):
        run_dedup(settings, console=quiet_console())
    with pytest.raises(EquigenError, match="run `equigen fetch` first"):
        run_balance(settings, console=quiet_console())
    assert not settings.catalog_path.exists()
    Catalog(settings.catalog_path).close()
    with pytest.raises(EquigenError, match="run `equigen fetch` first"):
        run_dedup(settings, console=quiet_console())


def test_bad_threshold(harvest_copy):
    with pytest.raises(EquigenError, match="--threshold"):
        run_dedup(harvest_copy, DedupOptions(threshold=65), console=quiet_console())


def test_fetch_counts_what_dedup_and_balance_find(harvest_copy, harvest_stats):
    """The harvest's world plants near-duplicates (15 %, half of them the same artist's reissues): fetch's usable
    count per genre is exactly what balance finds after dedup, so one fetch always balances."""
    settings = harvest_copy
    run_dedup(settings, console=quiet_console())
    report = run_balance(settings, BalanceOptions(per_genre=HARVEST_PER_GENRE, seed=0), console=quiet_console())
    assert report["stored"] and not report["short_genres"]
    genres = {row["genre"]: row for row in report["genres"]}
    assert {g: row["usable"] for g, row in genres.items()} == harvest_stats.usable
    assert {g: row["duplicates"] for g, row in genres.items()} == harvest_stats.duplicates
    assert {g: row["over_cap"] for g, row in genres.items()} == harvest_stats.over_cap
    assert sum(harvest_stats.duplicates.values()) > 0, "the harvest should hold duplicates fetch did not count"


def test_a_shortfall_says_what_duplicates_confidence_and_the_cap_took(harvest_copy):
    settings = harvest_copy
    run_dedup(settings, console=quiet_console())
    console = Console(file=io.StringIO(), width=300)
    with pytest.raises(EquigenError, match="cannot reach 500 covers"):
        run_balance(settings, BalanceOptions(per_genre=500, artist_cap=1, min_confidence=0.5), console=console)
    lines = [line for line in console.file.getvalue().splitlines() if line.startswith("short:")]
    assert len(lines) == 15
    report = json.loads((settings.data_dir / "reports" / "balance.json").read_text())
    for row in report["genres"]:
        assert row["covers"] == row["duplicates"] + row["below_confidence"] + row["eligible"]
        assert row["eligible"] == row["over_cap"] + row["usable"]
        line = next(line for line in lines if line.startswith(f"short: {row['genre']}:"))
        assert (
            f"{row['usable']} usable of {row['covers']} ok covers, short by {row['shortfall']}; lost "
            f"{row['duplicates']} to duplicates (dedup keeps one cover per cluster), {row['below_confidence']} to "
            f"--min-confidence 0.5, {row['over_cap']} to the artist cap of 1"
        ) in line
