"""`equigen verify`: audit a published dataset folder, trusting nothing that is stored in it.

Every shard is read and checked against the contract, every image is decoded and re-hashed
(sha256 and pHash), and leakage is recomputed from those fresh values: artists in more than one
split (Various Artists and missing artists excluded, the same rule as the split), exact and near
(pHash within `radius`) duplicates across splits. Checksums and the metadata files are checked too.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from equigen.core.dedup_rules import hashes_from_hex, near_pairs
from equigen.core.defaults import DEFAULT_THRESHOLD, SPLITS
from equigen.core.errors import EquigenError, inert
from equigen.core.images import BadImage, inspect_image
from equigen.core.options import VerifyOptions
from equigen.core.schema import METADATA_COLUMNS
from equigen.publish.shards import (
    checksum_problems,
    class_names,
    iter_batches,
    read_schema,
    schema_problems,
    shard_files,
    symlinks,
)
from equigen.publish.split_rules import shared_artist

REQUIRED_FILES = ("README.md", "croissant.json", "checksums.sha256")
MAX_JSON_BYTES = 16 << 20  # croissant.json: a real one is a few KB
# Covers are Cover Art Archive thumbnails (at most 1200 px, and the downloader admits twice the size asked for):
# anything larger is not a cover of ours, and is refused from its header before a pixel is decoded.
MAX_COVER_SIDE = 2 * 1200
MAX_COVER_PIXELS = MAX_COVER_SIDE * MAX_COVER_SIDE
_EXAMPLES = 3


@dataclass(frozen=True)
class Check:
    name: str
    checked: int | None  # how many things were looked at (None: not countable)
    violations: int
    examples: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.violations == 0


def _check(name: str, problems: list[str], checked: int | None = None) -> Check:
    return Check(name, checked, len(problems), tuple(problems[:_EXAMPLES]))


# --- pure core ------------------------------------------------------------------------------


def audit_items(items: pd.DataFrame, names: list[str], radius: int) -> list[Check]:
    """Item-level checks on freshly computed values.

    items: split, label, genre, release_group_mbid, artist_mbid, sha256 (stored), actual_sha256,
    phash_actual (None when the image did not decode), decode_error (None or the reason).
    """
    checks = []
    bad = items[items["decode_error"].notna()]
    checks.append(
        _check("images decode", [f"{r.release_group_mbid}: {r.decode_error}" for r in bad.itertuples()], len(items))
    )
    sized = items[items["actual_width"].notna()]
    wrong_size = sized[(sized["width"] != sized["actual_width"]) | (sized["height"] != sized["actual_height"])]
    checks.append(
        _check(
            "width and height columns match the image",
            [
                f"{r.release_group_mbid}: columns {r.width}x{r.height}, image {r.actual_width}x{r.actual_height}"
                for r in wrong_size.itertuples()
            ],
            len(sized),
        )
    )
    mismatch = items[items["sha256"] != items["actual_sha256"]]
    checks.append(
        _check(
            "sha256 column matches image bytes",
            [f"{r.release_group_mbid} ({r.split})" for r in mismatch.itertuples()],
            len(items),
        )
    )

    in_range = items["label"].between(0, len(names) - 1)
    expected = items["label"].where(in_range, 0).map(dict(enumerate(names)))
    wrong = items[~in_range | (items["genre"] != expected)]
    checks.append(
        _check(
            "label matches genre (ClassLabel names)",
            [f"{r.release_group_mbid}: label {r.label} genre {r.genre!r}" for r in wrong.itertuples()],
            len(items),
        )
    )

    checks.append(
        _check(
            "label evidence in range (label_votes >= 0, label_confidence in [0, 1] or null)",
            label_evidence_problems(items),
            len(items),
        )
    )

    dup_ids = items["release_group_mbid"][items["release_group_mbid"].duplicated()].unique()
    checks.append(_check("each release group appears once", [str(m) for m in dup_ids], len(items)))

    shared = items[items["artist_mbid"].map(shared_artist).astype(bool)]  # an empty object Series would pick columns
    checks.append(
        _check(
            "artists in one split only (Various Artists excluded)",
            _in_several_splits(shared, "artist_mbid"),
            shared["artist_mbid"].nunique(),
        )
    )
    checks.append(
        _check(
            "no identical image in two splits",
            _in_several_splits(items[items["actual_sha256"].notna()], "actual_sha256"),
            len(items),
        )
    )

    checks.append(
        _check(
            f"no near-duplicates across splits (pHash distance <= {radius})",
            cross_split_near_pairs(items, radius),
            len(items),
        )
    )
    return checks


def label_evidence_problems(items: pd.DataFrame) -> list[str]:
    """Rows whose label_votes is negative or whose label_confidence is outside [0, 1] (null is allowed)."""
    votes = pd.to_numeric(items["label_votes"], errors="coerce")
    confidence = pd.to_numeric(items["label_confidence"], errors="coerce")
    bad_votes = votes < 0
    bad_confidence = ~confidence.between(0, 1) & confidence.notna()
    return [
        f"{r.release_group_mbid}: "
        + ", ".join(([f"label_votes {int(v)}"] if bv else []) + ([f"label_confidence {float(c):g}"] if bc else []))
        for r, v, c, bv, bc in zip(items.itertuples(), votes, confidence, bad_votes, bad_confidence)
        if bv or bc
    ]


def _in_several_splits(items: pd.DataFrame, key: str) -> list[str]:
    """'<key> in train+test' for every key value whose rows are in more than one split."""
    n_splits = items.groupby(key)["split"].nunique()
    leaking = items[items[key].isin(n_splits.index[n_splits > 1])]
    return [f"{k} in {'+'.join(sorted(set(g)))}" for k, g in leaking.groupby(key)["split"]]


def cross_split_near_pairs(items: pd.DataFrame, radius: int) -> list[str]:
    """Descriptions of item pairs in different splits whose fresh pHashes are within `radius`."""
    hashed = items[items["phash_actual"].notna()]
    if hashed.empty:
        return []
    # Search distinct hashes only; each carries the set of splits it occurs in as a bit mask.
    present = pd.crosstab(hashed["phash_actual"], hashed["split"]) > 0
    masks = (present.to_numpy() * (1 << np.arange(present.shape[1]))).sum(axis=1)
    hexes = present.index.to_numpy()
    example = hashed.groupby("phash_actual")["release_group_mbid"].first()
    single = (masks & (masks - 1)) == 0
    found = [f"{example[h]} and another cover share pHash {h}" for h in hexes[~single]]
    pairs = near_pairs(hashes_from_hex(list(hexes)), radius)
    if len(pairs):
        i, j = pairs[:, 0], pairs[:, 1]
        # Two hashes leak unless both occur in the same one split.
        leak = ~((masks[i] == masks[j]) & single[i])
        found += [f"{example[hexes[a]]} ~ {example[hexes[b]]} ({hexes[a]} vs {hexes[b]})" for a, b in pairs[leak]]
    return found


# --- reading --------------------------------------------------------------------------------


def _hash_image(data: bytes | None) -> tuple[str | None, str | None, str | None, int | None, int | None]:
    """(sha256, pHash, decode error, width, height) of one image's bytes, its size judged before decoding."""
    if data is None:
        return None, None, "no image bytes", None, None
    sha = hashlib.sha256(data).hexdigest()
    try:
        info = inspect_image(data, max_pixels=MAX_COVER_PIXELS, min_side=1, max_side=MAX_COVER_SIDE)
    except BadImage as exc:
        return sha, None, str(exc), None, None
    return sha, info.phash, None, info.width, info.height


