"""The published dataset's files: Parquet shards in the Hugging Face layout, and checksums.

Shards are `data/{split}-{i:05d}-of-{n:05d}.parquet`. Every shard carries the `huggingface`
schema metadata so `datasets` reads `image` as an Image and `label` as a ClassLabel; next to the
label, `label_votes` and `label_confidence` publish its evidence (MusicBrainz tag votes). Writer
options are pinned and nothing time-dependent is written, so the same rows give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from equigen.errors import EquigenError

SPLITS = ("train", "validation", "test")
DATA_DIR = "data"
CHECKSUMS = "checksums.sha256"
SHARD_RE = re.compile(r"(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet")
# Pinned writer options. About 100 rows per row group is what the Hub uses for image data: small
# enough to stream, large enough for cheap metadata.
ROW_GROUP_ROWS = 100
WRITE_OPTIONS = dict(compression="zstd", compression_level=3, row_group_size=ROW_GROUP_ROWS,
                     use_dictionary=True, write_statistics=True, data_page_version="1.0")

# The shard contract: column, Arrow type, Hugging Face feature (label's is filled in with the names).
COLUMNS: tuple[tuple[str, pa.DataType, dict], ...] = (
    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())]), {"_type": "Image"}),
    ("label", pa.int64(), {"_type": "ClassLabel"}),
    ("genre", pa.string(), {"dtype": "string", "_type": "Value"}),
    # The label's evidence (null only in datasets rebuilt from a manifest that predates them):
    # MusicBrainz genre-tag votes summed over every tag mapped to a genre, and the winner's share.
    ("label_votes", pa.int32(), {"dtype": "int32", "_type": "Value"}),
    ("label_confidence", pa.float32(), {"dtype": "float32", "_type": "Value"}),
    ("release_group_mbid", pa.string(), {"dtype": "string", "_type": "Value"}),
    ("artist_mbid", pa.string(), {"dtype": "string", "_type": "Value"}),
    ("artist_name", pa.string(), {"dtype": "string", "_type": "Value"}),
    ("title", pa.string(), {"dtype": "string", "_type": "Value"}),
    ("year", pa.int32(), {"dtype": "int32", "_type": "Value"}),
    ("phash", pa.string(), {"dtype": "string", "_type": "Value"}),
    ("sha256", pa.string(), {"dtype": "string", "_type": "Value"}),
    ("width", pa.int32(), {"dtype": "int32", "_type": "Value"}),
    ("height", pa.int32(), {"dtype": "int32", "_type": "Value"}),
)
METADATA_COLUMNS = tuple(name for name, _, _ in COLUMNS if name != "image")
# Columns that may be unknown (null) for every row: `write_split` writes nulls when `rows` lacks them.
OPTIONAL_COLUMNS = ("label_votes", "label_confidence")


def hf_features(genres: Sequence[str]) -> dict:
    """The `datasets` Features dict for the shard columns."""
    features = {}
    for name, _, feature in COLUMNS:
        features[name] = {"names": list(genres), **feature} if name == "label" else dict(feature)
    return features


def shard_schema(genres: Sequence[str]) -> pa.Schema:
    metadata = {b"huggingface": json.dumps({"info": {"features": hf_features(genres)}}).encode()}
    return pa.schema([pa.field(name, dtype) for name, dtype, _ in COLUMNS], metadata=metadata)


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def write_split(
    dataset_dir: Path,
    split: str,
    rows: pd.DataFrame,
    load_image: Callable[[pd.Series], bytes],
    genres: Sequence[str],
    shard_rows: int,
) -> tuple[list[Path], int]:
    """Write `rows` (already in their published order) as this split's shards.

    Returns the shard paths and the split's in-memory Arrow size (the Hub's `num_bytes`).

    rows: the METADATA_COLUMNS (OPTIONAL_COLUMNS may be absent: null) plus `ext`; load_image(row) returns
    the image bytes for a row.
    """
    if shard_rows < 1:
        raise EquigenError(f"--shard-rows must be at least 1, got {shard_rows}")
    if rows.empty:
        # `datasets` cannot read a Parquet file without rows, so an empty split is not publishable.
        raise EquigenError(f"split {split!r} has no rows")
    out_dir = Path(dataset_dir) / DATA_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = shard_schema(genres)
    count = -(-len(rows) // shard_rows)
    paths, arrow_bytes = [], 0
    for index in range(count):
        chunk = rows.iloc[index * shard_rows:(index + 1) * shard_rows]
        images = [{"bytes": load_image(row), "path": f"{row.sha256}.{row.ext}"} for row in chunk.itertuples()]
        columns = {"image": images}
        for name in METADATA_COLUMNS:
            if name not in chunk and name in OPTIONAL_COLUMNS:
                columns[name] = [None] * len(chunk)
            else:
                columns[name] = [None if pd.isna(v) else v for v in chunk[name]]
        table = pa.Table.from_pydict(columns, schema=schema)
        arrow_bytes += table.nbytes
        path = out_dir / shard_name(split, index, count)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp, **WRITE_OPTIONS)
        os.replace(tmp, path)  # a shard is either complete or absent
        paths.append(path)
    return paths, arrow_bytes


# --- reading ------------------------------------------------------------------------------

def shard_files(dataset_dir: Path) -> dict[str, list[Path]]:
    """Split -> its shard paths in order; EquigenError for a missing data folder or a broken set."""
    data = Path(dataset_dir) / DATA_DIR
    if not data.is_dir():
        raise EquigenError(f"{dataset_dir} has no {DATA_DIR}/ folder: not a dataset written by `equigen split`")
    found: dict[str, dict[int, int]] = {}
    for path in sorted(data.glob("*.parquet")):
        match = SHARD_RE.fullmatch(path.name)
        if not match or match["split"] not in SPLITS:
            raise EquigenError(f"unexpected file {path.name} in {data}: shards are named <split>-NNNNN-of-NNNNN.parquet")
        found.setdefault(match["split"], {})[int(match["index"])] = int(match["count"])
    if not found:
        raise EquigenError(f"no Parquet shards in {data}")
    result = {}
    for split in SPLITS:
        if split not in found:
            raise EquigenError(f"split {split!r} has no shards in {data}")
        indexes = found[split]
        count = next(iter(indexes.values()))
        if set(indexes.values()) != {count} or set(indexes) != set(range(count)):
            missing = sorted(set(range(count)) - set(indexes))
            raise EquigenError(f"split {split!r} is missing shards {missing[:5]} of {count} in {data}")
        result[split] = [data / shard_name(split, i, count) for i in range(count)]
    return result


def check_parquet_size(path: Path, what: str, max_rows: int, bytes_per_row: int, floor: int = 64 << 20) -> None:
    """Refuse a Parquet file whose footer promises more rows or more uncompressed bytes than such a file can
    hold (a 17 KB file can inflate to gigabytes), before any column is read."""
    try:
        meta = pq.ParquetFile(path).metadata
    except FileNotFoundError:
        raise EquigenError(f"{what} {path} not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"{what} {path} is not a readable Parquet file: {_first_line(exc)}") from None
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if meta.num_rows > max_rows or size > max(floor, meta.num_rows * bytes_per_row):
        raise EquigenError(f"{what} {Path(path).name} holds {meta.num_rows:,} rows and {size:,} uncompressed bytes: "
                           "more than such a file can hold; refusing to read it")


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        raise EquigenError(f"shard {path} is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"shard {path.name} is not a readable Parquet file: {_first_line(exc)}") from None


def iter_batches(path: Path, columns: Sequence[str] | None = None, batch_rows: int = 500) -> Iterator[pa.RecordBatch]:
    """Record batches of one shard; EquigenError for a missing, corrupt or implausibly large shard."""
    # a row is one cover (at most the 10 MB download cap) plus its metadata
    check_parquet_size(path, "shard", max_rows=10_000_000, bytes_per_row=12 << 20)
    try:
        reader = pq.ParquetFile(path)
        yield from reader.iter_batches(batch_size=batch_rows, columns=list(columns) if columns else None)
    except FileNotFoundError:
        raise EquigenError(f"shard {path} is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"shard {path.name} is not a readable Parquet file: {_first_line(exc)}") from None


def read_metadata(dataset_dir: Path) -> pd.DataFrame:
    """Every row's metadata columns (no image bytes) with its split, in shard order."""
    frames = []
    for split, paths in shard_files(dataset_dir).items():
        for path in paths:
            for batch in iter_batches(path, METADATA_COLUMNS):
                frames.append(batch.to_pandas().assign(split=split))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*METADATA_COLUMNS, "split"])


