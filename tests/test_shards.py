"""equigen.publish.shards: listing shards, the schema contract and atomic writes, on empty stand-in files."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError
from equigen.publish import shards


def touch_shards(root, **counts):
    """Empty files named like the shards of each split: {split: (present indexes, count)}."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, (indexes, count) in counts.items():
        for i in indexes:
            (root / "data" / shards.shard_name(split, i, count)).touch()
    return root


def test_shard_files_lists_every_split_in_order(tmp_path):
    root = touch_shards(tmp_path, train=([1, 0], 2), validation=([0], 1), test=([0], 1))
    files = shards.shard_files(root)
    assert list(files) == list(SPLITS)
    assert [p.name for p in files["train"]] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]


def test_split_shards_ignores_what_shard_files_refuses(tmp_path):
    root = touch_shards(tmp_path, train=([0], 1))
    (root / "data" / "notes.parquet").touch()
    assert [p.name for p in shards.split_shards(root, "train")] == ["train-00000-of-00001.parquet"]
    with pytest.raises(EquigenError, match="unexpected file notes.parquet"):
        shards.shard_files(root)


@pytest.mark.parametrize(
    "counts, message",
    [
        ({"train": ([0], 2)}, "train-00001-of-00002.parquet is missing (1 of 2 train shards present)"),
        ({"train": ([0, 1], 1)}, "train-00001-of-00001.parquet: shard index beyond"),
        ({"validation": ([0], 1)}, "no train shards in"),
    ],
)
def test_a_broken_split_names_what_is_wrong(tmp_path, counts, message):
    root = touch_shards(tmp_path, **counts)
    with pytest.raises(EquigenError) as e:
        shards.split_shards(root, "train")
    assert message in str(e.value)


def test_split_shards_refuses_disagreeing_counts_and_a_missing_folder(tmp_path):
    root = touch_shards(tmp_path, train=([0], 2))
    (root / "data" / shards.shard_name("train", 1, 3)).touch()
    with pytest.raises(EquigenError, match=r"disagree on the shard count: \[2, 3\]"):
        shards.split_shards(root, "train")
    with pytest.raises(EquigenError, match="has no data/ folder"):
        shards.split_shards(tmp_path / "nope", "train")


def test_schema_problems_for_some_columns_only():
    schema = shards.shard_schema(["jazz", "pop"])
    assert shards.schema_problems(schema) == []
    reader = pa.schema([schema.field("image"), pa.field("label", pa.int32())])
    assert shards.schema_problems(reader, columns=("image", "label")) == ["column label is int32, expected int64"]
    assert shards.schema_problems(pa.schema([schema.field("image")]), columns=("image", "label")) == [
        "missing column label"
    ]


@pytest.mark.parametrize("names", [[], "jazz", [1, 2], None])
def test_class_names_must_be_a_list_of_strings(names):
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": names}}
    schema = pa.schema([("label", pa.int64())], metadata={b"huggingface": json.dumps({"info": {"features": features}})})
    with pytest.raises(EquigenError, match="no ClassLabel names"):
        shards.class_names(schema)
    assert "huggingface metadata: ClassLabel has no names" in shards.schema_problems(schema)
    assert shards.class_names(shards.shard_schema(["jazz", "pop"])) == ["jazz", "pop"]


def test_writes_leave_no_temporary_files(tmp_path):
    rows = pd.DataFrame(
        [
            {
                "label": 0,
                "genre": "jazz",
                "release_group_mbid": "rg",
                "artist_mbid": "a",
                "artist_name": "A",
                "title": "T",
                "year": 2000,
                "phash": "0" * 16,
                "sha256": "1" * 64,
                "width": 1,
                "height": 1,
                "ext": "jpg",
            }
        ]
    )
    paths, _ = shards.write_split(tmp_path, "train", rows, lambda row: b"jpeg", ["jazz"], shard_rows=1)
    checksums = shards.write_checksums(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checksums.sha256", "data", paths[0].name]
    assert pq.read_table(paths[0]).num_rows == 1
    assert shards.checksum_problems(tmp_path) == [] and checksums.read_text().endswith(f"data/{paths[0].name}\n")
