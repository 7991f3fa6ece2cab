"""`equigen split` and `equigen verify` end to end on a harvested simulator catalog."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import copy_harvest, quiet_console
from PIL import Image

from equigen.core.catalog import Catalog
from equigen.core.defaults import SPLITS
from equigen.core.errors import EquigenError
from equigen.core.manifest import MANIFEST, read_manifest
from equigen.core.mbids import VARIOUS_ARTISTS
from equigen.core.options import BalanceOptions, SplitOptions
from equigen.curate.balance import run_balance
from equigen.curate.dedup import run_dedup
from equigen.publish.shards import CHECKSUMS, checksum_problems, shard_files
from equigen.publish.split import run_split
from equigen.publish.verify import run_verify, verify_checks

PER_GENRE = 6
SHARD_ROWS = 20


@pytest.fixture(scope="module")
def curated(harvested, tmp_path_factory):
    settings = copy_harvest(harvested, tmp_path_factory.mktemp("split") / "data")
    run_dedup(settings, console=quiet_console())
    run_balance(settings, BalanceOptions(per_genre=PER_GENRE, seed=0), console=quiet_console())
    return settings


@pytest.fixture(scope="module")
def published(curated):
    summary = run_split(curated, SplitOptions(seed=0, shard_rows=SHARD_ROWS), console=quiet_console())
    return curated, summary


def selection(settings) -> pd.DataFrame:
    with Catalog(settings.catalog_path) as catalog:
        return catalog.selection_frame()


def test_counts_match_selection_and_catalog(published):
    settings, summary = published
    sel = selection(settings)
    manifest = read_manifest(settings.dataset_dir / MANIFEST)
    assert len(manifest) == len(sel) == sum(summary["split_sizes"].values())
    assert (manifest.groupby("genre").size() == PER_GENRE).all()
    assert summary["leakage"]["artists_in_several_splits"] == 0
    assert summary["leakage"]["clusters_in_several_splits"] == 0
    # The catalog stores the same splits the dataset was written with.
    stored = sel.set_index("mbid")["split"]
    assert manifest.set_index("release_group_mbid")["split"].sort_index().equals(stored.sort_index().rename("split"))
    files = shard_files(settings.dataset_dir)
    for split in SPLITS:
        n = summary["split_sizes"][split]
        assert len(files[split]) == -(-n // SHARD_ROWS)
        assert sum(pq.ParquetFile(p).metadata.num_rows for p in files[split]) == n


def test_layout(published):
    root = published[0].dataset_dir
    for name in (
        "README.md",
        "croissant.json",
        MANIFEST,
        CHECKSUMS,
        "plots/split_genre_counts.png",
        "plots/artist_sizes.png",
        "plots/label_confidence.png",
    ):
        assert (root / name).is_file(), name
    assert not list(root.parent.glob(".dataset.*")), "no build folder left behind"
    card = (root / "README.md").read_text()
    assert card.startswith("---\n") and "image-classification" in card and "copyrighted" in card


def test_deterministic_bytes(published, tmp_path):
    settings, _ = published
    first = {
        p.relative_to(settings.dataset_dir): p.read_bytes() for p in settings.dataset_dir.rglob("*") if p.is_file()
    }
    run_split(settings, SplitOptions(seed=0, shard_rows=SHARD_ROWS), console=quiet_console())
    second = {
        p.relative_to(settings.dataset_dir): p.read_bytes() for p in settings.dataset_dir.rglob("*") if p.is_file()
    }
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first), [str(k) for k in first if first[k] != second[k]]


def test_datasets_round_trip(published, tmp_path):
    import datasets

    settings, summary = published
    for args, kwargs in ((("parquet",), {"data_dir": str(settings.dataset_dir)}), ((str(settings.dataset_dir),), {})):
        ds = datasets.load_dataset(*args, **kwargs, cache_dir=str(tmp_path / "hf"))
        assert set(ds) == set(SPLITS)
        assert {s: ds[s].num_rows for s in SPLITS} == summary["split_sizes"]
        features = ds["train"].features
        assert isinstance(features["image"], datasets.Image)
        assert isinstance(features["label"], datasets.ClassLabel)
        row = ds["train"][0]
        assert isinstance(row["image"], Image.Image)
        assert features["label"].int2str(row["label"]) == row["genre"]
        assert features["label_votes"] == datasets.Value("int32")
        assert features["label_confidence"] == datasets.Value("float32")
        assert isinstance(row["label_votes"], int) and 0 < row["label_confidence"] <= 1


def test_shards_publish_the_catalog_label_evidence(published):
    from helpers import read_metadata

    settings, _ = published
    shards = read_metadata(settings.dataset_dir).set_index("release_group_mbid").sort_index()
    catalog = selection(settings).set_index("mbid").sort_index()
    assert list(shards.index) == list(catalog.index)
    assert catalog["label_votes"].notna().all(), "a fresh harvest knows every label's evidence"
    assert (shards["label_votes"].astype(int) == catalog["label_votes"].astype(int)).all()
    assert (
        shards["label_confidence"].to_numpy("float32")
        == catalog["label_confidence"].to_numpy("float64").astype("float32")
    ).all()
    assert shards["label_confidence"].between(0, 1).all() and (shards["label_votes"] > 0).all()
    manifest = read_manifest(settings.dataset_dir / MANIFEST).set_index("release_group_mbid").sort_index()
    assert (manifest["label_votes"].astype(int) == shards["label_votes"].astype(int)).all()
    card = (settings.dataset_dir / "README.md").read_text()
    assert "## Label confidence" in card and (settings.dataset_dir / "plots" / "label_confidence.png").is_file()


def test_croissant_validates_and_generates_records(published):
    import mlcroissant as mlc

    settings, summary = published
    dataset = mlc.Dataset(jsonld=settings.dataset_dir / "croissant.json")  # raises on validation errors
    records = list(dataset.records("covers"))
    assert len(records) == sum(summary["split_sizes"].values())
    splits = pd.Series([r["covers/split"].decode() for r in records]).value_counts().to_dict()
    assert splits == summary["split_sizes"]
    assert isinstance(records[0]["covers/image"], Image.Image)


def test_verify_passes_on_a_good_dataset(published):
    assert run_verify(published[0].dataset_dir, console=quiet_console()) is True


def failed(dataset_dir: Path) -> set[str]:
    _, checks, _ = verify_checks(dataset_dir)
    return {c.name for c in checks if not c.ok}


def rewrite(path: Path, table: pa.Table) -> None:
    """Write a table with the same schema and writer options as the original shard."""
    pq.write_table(table, path, compression="zstd")


def test_verify_catches_a_planted_artist_leak(published, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(published[0].dataset_dir, root)
    files = shard_files(root)
    train = pa.concat_tables(pq.read_table(p) for p in files["train"])
    artists = [a for a in train.column("artist_mbid").to_pylist() if a and a != VARIOUS_ARTISTS]
    assert artists, "the harvested world should have train covers with an artist"
    # Credit the first test cover to a train artist: the same artist now sits in two splits.
    test_path = files["test"][0]
    table = pq.read_table(test_path)
    column = table.column("artist_mbid").to_pylist()
    column[0] = artists[0]
    index = table.schema.get_field_index("artist_mbid")
    rewrite(test_path, table.set_column(index, table.schema.field(index), pa.array(column, pa.string())))
    problems = failed(root)
    assert "artists in one split only (Various Artists excluded)" in problems
    assert run_verify(root, console=quiet_console()) is False


def test_verify_catches_a_near_duplicate_across_splits(published, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(published[0].dataset_dir, root)
    files = shard_files(root)
    source = pq.read_table(files["train"][0]).slice(0, 1).to_pylist()[0]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(source["image"]["bytes"])).convert("RGB").save(buffer, "JPEG", quality=60)
    clone = dict(
        source,
        image={"bytes": buffer.getvalue(), "path": "clone.jpg"},
        release_group_mbid="00000000-0000-4000-8000-000000000000",
        artist_mbid=VARIOUS_ARTISTS,
    )
    test_path = files["test"][0]
    table = pq.read_table(test_path)
    rewrite(test_path, pa.concat_tables([table, pa.Table.from_pylist([clone], schema=table.schema)]))
    problems = failed(root)
    assert any(p.startswith("no near-duplicates across splits") for p in problems)
    assert "sha256 column matches image bytes" in problems  # the clone kept the source's sha256


def test_verify_catches_a_corrupted_shard(published, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(published[0].dataset_dir, root)
    shard = shard_files(root)["train"][0]
    data = bytearray(shard.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 64):
        data[offset] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = failed(root)
    assert "checksums.sha256 matches every file" in problems
    assert len(problems) >= 2  # and the shard itself: unreadable, or an image that no longer decodes
    assert run_verify(root, console=quiet_console()) is False


def test_verify_missing_folder(tmp_path):
    with pytest.raises(EquigenError):
        run_verify(tmp_path / "nope", console=quiet_console())


def test_manifest_validation(published, tmp_path):
    manifest = read_manifest(published[0].dataset_dir / MANIFEST)
    assert {"split", "genre", "label", "sha256", "source_url", "year"} <= set(manifest.columns)
    assert manifest["source_url"].notna().all()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(EquigenError, match="not a readable Parquet"):
        read_manifest(bad)
    pq.write_table(pa.Table.from_pandas(manifest.drop(columns=["sha256"])), bad)
    with pytest.raises(EquigenError, match="lacks columns"):
        read_manifest(bad)
    broken = manifest.assign(split=manifest["split"].where(manifest.index > 0, "holdout"))
    pq.write_table(pa.Table.from_pandas(broken), bad)
    with pytest.raises(EquigenError, match="split values"):
        read_manifest(bad)
    with pytest.raises(EquigenError, match="not found"):
        read_manifest(tmp_path / "missing.parquet")


def test_split_needs_a_selection(harvested, tmp_path):
    settings = copy_harvest(harvested, tmp_path / "data")
    with pytest.raises(EquigenError, match="equigen balance"):
        run_split(settings, console=quiet_console())


def test_split_without_a_catalog_says_fetch_first(harvested, tmp_path):
    settings = copy_harvest(harvested, tmp_path / "data")
    settings.catalog_path.unlink()
    with pytest.raises(EquigenError, match="no catalog at .*equigen fetch"):
        run_split(settings, console=quiet_console())
    assert not settings.catalog_path.exists(), "a missing catalog is reported, not created"


def test_no_temporary_files_are_published(published):
    root = published[0].dataset_dir
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_card_and_manifest_never_import_the_split_verb():
    """the split verb -> card, manifest, split rules: the other way round (lazy imports too) would be a cycle."""
    import ast

    import equigen

    package = Path(equigen.__file__).parent
    for name in ("publish/card", "core/manifest", "publish/split_rules"):
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not imported & {"equigen.publish.split", "equigen.harvest.rebuild", "equigen.publish.verify"}, name


def test_split_refuses_an_empty_split(published, tmp_path):
    settings = copy_harvest(published[0], tmp_path / "data")
    before = (settings.dataset_dir / CHECKSUMS).read_bytes()
    with Catalog(settings.catalog_path) as catalog:
        catalog.replace_selection(catalog.selection_frame().iloc[:2][["mbid", "genre"]])
    with pytest.raises(EquigenError, match="would be empty"):
        run_split(settings, console=quiet_console())
    assert (settings.dataset_dir / CHECKSUMS).read_bytes() == before


def test_changed_image_fails_and_keeps_the_old_dataset(published, tmp_path):
    settings = copy_harvest(published[0], tmp_path / "data")
    before = (settings.dataset_dir / CHECKSUMS).read_bytes()
    victim = settings.data_dir / selection(settings)["path"].iloc[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(EquigenError, match=victim.name):
        run_split(settings, SplitOptions(shard_rows=SHARD_ROWS), console=quiet_console())
    assert (settings.dataset_dir / CHECKSUMS).read_bytes() == before
    assert not list(settings.data_dir.glob(".dataset.*"))


def test_manifest_selection_keeps_the_stored_splits(published, tmp_path):
    settings = copy_harvest(published[0], tmp_path / "data")
    shards_before = {p.name: p.read_bytes() for p in (settings.dataset_dir / "data").iterdir()}
    with Catalog(settings.catalog_path) as catalog:
        catalog.set_meta("selection_source", "manifest")  # as `equigen fetch --manifest` leaves it
    run_split(settings, SplitOptions(seed=123, shard_rows=SHARD_ROWS), console=quiet_console())
    shards_after = {p.name: p.read_bytes() for p in (settings.dataset_dir / "data").iterdir()}
    assert shards_after == shards_before


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fetch_manifest_rebuilds_the_identical_dataset(published, harvest_sim, tmp_path):
    from equigen.core.config import load_settings
    from equigen.harvest.rebuild import run_rebuild

    original = published[0]
    rebuilt = load_settings(
        data_dir=tmp_path / "rebuilt", musicbrainz_url=harvest_sim.url, coverart_url=harvest_sim.url
    )
    run_rebuild(rebuilt, original.dataset_dir / MANIFEST, console=quiet_console())
    run_split(rebuilt, SplitOptions(seed=0, shard_rows=SHARD_ROWS), console=quiet_console())
    assert _tree_bytes(rebuilt.dataset_dir) == _tree_bytes(original.dataset_dir)
    assert run_verify(rebuilt.dataset_dir, console=quiet_console())


def test_fetch_manifest_reports_sha256_mismatches(published, harvest_sim, tmp_path):
    from equigen.core.config import load_settings
    from equigen.harvest.rebuild import run_rebuild

    manifest = pq.read_table(published[0].dataset_dir / "manifest.parquet")
    sha = manifest.column("sha256").to_pylist()
    sha[0] = "0" * 64
    tampered = tmp_path / "manifest.parquet"
    pq.write_table(manifest.set_column(manifest.schema.get_field_index("sha256"), "sha256", pa.array(sha)), tampered)
    rebuilt = load_settings(
        data_dir=tmp_path / "rebuilt", musicbrainz_url=harvest_sim.url, coverart_url=harvest_sim.url
    )
    with pytest.raises(EquigenError, match="1 of .* not rebuilt identically"):
        run_rebuild(rebuilt, tampered, console=quiet_console())
    with Catalog(rebuilt.catalog_path) as catalog:
        assert catalog.covers_frame("ok").shape[0] == manifest.num_rows  # nothing lost: every cover is stored


def test_fetch_manifest_with_a_genre_outside_the_taxonomy_fails_before_downloading(published, harvest_sim, tmp_path):
    from equigen.core.config import load_settings
    from equigen.harvest.rebuild import run_rebuild

    manifest = pq.read_table(published[0].dataset_dir / "manifest.parquet")
    first = manifest.column("genre")[0].as_py()
    genres = ["Polka" if g == first else g for g in manifest.column("genre").to_pylist()]
    changed = tmp_path / "manifest.parquet"
    pq.write_table(manifest.set_column(manifest.schema.get_field_index("genre"), "genre", pa.array(genres)), changed)
    rebuilt = load_settings(
        data_dir=tmp_path / "rebuilt", musicbrainz_url=harvest_sim.url, coverart_url=harvest_sim.url
    )
    with pytest.raises(
        EquigenError, match="'Polka' are not in the taxonomy: pass the publisher's file with --taxonomy"
    ):
        run_rebuild(rebuilt, changed, console=quiet_console())
    with Catalog(rebuilt.catalog_path) as catalog:
        assert catalog.covers_frame(status=None).empty  # nothing fetched, nothing recorded


def test_an_interrupted_split_is_recovered_by_the_next_one(published, tmp_path):
    from rich.console import Console

    from equigen.publish.split import recover_interrupted_split

    root = tmp_path / "d"
    shutil.copytree(published[0].dataset_dir, root / "dataset")
    before = _tree_bytes(root / "dataset")
    os.replace(root / "dataset", root / ".dataset.old-4242")  # killed between the two renames of the swap
    (root / ".dataset.build-4343" / "data").mkdir(parents=True)  # killed while writing
    recover_interrupted_split(root / "dataset", Console(quiet=True))
    assert _tree_bytes(root / "dataset") == before
    assert sorted(p.name for p in root.iterdir()) == ["dataset"]


def test_checksums_never_lead_verify_outside_the_dataset(published, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(published[0].dataset_dir, root)
    with open(root / CHECKSUMS, "a", encoding="utf-8") as handle:
        handle.write(f"{'0' * 64}  ../../../../etc/passwd\n{'0' * 64}  /etc/hostname\n")
    problems = checksum_problems(root)
    assert sum("listed outside the dataset folder" in p for p in problems) == 2


def test_verify_prints_hostile_shard_text_inertly(published, tmp_path):
    from rich.console import Console

    root = tmp_path / "dataset"
    shutil.copytree(published[0].dataset_dir, root)
    evil = "[/evil]\x1b]8;;http://x\x07"
    for path in shard_files(root)["train"]:
        table = pq.read_table(path)
        index = table.schema.get_field_index("genre")
        rewrite(
            path, table.set_column(index, table.schema.field(index), pa.array([evil] * table.num_rows, pa.string()))
        )
    out = io.StringIO()
    assert run_verify(root, console=Console(file=out, width=200)) is False
    text = out.getvalue()
    assert "[/evil]" in text and "\x1b]8" not in text


def test_contact_sheet_shows_seeded_train_covers_per_genre_and_the_card_shows_it(published):
    from equigen.publish.card import SAMPLE_TILE, SAMPLES, pick_samples

    settings, _ = published
    root = settings.dataset_dir
    card = (root / "README.md").read_text()
    assert f"](plots/{SAMPLES})" in card, "the card shows the contact sheet"
    manifest = read_manifest(root / MANIFEST)
    genres = sorted(manifest["genre"].unique())
    with Image.open(root / "plots" / SAMPLES) as sheet:
        assert sheet.format == "JPEG"
        assert sheet.height >= len(genres) * SAMPLE_TILE  # one row per genre
        assert sheet.width >= 12 * SAMPLE_TILE  # 12 covers a row
    picked = pick_samples(manifest, genres, "train", seed=0)
    assert set(picked) == set(genres)
    for genre, rows in picked.items():
        assert (rows["split"] == "train").all() and (rows["genre"] == genre).all()
        assert len(rows) == min(12, int(((manifest["split"] == "train") & (manifest["genre"] == genre)).sum()))
    shuffled = manifest.sample(frac=1, random_state=1)
    again = pick_samples(shuffled, genres, "train", seed=0)
    assert all(list(again[g]["sha256"]) == list(picked[g]["sha256"]) for g in genres), "seeded, order-independent"
    assert not (root / "plots" / "samples-test.jpg").exists(), "other splits only with --samples-per-split"


def test_split_samples_per_split_draws_a_sheet_for_every_split(curated, tmp_path):
    from typer.testing import CliRunner

    from equigen.cli import app

    settings = copy_harvest(curated, tmp_path / "data")
    res = CliRunner().invoke(
        app, ["split", "--data-dir", str(settings.data_dir), "--shard-rows", "20", "--samples-per-split"]
    )
    assert res.exit_code == 0, res.output
    plots = settings.dataset_dir / "plots"
    assert sorted(p.name for p in plots.glob("samples*.jpg")) == [
        "samples-test.jpg",
        "samples-validation.jpg",
        "samples.jpg",
    ]
    assert run_verify(settings.dataset_dir, console=quiet_console()), "checksums cover the extra sheets"


def test_card_metadata_is_what_huggingface_hub_reads(published):
    """The card's YAML parsed by huggingface_hub's own DatasetCard (what the Hub reads): splits, files, features,
    class names and licence as written. The Hub's schema check itself is an online call (/api/validate-yaml)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    settings, summary = published
    card = DatasetCard.load(settings.dataset_dir / "README.md")
    data = card.data
    assert isinstance(data, DatasetCardData)
    assert data.license == "other" and data.task_categories == ["image-classification"]
    assert [c["split"] for c in data.configs[0]["data_files"]] == list(SPLITS)
    info = data.dataset_info
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == summary["split_sizes"]
    features = {f["name"]: f["dtype"] for f in info["features"]}
    assert features["image"] == "image"
    names = features["label"]["class_label"]["names"]
    manifest = read_manifest(settings.dataset_dir / MANIFEST)
    assert sorted(names.values()) == sorted(manifest["genre"].unique())
    assert DatasetCardData(**data.to_dict()).to_dict() == data.to_dict(), "round-trips through DatasetCardData"
