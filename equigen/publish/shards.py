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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError, first_line
from equigen.core.parquet import WRITE_OPTIONS, check_parquet_size
from equigen.core.schema import COLUMNS, METADATA_COLUMNS, OPTIONAL_COLUMNS, SHARD_COLUMNS, arrow_schema
from equigen.core.storage import atomic_output, write_atomic

DATA_DIR = "data"
CHECKSUMS = "checksums.sha256"
SHARD_RE = re.compile(r"(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet")
# Hugging Face `Value` dtype names of the schema's scalar types (Arrow calls float32 "float").
_HF_DTYPES = {pa.string(): "string", pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32"}


def hf_feature(name: str, genres: Sequence[str]) -> dict:
    """A shard column's Hugging Face feature: image an Image, label a ClassLabel of `genres`, the rest Values."""
    if name == "image":
        return {"_type": "Image"}
    if name == "label":
        return {"names": list(genres), "_type": "ClassLabel"}
    return {"dtype": _HF_DTYPES[COLUMNS[name].type], "_type": "Value"}


def hf_features(genres: Sequence[str]) -> dict:
    """The `datasets` Features dict for the shard columns."""
    return {name: hf_feature(name, genres) for name in SHARD_COLUMNS}


def shard_schema(genres: Sequence[str]) -> pa.Schema:
    metadata = {b"huggingface": json.dumps({"info": {"features": hf_features(genres)}}).encode()}
    return arrow_schema(SHARD_COLUMNS, metadata=metadata)


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
        chunk = rows.iloc[index * shard_rows : (index + 1) * shard_rows]
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
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:  # a shard is either complete or absent
            pq.write_table(table, fh, **WRITE_OPTIONS)
        paths.append(path)
    return paths, arrow_bytes


# --- reading ------------------------------------------------------------------------------


def shard_files(dataset_dir: Path) -> dict[str, list[Path]]:
    """Split -> its shard paths in order; EquigenError for a missing data folder, a stray file or a broken set."""
    data = _data_folder(dataset_dir)
    names = [path.name for path in sorted(data.glob("*.parquet"))]
    linked = [name for name in names if (data / name).is_symlink()]
    if linked:  # a link may point anywhere (a huge file outside, another dataset): never read through one
        raise EquigenError(f"shard {linked[0]} in {data} is a symbolic link: a dataset holds its shards itself")
    for name in names:
        match = SHARD_RE.fullmatch(name)
        if not match or match["split"] not in SPLITS:
            raise EquigenError(f"unexpected file {name} in {data}: shards are named <split>-NNNNN-of-NNNNN.parquet")
    if not names:
        raise EquigenError(f"no Parquet shards in {data}")
    return {split: split_shards(dataset_dir, split) for split in SPLITS}


def split_shards(dataset_dir: Path, split: str) -> list[Path]:
    """One split's shard paths in order; EquigenError unless every shard i of n is there.

    Files of other splits, or not named like shards, are not looked at (shard_files refuses them).
    """
    data = _data_folder(dataset_dir)
    found: dict[int, int] = {}  # shard index -> the shard count its name gives
    for path in data.glob(f"{split}-*.parquet"):
        match = SHARD_RE.fullmatch(path.name)
        if match and match["split"] == split:
            found[int(match["index"])] = int(match["count"])
    if not found:
        raise EquigenError(f"no {split} shards in {data} (expected {split}-00000-of-NNNNN.parquet)")
    counts = sorted(set(found.values()))
    if len(counts) > 1:
        raise EquigenError(f"{split} shards in {data} disagree on the shard count: {counts}")
    count = counts[0]
    beyond = sorted(i for i in found if i >= count)
    if beyond:
        raise EquigenError(f"{data / shard_name(split, beyond[0], count)}: shard index beyond the split's count")
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise EquigenError(
            f"{data / shard_name(split, missing[0], count)} is missing ({len(found)} of {count} {split} shards present)"
        )
    return [data / shard_name(split, i, count) for i in range(count)]


def _data_folder(dataset_dir: Path) -> Path:
    data = Path(dataset_dir) / DATA_DIR
    if not data.is_dir():
        raise EquigenError(f"{dataset_dir} has no {DATA_DIR}/ folder: not a dataset written by `equigen split`")
    return data


MAX_CHECKSUMS_BYTES = 16 << 20  # a checksums line per file: a real one is a few KB


def read_schema(path: Path) -> pa.Schema:
    try:
        with open(path, "rb") as fh:  # opened by us: pyarrow cannot take a path that is not UTF-8
            return pq.read_schema(fh)
    except FileNotFoundError:
        raise EquigenError(f"shard {path} is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"shard {path.name} is not a readable Parquet file: {first_line(exc)}") from None


def check_shard_size(path: Path) -> None:
    """A shard's footer must promise no more than a shard can hold (see check_parquet_size)."""
    # a row is one cover (at most the 10 MB download cap) plus its metadata
    check_parquet_size(path, "shard", max_rows=10_000_000, bytes_per_row=12 << 20)


def iter_batches(path: Path, columns: Sequence[str] | None = None, batch_rows: int = 500) -> Iterator[pa.RecordBatch]:
    """Record batches of one shard; EquigenError for a missing, corrupt or implausibly large shard."""
    check_shard_size(path)
    try:
        with open(path, "rb") as fh:
            reader = pq.ParquetFile(fh)
            yield from reader.iter_batches(batch_size=batch_rows, columns=list(columns) if columns else None)
    except FileNotFoundError:
        raise EquigenError(f"shard {path} is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise EquigenError(f"shard {path.name} is not a readable Parquet file: {first_line(exc)}") from None


def schema_problems(schema: pa.Schema, columns: Sequence[str] | None = None) -> list[str]:
    """How a shard's schema differs from the contract (empty when it conforms).

    columns: check only these contract columns, for a reader that needs no others (nor the metadata).
    """
    problems = []
    expected = {name: COLUMNS[name].type for name in SHARD_COLUMNS if columns is None or name in columns}
    actual = {f.name: f.type for f in schema}
    for name, dtype in expected.items():
        if name not in actual:
            problems.append(f"missing column {name}")
        elif actual[name] != dtype:
            problems.append(f"column {name} is {actual[name]}, expected {dtype}")
    if columns is not None:
        return problems
    problems += [f"unexpected column {name}" for name in actual if name not in expected]
    try:
        features = json.loads((schema.metadata or {})[b"huggingface"])["info"]["features"]  # may nest too deep
        names = _label_names(features)
        if features["image"]["_type"] != "Image" or features["label"]["_type"] != "ClassLabel":
            problems.append("huggingface metadata: image must be an Image and label a ClassLabel")
        if names is None:
            problems.append("huggingface metadata: ClassLabel has no names")
    except (KeyError, TypeError, ValueError, RecursionError):
        problems.append("missing or malformed huggingface schema metadata")
    return problems


def class_names(schema: pa.Schema) -> list[str]:
    """The ClassLabel names stored in a shard's metadata."""
    try:
        names = _label_names(json.loads(schema.metadata[b"huggingface"])["info"]["features"])
    except (KeyError, TypeError, ValueError, RecursionError):
        names = None
    if names is None:
        raise EquigenError("shard has no ClassLabel names in its huggingface metadata")
    return names


def _label_names(features: dict) -> list[str] | None:
    """The label's ClassLabel names when they are a non-empty list of strings."""
    names = features["label"]["names"]
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


# --- checksums ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dataset_files(dataset_dir: Path) -> list[str]:
    """Every file of the folder (links included, never followed), relative, but the checksums file itself."""
    root = Path(dataset_dir)
    found = []
    for folder, dirs, files in os.walk(root):  # followlinks=False: a link to a folder is listed, not entered
        base = Path(folder)
        found += [
            (base / name).relative_to(root).as_posix() for name in files + [d for d in dirs if (base / d).is_symlink()]
        ]
    return sorted(f for f in found if f != CHECKSUMS)


def symlinks(dataset_dir: Path) -> list[str]:
    """Symbolic links inside a dataset folder (relative paths): a published dataset holds only regular files."""
    root = Path(dataset_dir)
    out = []
    for folder, dirs, files in os.walk(root):
        out += [
            (Path(folder) / n).relative_to(root).as_posix() for n in dirs + files if (Path(folder) / n).is_symlink()
        ]
    return sorted(out)


def write_checksums(dataset_dir: Path) -> Path:
    """`checksums.sha256` in sha256sum format over every other file of the folder."""
    root = Path(dataset_dir)
    lines = [f"{sha256_file(root / rel)}  {rel}\n" for rel in _dataset_files(root)]
    path = root / CHECKSUMS
    write_atomic(path, "".join(lines))
    return path


def checksum_problems(dataset_dir: Path) -> list[str]:
    """Files whose checksum differs, listed files that are missing, and unlisted files."""
    root = Path(dataset_dir)
    path = root / CHECKSUMS
    if not path.is_file():
        return [f"{CHECKSUMS} is missing"]
    if path.is_symlink():
        return [f"{CHECKSUMS} is a symbolic link: not read"]
    with open(path, "rb") as fh:
        raw = fh.read(MAX_CHECKSUMS_BYTES + 1)
    if len(raw) > MAX_CHECKSUMS_BYTES:
        return [f"{CHECKSUMS} is larger than {MAX_CHECKSUMS_BYTES:,} bytes: not read"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [f"{CHECKSUMS} is not UTF-8 text"]
    listed = {}
    for number, line in enumerate(text.splitlines(), 1):
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
        if any(p.is_symlink() for p in [target, *target.parents] if root in p.parents or p == target):
            problems.append(f"{rel}: a symbolic link (a copy or upload would lose what it points to)")
        elif not target.is_file():
            problems.append(f"{rel}: listed but missing")
        elif sha256_file(target) != digest:
            problems.append(f"{rel}: checksum mismatch")
    problems += [f"{rel}: not listed" for rel in _dataset_files(root) if rel not in listed]
    return problems