def read_items(dataset_dir: Path) -> tuple[pd.DataFrame, list[Check], list[str]]:
    """Every row with fresh hashes, the shard-level checks, and the ClassLabel names."""
    frames, shard_issues, schema_issues, names_seen = [], [], [], {}
    files = shard_files(dataset_dir)
    n_shards = sum(len(paths) for paths in files.values())
    # Decoding and hashing release the GIL for most of their time, so threads share the work.
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        for split, paths in files.items():
            for path in paths:
                try:
                    schema = read_schema(path)
                    problems = schema_problems(schema)
                    if problems:
                        schema_issues += [f"{path.name}: {p}" for p in problems]
                        continue
                    names_seen.setdefault(tuple(class_names(schema)), path.name)
                    for batch in iter_batches(path, ["image", *METADATA_COLUMNS], batch_rows=16):
                        images = batch.column("image").field("bytes").to_pylist()
                        frame = batch.drop_columns(["image"]).to_pandas()
                        fresh = pd.DataFrame(
                            list(pool.map(_hash_image, images)),
                            index=frame.index,
                            columns=["actual_sha256", "phash_actual", "decode_error", "actual_width", "actual_height"],
                            dtype=object,
                        )
                        frame = frame.join(fresh)
                        frames.append(frame.assign(split=split, shard=path.name))
                except EquigenError as exc:
                    shard_issues.append(str(exc))
    checks = [
        _check("shards readable", shard_issues, n_shards),
        _check("shard schema matches the contract", schema_issues, n_shards),
    ]
    if len(names_seen) > 1:
        checks.append(
            _check("same ClassLabel names in every shard", [f"{f}: {list(n)}" for n, f in names_seen.items()])
        )
    names = list(next(iter(names_seen), ()))
    fresh = ["actual_sha256", "phash_actual", "decode_error", "actual_width", "actual_height"]
    columns = [*METADATA_COLUMNS, *fresh, "split", "shard"]
    items = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return items, checks, names


