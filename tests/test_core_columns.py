"""Columns as behaviour: each pure core refuses an input that lacks a column it reads (naming it), and what
publish writes carries exactly the published schema's columns, read back and checked against it."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import assert_one_line_error, run_cli

from equigen.core.balance_rules import select_balanced
from equigen.core.dedup_rules import dedup_rows
from equigen.core.errors import EquigenError
from equigen.core.manifest import read_manifest, write_manifest
from equigen.core.schema import COLUMNS, MANIFEST_COLUMNS, SHARD_COLUMNS
from equigen.harvest.planning import RoundSelector, usable_by_genre
from equigen.publish import shards
from equigen.publish.split_rules import group_ids

MBIDS = ("0f2d43ea-5d5c-4c7a-8a54-1cd6d1d4e4a1", "5b1c4f1e-8f0e-4d3a-9d7e-2a6c0b3e9f10")


def _covers() -> pd.DataFrame:
    """Two ok Jazz covers by two artists, as the catalog gives them to the pure cores."""
    return pd.DataFrame(
        {
            "mbid": list(MBIDS),
            "genre": ["Jazz", "Jazz"],
            "artist_mbid": ["a1", "a2"],
            "status": ["ok", "ok"],
            "sha256": ["1" * 64, "2" * 64],
            "phash": ["0" * 16, "f" * 16],
            "width": [500, 500],
            "height": [500, 500],
            "first_release_date": ["1999", "2001"],
            "label_confidence": [1.0, 1.0],
            "seq": [1, 2],
        }
    )


def test_dedup_names_each_missing_column_of_an_input_it_accepts():
    rows = _covers()
    assert len(dedup_rows(rows, threshold=4)) == 2  # the whole frame is accepted
    needed = [c for c in rows if not _accepts(lambda r: dedup_rows(r, threshold=4), rows.drop(columns=c))]
    assert needed  # some columns are read
    for column in needed:
        with pytest.raises(ValueError, match=f"dedup_rows needs columns \\['{column}'\\]"):
            dedup_rows(rows.drop(columns=column), threshold=4)


def test_planning_names_each_missing_column_of_an_input_it_accepts():
    rows = _covers()
    assert usable_by_genre(rows, ["Jazz"], artist_cap=2) == {"Jazz": 2}
    needed = [
        c for c in rows if not _accepts(lambda r: usable_by_genre(r, ["Jazz"], artist_cap=2), rows.drop(columns=c))
    ]
    assert "mbid" in needed and "phash" in needed
    for column in needed:
        with pytest.raises(ValueError, match=f"usable_by_genre needs columns \\['{column}'\\]"):
            usable_by_genre(rows.drop(columns=column), ["Jazz"], artist_cap=2)
        with pytest.raises(ValueError, match=f"RoundSelector.start needs columns .*'{column}'"):
            RoundSelector.start(rows.drop(columns=column).assign(planned_round=None), 1, {"Jazz": 1}, artist_cap=2)


def _accepts(call, rows) -> bool:
    try:
        call(rows)
    except ValueError as exc:
        if "needs columns" in str(exc):
            return False
        raise
    return True


def test_planning_needs_planned_round():
    with pytest.raises(ValueError, match="\\['planned_round'\\]"):
        RoundSelector.start(_covers(), 1, {"Jazz": 1}, artist_cap=2)


def test_balance_names_missing_columns():
    with pytest.raises(ValueError, match="\\['is_canonical'\\]"):
        select_balanced(_covers(), ["Jazz"], per_genre=1, seed=0)


def test_split_names_missing_columns():
    with pytest.raises(ValueError, match="artist_mbid"):
        group_ids(_covers().drop(columns="artist_mbid"))


def _items(n: int = 2) -> pd.DataFrame:
    """Published items as split.dataset_items makes them."""
    covers = _covers().head(n)
    return pd.DataFrame(
        {
            "split": ["train"] * n,
            "label": [0] * n,
            "genre": covers["genre"],
            "label_votes": pd.array([3] * n, dtype="Int32"),
            "label_confidence": pd.array([1.0] * n, dtype="Float32"),
            "release_group_mbid": covers["mbid"],
            "artist_mbid": covers["artist_mbid"],
            "artist_name": ["A", "B"][:n],
            "title": ["T", "U"][:n],
            "year": pd.array([1999, None][:n], dtype="Int32"),
            "phash": covers["phash"],
            "sha256": covers["sha256"],
            "width": pd.array([500] * n, dtype="Int32"),
            "height": pd.array([500] * n, dtype="Int32"),
            "ext": ["jpg"] * n,
            "path": ["x.jpg"] * n,
            "source_url": ["https://coverartarchive.org/x"] * n,
        }
    )


def test_a_shard_written_and_read_back_carries_exactly_the_schema_columns(tmp_path):
    paths, _ = shards.write_split(tmp_path, "train", _items(), lambda row: b"jpeg", ["Jazz"], shard_rows=10)
    schema = shards.read_schema(paths[0])
    assert schema.names == list(SHARD_COLUMNS)
    assert [schema.field(n).type for n in SHARD_COLUMNS] == [COLUMNS[n].type for n in SHARD_COLUMNS]
    assert shards.schema_problems(schema) == []
    assert shards.class_names(schema) == ["Jazz"]


def test_a_shard_with_a_column_of_another_type_is_named(tmp_path):
    paths, _ = shards.write_split(tmp_path, "train", _items(), lambda row: b"jpeg", ["Jazz"], shard_rows=10)
    table = pq.read_table(paths[0])
    altered = table.set_column(table.schema.get_field_index("year"), "year", table["year"].cast(pa.string()))
    assert shards.schema_problems(altered.schema) == ["column year is string, expected int32"]


def test_a_manifest_written_and_read_back_is_the_items(tmp_path):
    write_manifest(tmp_path / "m.parquet", _items())
    assert pq.read_schema(tmp_path / "m.parquet").names == list(MANIFEST_COLUMNS)
    frame = read_manifest(tmp_path / "m.parquet")
    assert list(frame.columns) == list(MANIFEST_COLUMNS)
    assert frame["year"].tolist()[0] == 1999 and frame["year"].isna().tolist() == [False, True]
    assert str(frame["label"].dtype) == "Int64" and str(frame["width"].dtype) == "Int32"


def _rewrite(tmp_path, change) -> str:
    path = tmp_path / "m.parquet"
    write_manifest(path, _items())
    pq.write_table(change(pq.read_table(path)), path)
    return path


def test_a_manifest_missing_a_required_column_is_refused_naming_it(tmp_path):
    path = _rewrite(tmp_path, lambda t: t.drop_columns(["sha256"]))
    with pytest.raises(EquigenError, match=r"lacks columns \['sha256'\]"):
        read_manifest(path)


def test_a_manifest_without_the_optional_columns_reads_them_as_unknown(tmp_path):
    path = _rewrite(tmp_path, lambda t: t.drop_columns(["label_votes", "label_confidence"]))
    frame = read_manifest(path)
    assert frame["label_votes"].isna().all() and frame["label_confidence"].isna().all()


def test_a_manifest_of_other_writers_types_is_cast_but_out_of_range_values_are_refused(tmp_path):
    wide = _rewrite(
        tmp_path, lambda t: t.set_column(t.schema.get_field_index("width"), "width", t["width"].cast(pa.int64()))
    )
    assert read_manifest(wide)["width"].tolist() == [500, 500]
    huge = _rewrite(
        tmp_path, lambda t: t.set_column(t.schema.get_field_index("year"), "year", pa.array([2**40, 1], pa.int64()))
    )
    with pytest.raises(EquigenError, match="column year has values out of its int32 range"):
        read_manifest(huge)
    text = _rewrite(tmp_path, lambda t: t.set_column(t.schema.get_field_index("label"), "label", t["genre"]))
    with pytest.raises(EquigenError, match="column label is string, expected int64"):
        read_manifest(text)


def test_fetch_refuses_a_manifest_missing_a_column_with_one_line(tmp_path):
    path = _rewrite(tmp_path, lambda t: t.drop_columns(["release_group_mbid"]))
    result = run_cli("fetch", "--data-dir", str(tmp_path / "data"), "--manifest", str(path))
    assert_one_line_error(result, "lacks columns ['release_group_mbid']")
