"""`equigen fetch --manifest`: fetch exactly a published dataset's items and check their sha256.

The manifest's genres and splits are stored as the selection (no discovery, dedup or balance),
so `equigen split` then writes the same shards the publisher wrote, byte for byte, when every
cover still has the published bytes. Mismatches and missing covers are reported, never hidden.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from equigen.core.catalog import Catalog
from equigen.core.config import THUMBNAIL_SIZES, Settings
from equigen.core.errors import EquigenError
from equigen.core.lock import data_folder_lock
from equigen.core.manifest import MANIFEST_SOURCE, read_manifest
from equigen.core.records import ReleaseGroup
from equigen.core.storage import ensure_writable
from equigen.core.taxonomy import Taxonomy, load_taxonomy
from equigen.harvest.downloader import DownloadStats, download_catalog_covers
from equigen.harvest.forkserver import start_forkserver_early


def manifest_release_groups(manifest: pd.DataFrame) -> list[ReleaseGroup]:
    """Release groups as the manifest describes them (genre and its evidence as published, not re-resolved).

    label_votes / label_confidence are None where the manifest does not know them (an older manifest).
    """

    def value(row, name: str, kind):
        v = getattr(row, name, None)
        return None if v is None or pd.isna(v) else kind(v)

    return [
        ReleaseGroup(
            mbid=r.release_group_mbid,
            title=r.title or "",
            primary_type="Album",
            secondary_types=(),
            first_release_date=None if pd.isna(r.year) else str(int(r.year)),
            artist_mbid=None if pd.isna(r.artist_mbid) else r.artist_mbid,
            artist_name=None if pd.isna(r.artist_name) else r.artist_name,
            tags=(),
            genre=r.genre,
            label_votes=value(r, "label_votes", int),
            label_confidence=value(r, "label_confidence", float),
        )
        for r in manifest.itertuples()
    ]


def manifest_thumbnail(manifest: pd.DataFrame, default: int) -> int:
    """The thumbnail size the publisher used, read from the source URLs (front-250/500/1200)."""
    sizes = {int(m.group(1)) for u in manifest["source_url"].dropna() if (m := re.search(r"/front-(\d+)$", u))}
    if len(sizes) > 1:
        raise EquigenError(f"manifest mixes thumbnail sizes {sorted(sizes)}; cannot rebuild with one size")
    size = sizes.pop() if sizes else default
    if size not in THUMBNAIL_SIZES:
        raise EquigenError(f"manifest uses thumbnail size {size}, not one of {THUMBNAIL_SIZES}")
    return size


def compare_with_manifest(manifest: pd.DataFrame, covers: pd.DataFrame) -> pd.DataFrame:
    """Pure: per manifest item, 'match', 'mismatch' (other bytes) or the cover's non-ok status."""
    merged = manifest[["release_group_mbid", "genre", "sha256"]].merge(
        covers[["mbid", "status", "sha256"]].rename(columns={"mbid": "release_group_mbid", "sha256": "got"}),
        on="release_group_mbid",
        how="left",
    )
    merged["outcome"] = [
        (st if st != "ok" else ("match" if got == want else "mismatch")) if isinstance(st, str) else "missing"
        for st, got, want in zip(merged["status"], merged["got"], merged["sha256"])
    ]
    return merged


def run_rebuild(settings: Settings, manifest_path: Path, *, console: Console | None = None) -> DownloadStats:
    """Fetch exactly the items of `manifest_path` into the data folder (locked: one writer per folder)
    and store them as the selection with the published splits; EquigenError unless every cover matches."""
    console = console or Console(stderr=True)
    taxonomy = load_taxonomy(settings.taxonomy_path)
    ensure_writable(settings.data_dir)
    with data_folder_lock(settings.data_dir, "fetch"), Catalog(settings.catalog_path) as catalog:
        catalog.remember_taxonomy(taxonomy if settings.taxonomy_path is not None else None)
        return _rebuild(settings, catalog, taxonomy, Path(manifest_path), console)


def _rebuild(
    settings: Settings, catalog: Catalog, taxonomy: Taxonomy, manifest_path: Path, console: Console
) -> DownloadStats:
    start_forkserver_early()  # its imports overlap reading the manifest and the catalog
    manifest = read_manifest(manifest_path)
    thumbnail = manifest_thumbnail(manifest, settings.thumbnail)
    if thumbnail != settings.thumbnail:
        console.print(f"using the manifest's thumbnail size {thumbnail}")
        settings = dataclasses.replace(settings, thumbnail=thumbnail)
    genres = tuple(dict.fromkeys(manifest.sort_values("label")["genre"]))
    unknown = [g for g in genres if g not in taxonomy.genres]
    if unknown:
        raise EquigenError(
            f"the manifest's genre(s) {', '.join(repr(g[:40]) for g in unknown[:3])} are not in the "
            "taxonomy: pass the publisher's file with --taxonomy"
        )
    catalog.add_release_groups(manifest_release_groups(manifest), found_via=f"{MANIFEST_SOURCE}:{manifest_path.name}")
    started = time.monotonic()
    stats = asyncio.run(download_catalog_covers(settings, catalog, genres=genres, console=console))
    wall = time.monotonic() - started
    covers = catalog.covers_frame(status=None)
    compared = compare_with_manifest(manifest, covers)
    ok = compared[compared.outcome.isin(["match", "mismatch"])]
    catalog.replace_selection(ok.rename(columns={"release_group_mbid": "mbid"})[["mbid", "genre"]])
    splits = manifest.set_index("release_group_mbid")["split"]
    catalog.set_splits(pd.DataFrame({"mbid": ok.release_group_mbid, "split": ok.release_group_mbid.map(splits)}))
    catalog.set_meta("selection_source", MANIFEST_SOURCE)

    table = Table(title=f"rebuild from {manifest_path.name}")
    for col in ("genre", "items", "match", "mismatch", "not fetched"):
        table.add_column(col, justify="left" if col == "genre" else "right")
    for genre, rows in compared.groupby("genre", sort=False):
        table.add_row(
            genre,
            str(len(rows)),
            str((rows.outcome == "match").sum()),
            str((rows.outcome == "mismatch").sum()),
            str((~rows.outcome.isin(["match", "mismatch"])).sum()),
        )
    console.print(table)
    console.print(f"wall {wall:.1f} s | covers downloaded {stats.downloaded} ({stats.covers_per_second:.1f}/s)")
    bad = compared[compared.outcome != "match"]
    if len(bad):
        examples = ", ".join(
            f"{m} ({o})" for m, o in bad[["release_group_mbid", "outcome"]].head(3).itertuples(index=False)
        )
        raise EquigenError(
            f"{len(bad)} of {len(compared)} manifest items were not rebuilt identically, e.g. {examples};"
            " re-run to retry failures, or `equigen split` to publish what matched"
        )
    console.print(f"all {len(compared)} covers match the manifest; next: `equigen split` writes the identical dataset")
    return stats
