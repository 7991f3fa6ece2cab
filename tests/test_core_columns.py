"""Each pure core states the columns it reads and names the missing ones (a ValueError, not a KeyError later)."""

from __future__ import annotations

import pandas as pd
import pytest

from equigen.core.balance_rules import select_balanced
from equigen.core.dedup_rules import DEDUP_COLUMNS, dedup_rows
from equigen.harvest.planning import USABLE_COLUMNS, RoundSelector, usable_by_genre
from equigen.publish.split_rules import group_ids


def _frame(columns) -> pd.DataFrame:
    return pd.DataFrame({c: ["x"] for c in columns})


@pytest.mark.parametrize("dropped", DEDUP_COLUMNS)
def test_dedup_names_a_missing_column(dropped):
    with pytest.raises(ValueError, match=f"dedup_rows needs columns \\['{dropped}'\\]"):
        dedup_rows(_frame([c for c in DEDUP_COLUMNS if c != dropped]), threshold=4)


@pytest.mark.parametrize("dropped", USABLE_COLUMNS)
def test_planning_names_a_missing_column(dropped):
    rows = _frame([c for c in USABLE_COLUMNS if c != dropped])
    with pytest.raises(ValueError, match=f"usable_by_genre needs columns \\['{dropped}'\\]"):
        usable_by_genre(rows, ["Jazz"], artist_cap=2)
    with pytest.raises(ValueError, match=f"RoundSelector.start needs columns .*'{dropped}'"):
        RoundSelector.start(rows.assign(planned_round=None), 1, {"Jazz": 1}, artist_cap=2)


def test_planning_needs_planned_round():
    with pytest.raises(ValueError, match="\\['planned_round'\\]"):
        RoundSelector.start(_frame(USABLE_COLUMNS), 1, {"Jazz": 1}, artist_cap=2)


def test_balance_names_missing_columns():
    with pytest.raises(ValueError, match="\\['is_canonical'\\]"):
        select_balanced(_frame(["mbid", "genre", "artist_mbid"]), ["Jazz"], per_genre=1, seed=0)


def test_split_names_missing_columns():
    with pytest.raises(ValueError, match="artist_mbid"):
        group_ids(_frame(["mbid", "genre"]))
