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
from equigen.core.schema import MANIFEST_COLUMNS, arrow_schema, conform
from equigen.core.storage import atomic_output

MANIFEST = "manifest.parquet"
# The catalog's selection_source when the selection was read from a published manifest.
MANIFEST_SOURCE = "manifest"

# Reading: integers as pandas' nullable integers, the float32 confidence as Float64 (the values unchanged).
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.float32(): pd.Float64Dtype()}


def write_manifest(path: Path, items: pd.DataFrame) -> None:
    """The items' manifest columns, with the shards' pinned writer options (same items, same bytes)."""
    columns = {name: [None if pd.isna(v) else v for v in items[name]] for name in MANIFEST_COLUMNS}
    table = pa.Table.from_pydict(columns, schema=arrow_schema(MANIFEST_COLUMNS))
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:  # a file object: the path may not be UTF-8
        pq.write_table(table, fh, **WRITE_OPTIONS)


def read_manifest(path: Path | str) -> pd.DataFrame:
    """A manifest.parquet as a DataFrame, checked against the schema and the values' rules (one-line
    EquigenError if bad). A manifest written before the optional columns existed reads them as unknown."""
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
    table, problems = conform(table, MANIFEST_COLUMNS)
    frame = table.to_pandas(types_mapper=_PANDAS_TYPES.get) if table is not None else None
    problems = problems or value_problems(frame)
    if problems:
        raise EquigenError(f"manifest {path} is invalid: {'; '.join(problems)}")
    return frame


def value_problems(frame: pd.DataFrame) -> list[str]:
    """What the values of a schema-conforming manifest frame break (empty when nothing)."""
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
    return problems
