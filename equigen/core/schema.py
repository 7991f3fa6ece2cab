"""The published columns, defined once: name, Arrow type and description of every column the shards and the
manifest carry. Shards, manifest, dataset card, Croissant metadata and verify all derive from this table, and a
table read back is checked against it by `conform` (pure: pyarrow only, no I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    # May be unknown (null) for every row: a manifest written before the column existed lacks it.
    optional: bool = False


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("image", IMAGE_TYPE, "The front cover image (original bytes)."),
        Column("split", pa.string(), "train, validation or test."),
        Column("label", pa.int64(), "Genre label id (the ClassLabel index of genre)."),
        Column("genre", pa.string(), "Genre name (the ClassLabel name of label)."),
        # The label's evidence: MusicBrainz genre-tag votes summed over every tag mapped to a genre, and the
        # winner's share (null only in datasets rebuilt from a manifest that predates them).
        Column(
            "label_votes",
            pa.int32(),
            "MusicBrainz genre tag votes of the release group, summed over every tag mapped to one "
            "of the genres (empty when unknown).",
            optional=True,
        ),
        Column(
            "label_confidence",
            pa.float32(),
            "The winning genre's share of label_votes, from 0 to 1 (empty when unknown).",
            optional=True,
        ),
        Column("release_group_mbid", pa.string(), "MusicBrainz release group MBID."),
        Column("artist_mbid", pa.string(), "MusicBrainz artist MBID."),
        Column("artist_name", pa.string(), "Artist credit name."),
        Column("title", pa.string(), "Release group title."),
        Column("year", pa.int32(), "Year of the first release (may be empty)."),
        Column("phash", pa.string(), "64-bit perceptual hash, 16 hex digits."),
        Column("sha256", pa.string(), "SHA-256 of the image bytes."),
        Column("width", pa.int32(), "Image width in pixels."),
        Column("height", pa.int32(), "Image height in pixels."),
        Column("source_url", pa.string(), "The Cover Art Archive URL the cover was downloaded from."),
    )
}

# Each file's columns in its order (the order is part of the bytes: same items, same files).
SHARD_COLUMNS = (
    "image",
    "label",
    "genre",
    "label_votes",
    "label_confidence",
    "release_group_mbid",
    "artist_mbid",
    "artist_name",
    "title",
    "year",
    "phash",
    "sha256",
    "width",
    "height",
)
# A shard's split is its file name; a manifest carries no images but says where each came from.
MANIFEST_COLUMNS = (
    "split",
    "genre",
    "label",
    "label_votes",
    "label_confidence",
    "release_group_mbid",
    "artist_mbid",
    "artist_name",
    "title",
    "year",
    "sha256",
    "phash",
    "width",
    "height",
    "source_url",
)
METADATA_COLUMNS = tuple(name for name in SHARD_COLUMNS if name != "image")  # a shard's columns but the image
OPTIONAL_COLUMNS = tuple(name for name, c in COLUMNS.items() if c.optional)


def arrow_schema(names: Sequence[str], metadata: dict | None = None) -> pa.Schema:
    return pa.schema([pa.field(name, COLUMNS[name].type) for name in names], metadata=metadata)


def _castable(actual: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether a stored type is one the schema's type is read from: the same, all-null, any integer width for an
    integer, an integer or any float for a float, and large strings for strings (other writers choose these)."""
    return (
        actual == wanted
        or pa.types.is_null(actual)
        or (pa.types.is_integer(wanted) and pa.types.is_integer(actual))
        or (pa.types.is_floating(wanted) and (pa.types.is_floating(actual) or pa.types.is_integer(actual)))
        or (pa.types.is_string(wanted) and pa.types.is_large_string(actual))
    )


def conform(table: pa.Table, names: Sequence[str]) -> tuple[pa.Table | None, list[str]]:
    """`table` as exactly the schema's `names` columns with the schema's types, or None and what is wrong.

    A missing optional column is added as nulls; a column of a castable type is cast (a value out of the
    schema type's range is a problem, never wrapped or truncated); columns not in `names` are dropped.
    """
    present = set(table.column_names)
    missing = [n for n in names if n not in present and not COLUMNS[n].optional]
    if missing:
        return None, [f"lacks columns {missing}"]
    problems, arrays = [], []
    for name in names:
        wanted = COLUMNS[name].type
        if name not in present:  # an older file: the column's values are unknown
            arrays.append(pa.nulls(table.num_rows, wanted))
            continue
        column = table.column(name)
        if not _castable(column.type, wanted):
            problems.append(f"column {name} is {column.type}, expected {wanted}")
            continue
        try:
            arrays.append(column.cast(wanted))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            problems.append(f"column {name} has values out of its {wanted} range")
    if problems:
        return None, problems
    return pa.table(arrays, schema=arrow_schema(names)), []
