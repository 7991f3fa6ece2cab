"""Label evidence (label_votes, label_confidence): catalog -> shards, manifest, card, Croissant, verify, rebuild.

The catalog here is built directly (no network, no fetch): a few genres of random-noise covers with known
votes and confidences, then the real dedup, balance and split verbs.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import quiet_console, read_metadata
from PIL import Image

from equigen.core.catalog import Catalog
from equigen.core.config import load_settings
from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError
from equigen.core.images import inspect_image
from equigen.core.manifest import MANIFEST, MANIFEST_SOURCE, read_manifest
from equigen.core.options import BalanceOptions, SplitOptions
from equigen.core.records import CoverResult, ReleaseGroup
from equigen.core.storage import store_image
from equigen.core.taxonomy import load_taxonomy
from equigen.curate.balance import run_balance
from equigen.curate.dedup import run_dedup
from equigen.harvest.rebuild import manifest_release_groups
from equigen.publish.card import label_confidence_table
from equigen.publish.shards import shard_files
from equigen.publish.split import run_split
from equigen.publish.verify import label_evidence_problems, run_verify, verify_checks

PER_GENRE_CANDIDATES = 12
PER_GENRE = 8
SHARD_ROWS = 10
# One genre's confidences, cycled over its candidates; None is unknown evidence (an old manifest's rows).
CONFIDENCES = [1.0, 1.0, 0.9, 0.8, 0.75, 0.7, 0.6, 0.55, 1.0, 0.95, None, 0.857143]
EVIDENCE_CHECK = "label evidence in range (label_votes >= 0, label_confidence in [0, 1] or null)"


def _mbid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _noise_png(rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def build_catalog(data_dir: Path):
    """A catalog of 3 genres x 12 downloaded covers with known label evidence (no duplicates)."""
    settings = load_settings(data_dir=data_dir)
    genres = list(load_taxonomy(settings.taxonomy_path).genres[:3])
    rng, pixels = random.Random(5), np.random.default_rng(5)
    groups, covers = [], []
    for g, genre in enumerate(genres):
        shared_artist = _mbid(rng)
        for k in range(PER_GENRE_CANDIDATES):
            mbid = _mbid(rng)
            confidence = CONFIDENCES[k]
            votes = None if confidence is None else 3 + 7 * k + g
            artist = shared_artist if k < 2 else _mbid(rng)  # one artist with two covers per genre
            groups.append(
                ReleaseGroup(
                    mbid=mbid,
                    title=f"{genre} album {k}",
                    primary_type="Album",
                    secondary_types=(),
                    first_release_date=f"{1970 + k}-01-01",
                    artist_mbid=artist,
                    artist_name=f"artist {artist[:4]}",
                    tags=(),
                    genre=genre,
                    label_votes=votes,
                    label_confidence=confidence,
                )
            )
            data = _noise_png(pixels)
            info = inspect_image(data)
            path = store_image(settings.data_dir, info.sha256, info.ext, data)
            covers.append(
                (
                    CoverResult(
                        mbid=mbid,
                        status="ok",
                        http_status=200,
                        sha256=info.sha256,
                        phash=info.phash,
                        width=info.width,
                        height=info.height,
                        bytes=len(data),
                        format=info.format,
                        path=path,
                        source_url=f"https://coverartarchive.org/release-group/{mbid}/front-500",
                    ),
                    1,
                )
            )
    with Catalog(settings.catalog_path) as catalog:
        catalog.ensure_discovery_rows([(genre, genre.lower()) for genre in genres])
        catalog.add_release_groups(groups, found_via="test")
        catalog.record_covers(covers)
    return settings, genres


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    settings, genres = build_catalog(tmp_path_factory.mktemp("evidence") / "data")
    run_dedup(settings, console=quiet_console())
    run_balance(settings, BalanceOptions(per_genre=PER_GENRE, seed=0), console=quiet_console())
    run_split(settings, SplitOptions(seed=0, shard_rows=SHARD_ROWS), console=quiet_console())
    return settings, genres


def _selection(settings) -> pd.DataFrame:
    with Catalog(settings.catalog_path) as catalog:
        return catalog.selection_frame()


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- shards, datasets, manifest ---------------------------------------------------------


def test_shards_carry_the_catalog_label_evidence(built):
    settings, _ = built
    for paths in shard_files(settings.dataset_dir).values():
        schema = pq.read_schema(paths[0])
        assert schema.field("label_votes").type == pa.int32()
        assert schema.field("label_confidence").type == pa.float32()
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert features["label_votes"] == {"dtype": "int32", "_type": "Value"}
        assert features["label_confidence"] == {"dtype": "float32", "_type": "Value"}
    shards = read_metadata(settings.dataset_dir).set_index("release_group_mbid").sort_index()
    catalog = _selection(settings).set_index("mbid").sort_index()
    assert list(shards.index) == list(catalog.index)
    assert shards["label_votes"].isna().tolist() == catalog["label_votes"].isna().tolist()
    known = catalog["label_votes"].notna()
    assert known.sum() > 0 and (~known).sum() > 0, "the selection should hold known and unknown evidence"
    assert (shards.loc[known, "label_votes"].astype(int) == catalog.loc[known, "label_votes"].astype(int)).all()
    np.testing.assert_array_equal(
        shards["label_confidence"].to_numpy(dtype="float32"),
        catalog["label_confidence"].to_numpy(dtype="float64").astype("float32"),
    )
    manifest = read_manifest(settings.dataset_dir / MANIFEST).set_index("release_group_mbid").sort_index()
    assert pq.read_schema(settings.dataset_dir / MANIFEST).field("label_confidence").type == pa.float32()
    assert manifest["label_votes"].astype("Int64").equals(shards["label_votes"].astype("Int64"))
    np.testing.assert_array_equal(
        manifest["label_confidence"].to_numpy(dtype="float64", na_value=np.nan),
        shards["label_confidence"].to_numpy(dtype="float64"),
    )


def test_datasets_round_trips_label_evidence(built, tmp_path):
    import datasets

    settings, _ = built
    ds = datasets.load_dataset("parquet", data_dir=str(settings.dataset_dir), cache_dir=str(tmp_path / "hf"))
    expected = read_metadata(settings.dataset_dir)
    for split in SPLITS:
        features = ds[split].features
        assert features["label_votes"] == datasets.Value("int32")
        assert features["label_confidence"] == datasets.Value("float32")
        mine = expected[expected["split"] == split]
        assert ds[split]["release_group_mbid"] == mine["release_group_mbid"].tolist()
        votes = ds[split]["label_votes"]
        assert votes == [None if pd.isna(v) else int(v) for v in mine["label_votes"]]
        confidence = np.array([np.nan if c is None else c for c in ds[split]["label_confidence"]], dtype="float32")
        np.testing.assert_array_equal(confidence, mine["label_confidence"].to_numpy(dtype="float32"))


def test_old_manifest_without_label_evidence_still_reads(built, tmp_path):
    manifest = pq.read_table(built[0].dataset_dir / MANIFEST)
    old = tmp_path / "old.parquet"
    pq.write_table(manifest.drop(["label_votes", "label_confidence"]), old)
    frame = read_manifest(old)
    assert frame["label_votes"].isna().all() and frame["label_confidence"].isna().all()
    groups = manifest_release_groups(frame)
    assert len(groups) == manifest.num_rows
    assert all(g.label_votes is None and g.label_confidence is None for g in groups)


def test_manifest_release_groups_carry_the_published_evidence(built):
    frame = read_manifest(built[0].dataset_dir / MANIFEST)
    groups = {g.mbid: g for g in manifest_release_groups(frame)}
    for row in frame.itertuples():
        group = groups[row.release_group_mbid]
        if pd.isna(row.label_votes):
            assert group.label_votes is None and group.label_confidence is None
        else:
            assert group.label_votes == int(row.label_votes) and isinstance(group.label_votes, int)
            assert group.label_confidence == pytest.approx(float(row.label_confidence))


@pytest.mark.parametrize(
    "column, value, arrow_type, message",
    [
        ("label_confidence", 1.5, pa.float32(), "label_confidence values outside"),
        ("label_confidence", -0.25, pa.float64(), "label_confidence values outside"),
        ("label_votes", -3, pa.int32(), "negative label_votes"),
        ("label_votes", "many", pa.string(), "column label_votes is string"),
    ],
)
def test_manifest_with_bad_label_evidence_is_a_one_line_error(built, tmp_path, column, value, arrow_type, message):
    manifest = pq.read_table(built[0].dataset_dir / MANIFEST)
    values = manifest.column(column).to_pylist()
    values[0] = value
    if arrow_type == pa.string():
        values = [str(v) for v in values]
    bad = tmp_path / "bad.parquet"
    pq.write_table(
        manifest.set_column(
            manifest.schema.get_field_index(column), pa.field(column, arrow_type), pa.array(values, arrow_type)
        ),
        bad,
    )
    with pytest.raises(EquigenError, match=message) as info:
        read_manifest(bad)
    assert "\n" not in str(info.value)


# --- card, plot, Croissant, determinism -------------------------------------------------


def test_card_has_a_label_confidence_section_and_plot(built):
    settings, genres = built
    root = settings.dataset_dir
    card = (root / "README.md").read_text()
    assert "## Label confidence" in card
    assert "  - name: label_votes\n    dtype: int32" in card
    assert "  - name: label_confidence\n    dtype: float32" in card
    section = card.split("## Label confidence", 1)[1].split("\n## ", 1)[0]
    assert "80 %" in section and "(plots/label_confidence.png)" in section
    items = read_metadata(root)
    stats = label_confidence_table(items, genres).set_index("genre")
    for genre in genres:
        row = next(line for line in section.splitlines() if line.startswith(f"| {genre} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[1]) == int((items["genre"] == genre).sum())
        assert float(cells[3]) == pytest.approx(stats.loc[genre, "median_confidence"], abs=5e-4)
        confidence = items.loc[items["genre"] == genre, "label_confidence"].dropna()
        assert float(cells[5].rstrip(" %")) == pytest.approx(100 * (confidence == 1.0).mean(), abs=0.05)
        assert float(cells[6].rstrip(" %")) == pytest.approx(100 * (confidence < 0.75).mean(), abs=0.05)
    unknown = int(items["label_confidence"].isna().sum())
    assert unknown and f"{unknown} covers have unknown evidence" in section
    with Image.open(root / "plots" / "label_confidence.png") as plot:
        assert plot.format == "PNG" and plot.width >= 800
    assert "plots/label_confidence.png" in (root / "checksums.sha256").read_text()


def test_label_confidence_table_is_pure_and_handles_unknown_genres():
    items = pd.DataFrame(
        {
            "genre": ["A", "A", "A", "B"],
            "label_votes": pd.array([10, 4, None, None], "Int32"),
            "label_confidence": pd.array([1.0, 0.5, None, None], "Float32"),
        }
    )
    table = label_confidence_table(items, ["A", "B", "C"]).set_index("genre")
    assert table.loc["A", "covers"] == 3 and table.loc["A", "known"] == 2
    assert table.loc["A", "median_votes"] == 7 and table.loc["A", "median_confidence"] == 0.75
    assert table.loc["A", "full"] == 0.5 and table.loc["A", "below_075"] == 0.5
    assert table.loc["B", "known"] == 0 and np.isnan(table.loc["B", "median_confidence"])
    assert table.loc["C", "covers"] == 0


def test_croissant_describes_label_evidence(built):
    import mlcroissant as mlc

    settings, _ = built
    metadata = json.loads((settings.dataset_dir / "croissant.json").read_text())
    fields = {f["name"]: f for f in metadata["recordSet"][0]["field"]}
    assert fields["label_votes"]["dataType"] == "sc:Integer"
    assert fields["label_confidence"]["dataType"] == "sc:Float"
    records = list(mlc.Dataset(jsonld=settings.dataset_dir / "croissant.json").records("covers"))
    expected = read_metadata(settings.dataset_dir).set_index("release_group_mbid")
    for record in records:
        row = expected.loc[record["covers/release_group_mbid"].decode()]
        if not pd.isna(row["label_confidence"]):
            assert record["covers/label_confidence"] == pytest.approx(float(row["label_confidence"]))
            assert record["covers/label_votes"] == int(row["label_votes"])


def test_split_is_deterministic_with_label_evidence(built, tmp_path):
    settings, _ = built
    before = _tree_bytes(settings.dataset_dir)
    run_split(settings, SplitOptions(seed=0, shard_rows=SHARD_ROWS), console=quiet_console())
    after = _tree_bytes(settings.dataset_dir)
    assert before.keys() == after.keys()
    assert [k for k in before if before[k] != after[k]] == []


# --- rebuild from the manifest (what `fetch --manifest` stores, without the network) -------


def _rebuild(original, manifest_path: Path, dest: Path):
    """A new data folder holding what `equigen fetch --manifest` would store from `manifest_path`."""
    rebuilt = load_settings(data_dir=dest)
    manifest = read_manifest(manifest_path)
    with Catalog(original.catalog_path) as catalog:
        covers = catalog.covers_frame("ok").set_index("mbid")
    results = []
    for mbid in manifest["release_group_mbid"]:
        c = covers.loc[mbid]
        target = rebuilt.data_dir / c["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original.data_dir / c["path"], target)
        results.append(
            (
                CoverResult(
                    mbid=mbid,
                    status="ok",
                    http_status=200,
                    sha256=c["sha256"],
                    phash=c["phash"],
                    width=int(c["width"]),
                    height=int(c["height"]),
                    bytes=int(c["bytes"]),
                    format=c["format"],
                    path=c["path"],
                    source_url=c["source_url"],
                ),
                1,
            )
        )
    with Catalog(rebuilt.catalog_path) as catalog:
        catalog.add_release_groups(manifest_release_groups(manifest), found_via=f"{MANIFEST_SOURCE}:{MANIFEST}")
        catalog.record_covers(results)
        catalog.replace_selection(manifest.rename(columns={"release_group_mbid": "mbid"})[["mbid", "genre"]])
        catalog.set_splits(manifest.rename(columns={"release_group_mbid": "mbid"})[["mbid", "split"]])
        catalog.set_meta("selection_source", MANIFEST_SOURCE)
    run_split(rebuilt, SplitOptions(seed=0, shard_rows=SHARD_ROWS), console=quiet_console())
    return rebuilt


def test_rebuild_from_the_manifest_is_byte_identical(built, tmp_path):
    original, _ = built
    rebuilt = _rebuild(original, original.dataset_dir / MANIFEST, tmp_path / "rebuilt")
    assert _tree_bytes(rebuilt.dataset_dir) == _tree_bytes(original.dataset_dir)


def test_rebuild_from_an_old_manifest_publishes_unknown_evidence(built, tmp_path):
    original, _ = built
    old = tmp_path / MANIFEST
    pq.write_table(pq.read_table(original.dataset_dir / MANIFEST).drop(["label_votes", "label_confidence"]), old)
    rebuilt = _rebuild(original, old, tmp_path / "rebuilt")
    items = read_metadata(rebuilt.dataset_dir)
    assert items["label_votes"].isna().all() and items["label_confidence"].isna().all()
    card = (rebuilt.dataset_dir / "README.md").read_text()
    assert f"{len(items)} covers have unknown evidence" in card and "| n/a |" in card
    assert run_verify(rebuilt.dataset_dir, console=quiet_console()) is True


# --- verify ---------------------------------------------------------------------------


def _failed(root: Path) -> set[str]:
    return {c.name for c in verify_checks(root)[1] if not c.ok}


def test_verify_passes_and_flags_out_of_range_label_evidence(built, tmp_path):
    settings, _ = built
    assert EVIDENCE_CHECK not in _failed(settings.dataset_dir)
    root = tmp_path / "dataset"
    shutil.copytree(settings.dataset_dir, root)
    shard = shard_files(root)["train"][0]
    table = pq.read_table(shard)
    confidence = table.column("label_confidence").to_pylist()
    confidence[0] = 2.0
    table = table.set_column(
        table.schema.get_field_index("label_confidence"),
        table.schema.field("label_confidence"),
        pa.array(confidence, pa.float32()),
    )
    pq.write_table(table, shard, compression="zstd")  # same schema (float32): only the value is wrong
    _, checks, _ = verify_checks(root)
    evidence = next(c for c in checks if c.name == EVIDENCE_CHECK)
    assert not evidence.ok and evidence.violations == 1
    assert "label_confidence 2" in evidence.examples[0]
    assert "shard schema matches the contract" not in _failed(root)
    assert run_verify(root, console=quiet_console()) is False


def test_label_evidence_problems_is_pure():
    items = pd.DataFrame(
        {
            "release_group_mbid": ["a", "b", "c", "d"],
            "label_votes": [3, -1, None, 5],
            "label_confidence": [0.5, 0.5, None, 1.25],
        }
    )
    assert label_evidence_problems(items) == ["b: label_votes -1", "d: label_confidence 1.25"]


# --- balance --min-confidence on the catalog ---------------------------------------------


def test_balance_min_confidence_on_the_catalog(tmp_path):
    settings, genres = build_catalog(tmp_path / "data")
    run_dedup(settings, console=quiet_console())
    report = run_balance(settings, BalanceOptions(per_genre=6, seed=0, min_confidence=0.8), console=quiet_console())
    assert report["min_confidence"] == 0.8 and report["stored"]
    # per genre: 1.0, 1.0, 0.9, 0.8, 1.0, 0.95, 0.857143 reach 0.8; 0.75, 0.7, 0.6, 0.55 and unknown do not
    assert report["below_min_confidence"] == {g: 5 for g in genres}
    assert [row["eligible"] for row in report["genres"]] == [7, 7, 7]
    saved = json.loads((settings.data_dir / "reports" / "balance.json").read_text())
    assert saved["min_confidence"] == 0.8
    selection = _selection(settings)
    assert len(selection) == 18 and (selection["label_confidence"] >= 0.8).all()
    with Catalog(settings.catalog_path) as catalog:
        assert json.loads(catalog.get_meta("balance"))["min_confidence"] == 0.8
    with pytest.raises(EquigenError, match="lower --min-confidence"):
        run_balance(settings, BalanceOptions(per_genre=6, seed=0, min_confidence=0.96), console=quiet_console())
    with pytest.raises(EquigenError, match="--min-confidence must be between 0 and 1"):
        run_balance(settings, BalanceOptions(per_genre=6, seed=0, min_confidence=1.5), console=quiet_console())
    default = run_balance(settings, BalanceOptions(per_genre=6, seed=0), console=quiet_console())
    assert default["min_confidence"] == 0.0 and [row["eligible"] for row in default["genres"]] == [12, 12, 12]


def test_cli_balance_rejects_a_min_confidence_above_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "equigen.cli", "balance", "--data-dir", str(tmp_path / "d"), "--min-confidence", "1.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--min-confidence must be between 0 and 1, got 1.5" in lines[0]
    assert not (tmp_path / "d").exists()
    help_text = subprocess.run(
        [sys.executable, "-m", "equigen.cli", "balance", "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    assert "--min-confidence" in help_text and "share" in help_text
