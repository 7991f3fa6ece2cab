"""The manifest contract: manifest.parquet lists every published item with its split, label, label
evidence and Cover Art Archive URL (no images), so anyone can rebuild the dataset (`equigen fetch
--manifest`) instead of redistributing the covers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError, first_line
from equigen.core.mbids import is_mbid
from equigen.core.parquet import WRITE_OPTIONS, check_parquet_size
from equigen.core.storage import atomic_output

MANIFEST = "manifest.parquet"
# The catalog's selection_source when the selection was read from a published manifest.
MANIFEST_SOURCE = "manifest"

# Column -> Arrow type. Strings may be null except where the reader requires them.
MANIFEST_COLUMNS = {
    "split": pa.string(),
    "genre": pa.string(),
    "label": pa.int64(),
    "label_votes": pa.int32(),
    "label_confidence": pa.float32(),
    "release_group_mbid": pa.string(),
    "artist_mbid": pa.string(),
    "artist_name": pa.string(),
    "title": pa.string(),
    "year": pa.int32(),
    "sha256": pa.string(),
    "phash": pa.string(),
    "width": pa.int32(),
    "height": pa.int32(),
    "source_url": pa.string(),
}
# Columns a manifest written before they existed lacks: read as unknown (null).
OPTIONAL_MANIFEST_COLUMNS = ("label_votes", "label_confidence")


def write_manifest(path: Path, items: pd.DataFrame) -> None:
    """The items' manifest columns, with the shards' pinned writer options (same items, same bytes)."""
    columns = {name: [None if pd.isna(v) else v for v in items[name]] for name in MANIFEST_COLUMNS}
    table = pa.Table.from_pydict(columns, schema=pa.schema(MANIFEST_COLUMNS.items()))
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:  # a file object: the path may not be UTF-8
        pq.write_table(table, fh, **WRITE_OPTIONS)


def read_manifest(path: Path | str) -> pd.DataFrame:
    """A manifest.parquet as a DataFrame, checked against the contract (one-line EquigenError if bad)."""
    path = Path(path)
    # ~100k items of a few hundred bytes each; a manifest carries no images
    check_parquet_size(path, "manifest", max_rows=5_000_000, bytes_per_row=4096)
    try:
        with open(path, "rb") as fh:
            table = pq.read_table(fh)
    except FileNotFoundError:
        raise EquigenError(f"manifest {path} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"manifest {path} is not a readable Parquet file: {first_line(exc)}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names and c not in OPTIONAL_MANIFEST_COLUMNS]
    if missing:
        raise EquigenError(f"manifest {path} lacks columns {missing}")
    for name in OPTIONAL_MANIFEST_COLUMNS:
        if name not in table.column_names:  # an older manifest: the label's evidence is unknown
            table = table.append_column(name, pa.nulls(table.num_rows, MANIFEST_COLUMNS[name]))
    for name, dtype in MANIFEST_COLUMNS.items():
        actual = table.schema.field(name).type
        if not (
            actual == dtype
            or pa.types.is_null(actual)
            or (pa.types.is_integer(dtype) and pa.types.is_integer(actual))
            or (pa.types.is_floating(dtype) and (pa.types.is_floating(actual) or pa.types.is_integer(actual)))
            or (pa.types.is_string(dtype) and pa.types.is_large_string(actual))
        ):
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