def iter_images(dataset_dir: Path) -> Iterator[tuple[str, str, bytes]]:
    """(split, sha256 column, image bytes) for every row, shard by shard."""
    for split, paths in shard_files(dataset_dir).items():
        for path in paths:
            for batch in iter_batches(path, ["image", "sha256"], batch_rows=100):
                images = batch.column("image").field("bytes").to_pylist()
                for sha, data in zip(batch.column("sha256").to_pylist(), images):
                    yield split, sha, data


def schema_problems(schema: pa.Schema) -> list[str]:
    """How a shard's schema differs from the contract (empty when it conforms)."""
    problems = []
    expected = {name: dtype for name, dtype, _ in COLUMNS}
    actual = {f.name: f.type for f in schema}
    for name, dtype in expected.items():
        if name not in actual:
            problems.append(f"missing column {name}")
        elif actual[name] != dtype:
            problems.append(f"column {name} is {actual[name]}, expected {dtype}")
    problems += [f"unexpected column {name}" for name in actual if name not in expected]
    try:
        features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]
        names = features["label"]["names"]
        if features["image"]["_type"] != "Image" or features["label"]["_type"] != "ClassLabel":
            problems.append("huggingface metadata: image must be an Image and label a ClassLabel")
        if not names or not all(isinstance(n, str) for n in names):
            problems.append("huggingface metadata: ClassLabel has no names")
    except (KeyError, TypeError, ValueError):
        problems.append("missing or malformed huggingface schema metadata")
    return problems