def file_checks(dataset_dir: Path) -> list[Check]:
    problems = [f"{name} is missing" for name in REQUIRED_FILES if not (dataset_dir / name).is_file()]
    croissant = dataset_dir / "croissant.json"
    if croissant.is_file() and not croissant.is_symlink():
        with open(croissant, "rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)
        try:
            if len(raw) > MAX_JSON_BYTES:
                raise ValueError("too large")
            json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            problems.append("croissant.json is not valid JSON")
    checks = [_check("README.md, croissant.json, checksums.sha256 present", problems)]
    checks.append(_check("no symbolic links (a copy or upload would lose what they point to)", symlinks(dataset_dir)))
    checks.append(_check("checksums.sha256 matches every file", checksum_problems(dataset_dir)))
    return checks


def run_verify(dataset_dir: Path | str, options: VerifyOptions | None = None, console: Console | None = None) -> bool:
    """Audit the dataset folder, print the checks; True when every check passes."""
    options = options or VerifyOptions()
    console = console or Console(stderr=True)
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise EquigenError(f"dataset folder {dataset_dir} does not exist")
    items, checks, names = verify_checks(dataset_dir, options.radius)
    _print_counts(console, items, names)
    _print_checks(console, checks, dataset_dir)
    return all(c.ok for c in checks)


def verify_checks(dataset_dir: Path, radius: int = DEFAULT_THRESHOLD) -> tuple[pd.DataFrame, list[Check], list[str]]:
    """All checks of a dataset folder, with the rows read back and the ClassLabel names."""
    items, shard_checks, names = read_items(dataset_dir)
    return items, file_checks(dataset_dir) + shard_checks + audit_items(items, names, radius), names


def count_table(items: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per genre x split counts of the rows read back (genres in ClassLabel order)."""
    genres = names + sorted(set(items["genre"].dropna()) - set(names))
    return pd.crosstab(items["genre"], items["split"]).reindex(index=genres, columns=list(SPLITS), fill_value=0)


def _print_counts(console: Console, items: pd.DataFrame, names: list[str]) -> None:
    counts = count_table(items, names)
    table = Table(title="Covers per genre and split (read back from the shards)")
    table.add_column("genre")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    for genre, row in counts.iterrows():
        table.add_row(inert(genre), *(str(int(row[s])) for s in SPLITS), str(int(row.sum())))
    table.add_row("total", *(str(int(counts[s].sum())) for s in SPLITS), str(len(items)), style="bold")
    console.print(table)


def _print_checks(console: Console, checks: list[Check], dataset_dir: Path) -> None:
    table = Table(title=f"verify {dataset_dir}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("checked", justify="right")
    table.add_column("violations", justify="right")
    table.add_column("examples")
    for check in checks:
        result = "[green]pass[/]" if check.ok else "[bold red]FAIL[/]"
        checked = "" if check.checked is None else str(check.checked)
        table.add_row(check.name, result, checked, str(check.violations), "\n".join(inert(e) for e in check.examples))
    console.print(table)
    failed = sum(not c.ok for c in checks)
    console.print("[green]dataset is clean[/]" if not failed else f"[bold red]{failed} check(s) failed[/]")
