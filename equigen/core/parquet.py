"""Parquet rules shared by every Parquet file EquiGen writes or reads: pinned writer options (the same rows give
the same bytes) and the size check applied before an untrusted file's values are decoded (shards, manifest)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from equigen.core.errors import EquigenError, first_line

# Pinned writer options. About 100 rows per row group is what the Hub uses for image data: small
# enough to stream, large enough for cheap metadata.
ROW_GROUP_ROWS = 100
WRITE_OPTIONS = dict(
    compression="zstd",
    compression_level=3,
    row_group_size=ROW_GROUP_ROWS,
    use_dictionary=True,
    write_statistics=True,
    data_page_version="1.0",
)

MAX_TEXT_VALUE = 64 << 10  # bytes of one string value (a title, an artist): real ones are a few hundred
MAX_BINARY_VALUE = 12 << 20  # bytes of one binary value (a cover: the 10 MB download cap plus margin)


def check_parquet_size(path: Path, what: str, max_rows: int, bytes_per_row: int, floor: int = 64 << 20) -> None:
    """Refuse a Parquet file that would decode to more than such a file can hold, before its values are decoded.

    The footer's row count and uncompressed size are checked first. They are not enough: dictionary encoding
    stores a shared value once and the footer counts it once, while pyarrow hands every row its own copy (a 13 KB
    manifest of 300 rows sharing one 5 MB title decoded to 3 GB). So the file is then streamed with its text and
    binary columns kept dictionary-encoded, and each value's length (MAX_TEXT_VALUE, MAX_BINARY_VALUE) and the
    decoded total are bounded without materialising any copy.
    """
    try:
        with open(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
    except FileNotFoundError:
        raise EquigenError(f"{what} {path} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"{what} {path} is not a readable Parquet file: {first_line(exc)}") from None
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    limit = max(floor, meta.num_rows * bytes_per_row)
    if meta.num_rows > max_rows or size > limit:
        raise EquigenError(
            f"{what} {Path(path).name} holds {meta.num_rows:,} rows and {size:,} uncompressed bytes: "
            "more than such a file can hold; refusing to read it"
        )
    try:
        decoded = _decoded_bytes(path, limit)
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"{what} {path} is not a readable Parquet file: {first_line(exc)}") from None
    except ValueError as exc:
        raise EquigenError(f"{what} {Path(path).name}: {exc}; refusing to read it") from None
    if decoded > limit:
        raise EquigenError(
            f"{what} {Path(path).name} would decode to more than {limit:,} bytes for {meta.num_rows:,} rows "
            "(values shared through its dictionary): refusing to read it"
        )


def _decoded_bytes(path: Path, limit: int) -> int:
    """The bytes a Parquet file's rows decode to, counted batch by batch without materialising shared values:
    flat text and binary columns are read as dictionaries (indices plus each distinct value once); nested ones
    (the image struct) 16 rows at a time, each value checked against its cap. ValueError for a value over it."""
    total = 0
    with open(path, "rb") as fh:
        schema = pq.read_schema(fh)
        flat = [f.name for f in schema if _is_bytes(f.type)]
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        plain = [f.name for f in schema if f.name not in flat and f.name not in nested]
        reader = pq.ParquetFile(fh, read_dictionary=flat)
        for columns, rows in ((flat + plain, 4096), *(([name], 16) for name in nested)):
            if not columns:
                continue
            for batch in reader.iter_batches(batch_size=rows, columns=columns):
                for name, column in zip(batch.schema.names, batch.columns):
                    total += _array_bytes(name, column)
                if total > limit:
                    return total
    return total


def _is_bytes(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_binary(dtype) or pa.types.is_large_string(dtype)


def _array_bytes(name: str, array: pa.Array) -> int:
    """Decoded bytes of one column's batch; ValueError for a value longer than its cap."""
    if pa.types.is_struct(array.type):
        return sum(_array_bytes(f"{name}.{array.type[i].name}", array.field(i)) for i in range(array.type.num_fields))
    values, indices = (array.dictionary, array.indices) if pa.types.is_dictionary(array.type) else (array, None)
    if _is_bytes(values.type) and len(values):
        lengths = pc.binary_length(values)
        cap = MAX_BINARY_VALUE if pa.types.is_binary(values.type) else MAX_TEXT_VALUE
        longest = pc.max(lengths).as_py() or 0
        if longest > cap:
            raise ValueError(f"column {name} holds a value of {longest:,} bytes (at most {cap:,})")
        if indices is not None:
            return int(pc.sum(pc.take(lengths, indices)).as_py() or 0) + indices.nbytes
    return array.nbytes