def class_names(schema: pa.Schema) -> list[str]:
    """The ClassLabel names stored in a shard's metadata."""
    try:
        return list(json.loads(schema.metadata[b"huggingface"])["info"]["features"]["label"]["names"])
    except (KeyError, TypeError, ValueError):
        raise EquigenError("shard has no ClassLabel names in its huggingface metadata") from None


# --- checksums ----------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dataset_files(dataset_dir: Path) -> list[str]:
    root = Path(dataset_dir)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_checksums(dataset_dir: Path) -> Path:
    """`checksums.sha256` in sha256sum format over every other file of the folder."""
    root = Path(dataset_dir)
    lines = [f"{sha256_file(root / rel)}  {rel}\n" for rel in _dataset_files(root)]
    path = root / CHECKSUMS
    path.write_text("".join(lines), encoding="utf-8")
    return path


def checksum_problems(dataset_dir: Path) -> list[str]:
    """Files whose checksum differs, listed files that are missing, and unlisted files."""
    root = Path(dataset_dir)
    path = root / CHECKSUMS
    if not path.is_file():
        return [f"{CHECKSUMS} is missing"]
    listed = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, rel = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return [f"{CHECKSUMS} line {number} is not in sha256sum format"]
        listed[rel] = digest
    problems = []
    for rel, digest in list(listed.items()):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # never read outside the dataset folder
            problems.append(f"{rel[:80]}: listed outside the dataset folder")
            del listed[rel]
            continue
        target = root / rel
        if not target.is_file():
            problems.append(f"{rel}: listed but missing")
        elif sha256_file(target) != digest:
            problems.append(f"{rel}: checksum mismatch")
    problems += [f"{rel}: not listed" for rel in _dataset_files(root) if rel not in listed]
    return problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
