"""equigen.baseline: training, resume, DDP, outputs and errors, on a tiny procedurally drawn dataset."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.stats
from PIL import Image

from equigen.baseline import BaselineConfig, BaselineResult, parse_weights_option, run_baseline
from equigen.core.errors import EquigenError

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

GENRES = ["ambient", "jazz", "metal", "pop"]
PER_CLASS = {"train": 20, "validation": 8, "test": 8}
SHARDS = {"train": 2, "validation": 1, "test": 1}
SIZE = 40
METRIC_KEYS = {
    "accuracy",
    "top3_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "per_genre",
    "best_epoch",
    "epochs_run",
    "train_images_per_s",
    "params",
    "config",
    "chance",
}
SCHEMA = pa.schema(
    [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("label", pa.int64()),
        ("genre", pa.string()),
        ("release_group_mbid", pa.string()),
        ("artist_mbid", pa.string()),
        ("artist_name", pa.string()),
        ("title", pa.string()),
        ("year", pa.int32()),
        ("phash", pa.string()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)


def draw_cover(label: int, rng: np.random.Generator) -> bytes:
    """A JPEG whose colour and stripe direction give away its class, with noise so it is not trivial."""
    palette = np.array([[40, 90, 200], [230, 170, 30], [200, 30, 40], [60, 200, 90], [150, 60, 200]], float)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    coord = (xx, yy, xx + yy, xx - yy, xx * 0)[label % 5]
    stripes = (np.sin(coord * 0.8 + rng.uniform(0, 6.3)) > 0)[..., None] * 60.0
    img = palette[label] * rng.uniform(0.7, 1.0) + stripes + rng.normal(0, 25, (SIZE, SIZE, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_tiny_dataset(root: Path, genres: list[str] = GENRES, seed: int = 0) -> Path:
    """Shards in the EquiGen / Hugging Face layout: DS/data/{split}-{i:05d}-of-{n:05d}.parquet."""
    rng = np.random.default_rng(seed)
    features = {"image": {"_type": "Image"}, "label": {"_type": "ClassLabel", "names": genres}}
    schema = SCHEMA.with_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    (root / "data").mkdir(parents=True)
    for split, per_class in PER_CLASS.items():
        rows = []
        for label, genre in enumerate(genres):
            for k in range(per_class):
                data = draw_cover(label, rng)
                rows.append(
                    {
                        "image": {"bytes": data, "path": f"{split}-{genre}-{k}.jpg"},
                        "label": label,
                        "genre": genre,
                        "release_group_mbid": f"rg-{split}-{label}-{k}",
                        "artist_mbid": f"a-{label}-{k}",
                        "artist_name": f"Artist {k}",
                        "title": f"T{k}",
                        "year": 1990 + k if k % 3 else None,
                        "phash": f"{k:016x}",
                        "sha256": f"{k:064x}",
                        "width": SIZE,
                        "height": SIZE,
                    }
                )
        rng.shuffle(rows)
        n = SHARDS[split]
        for i in range(n):
            table = pa.Table.from_pylist(rows[i::n], schema=schema)
            pq.write_table(table, root / "data" / f"{split}-{i:05d}-of-{n:05d}.parquet")
    return root


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # On a small shared machine two OpenMP threads contending with other processes run ~5x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "dataset")


def fast_config(**kw) -> BaselineConfig:
    base = dict(
        models=("resnet18",),
        epochs=1,
        image_size=32,
        batch_size=8,
        lr=2e-3,
        weight_decay=0.01,
        warmup_epochs=0,
        label_smoothing=0.0,
        patience=0,
        workers=0,
        device="cpu",
        pretrained=False,  # tests cannot download; the pretrained path is tested with a pre-seeded cache
    )
    return BaselineConfig(**{**base, **kw})


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def check_model_outputs(model_dir: Path, genres: list[str], epochs: int, n_test: int) -> dict:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert set(metrics["per_genre"]) == set(genres)
    assert sum(g["support"] for g in metrics["per_genre"].values()) == n_test
    assert metrics["chance"] == pytest.approx(1 / len(genres))
    assert 0 <= metrics["accuracy"] <= metrics["top3_accuracy"] <= 1
    assert metrics["epochs_run"] == epochs and 1 <= metrics["best_epoch"] <= epochs
    assert metrics["params"] > 0 and metrics["train_images_per_s"] > 0
    cm = pd.read_csv(model_dir / "confusion_matrix.csv", index_col=0)
    assert cm.shape == (len(genres), len(genres))
    assert list(cm.columns) == genres and list(cm.index) == genres
    assert cm.to_numpy().sum() == n_test
    for png in ("confusion_matrix.png", "learning_curves.png"):
        path = model_dir / png
        assert path.stat().st_size > 10_000
        with Image.open(path) as im:
            assert im.size[0] > 400 and im.size[1] > 300
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert (model_dir / "last.pt").is_file() and (model_dir / "best.pt").is_file()
    assert np.load(model_dir / "test_scores.npy").shape == (n_test, len(genres))
    return metrics


@pytest.mark.slow
def test_two_models_two_seeds_train_and_report(tiny_dataset, tmp_path):
    cfg = fast_config(models=("resnet18", "efficientnet_b0"), epochs=3, image_size=48, run_name="cmp", seeds=(0, 1))
    result = run_baseline(tiny_dataset, tmp_path / "runs", cfg, progress=False)

    run_dir = tmp_path / "runs" / "cmp"
    assert isinstance(result, BaselineResult) and list(result.models) == list(cfg.models)
    assert result.run_dir == run_dir and result.report == run_dir / "report.md"
    n_test = PER_CLASS["test"] * len(GENRES)
    for model in cfg.models:
        per_seed = [check_model_outputs(run_dir / model / f"seed-{s}", GENRES, 3, n_test) for s in (0, 1)]
        summary = json.loads((run_dir / model / "metrics.json").read_text())
        assert summary == json.loads(json.dumps(result.models[model]))
        accuracies = [m["accuracy"] for m in per_seed]
        assert summary["accuracy"] == pytest.approx(np.mean(accuracies))
        assert summary["sd"]["accuracy"] == pytest.approx(np.std(accuracies, ddof=1))
        lo, hi = summary["ci95"]["accuracy"]
        assert 0 <= lo <= summary["accuracy"] <= hi <= 1
        assert hi - lo > 0 or summary["accuracy"] == 1.0  # a perfect score has nothing to resample
        for g in GENRES:
            f1 = summary["per_genre"][g]
            assert f1["f1"] == pytest.approx(np.mean([m["per_genre"][g]["f1"] for m in per_seed]))
            assert f1["f1_ci95"][0] <= f1["f1"] + 1e-9 and f1["f1"] <= f1["f1_ci95"][1] + 1e-9
        gap = summary["overfitting"]
        history = json.loads((run_dir / model / "seed-0" / "history.json").read_text())
        assert all(h["gap_acc"] == pytest.approx(h["train_acc"] - h["val_acc"]) for h in history)
        assert set(gap) >= {"gap_acc_at_best", "gap_loss_at_best", "max_gap_acc", "epochs_after_best"}
        assert history[-1]["train_loss"] < history[0]["train_loss"] * 0.95, (model, history)
        for png in ("confusion_matrix.png", "confident_errors.png"):
            with Image.open(run_dir / model / png) as im:
                assert im.size[0] > 400
    # The classes are easy: the ResNet must beat chance clearly on the test split.
    assert result.models["resnet18"]["accuracy"] > 0.5
    # The paired comparison: the later model against the first, recomputed from the saved test scores.
    assert result.comparison.startswith("efficientnet_b0 − resnet18: ")
    labels = np.concatenate(
        [
            pq.read_table(p, columns=["label"]).column("label").to_numpy()
            for p in sorted((tiny_dataset / "data").glob("test-*.parquet"))
        ]
    )
    right = {
        m: np.mean([np.load(run_dir / m / f"seed-{s}" / "test_scores.npy") for s in (0, 1)], axis=0).argmax(1) == labels
        for m in cfg.models
    }
    b = int((right["efficientnet_b0"] & ~right["resnet18"]).sum())
    c = int((~right["efficientnet_b0"] & right["resnet18"]).sum())
    expected_p = min(1.0, 2 * scipy.stats.binom.cdf(min(b, c), b + c, 0.5)) if b + c else 1.0
    compared = result.models["efficientnet_b0"]["compared_with"]["resnet18"]
    assert (compared["only_this_right"], compared["only_other_right"]) == (b, c)
    assert compared["mcnemar_p"] == pytest.approx(expected_p)
    report = result.report.read_text()
    assert result.comparison in report.splitlines()[2]  # the headline, under the title
    for model in cfg.models:
        assert model in report and f"{model}/confident_errors.png" in report
        assert f"{model}/seed-0/learning_curves.png" in report
    assert all(g in report for g in GENRES) and "±" in report
    assert (run_dir / "per_genre_f1.png").stat().st_size > 10_000
    data = json.loads((run_dir / "report.json").read_text())
    assert [r["model"] for r in data["models"]] == list(cfg.models)
    assert set(data["per_genre_f1"]) == set(GENRES)
    assert data["comparisons"][0]["sentence"] == result.comparison


@pytest.mark.slow  # trains twice: a run, then its resumption
def test_resume_continues_from_checkpoint(tiny_dataset, tmp_path):
    runs = tmp_path / "runs"
    run_baseline(tiny_dataset, runs, fast_config(run_name="r"), progress=False)
    first = json.loads((runs / "r" / "resnet18" / "seed-0" / "history.json").read_text())
    assert len(first) == 1

    with pytest.raises(EquigenError) as e:  # the same run again without --resume would clobber it
        run_baseline(tiny_dataset, runs, fast_config(run_name="r"), progress=False)
    assert "--resume" in one_line_error(e)

    result = run_baseline(tiny_dataset, runs, fast_config(epochs=2, resume=True), progress=True)
    assert result.run_dir == runs / "r"  # the newest run, found without --name
    history = json.loads((runs / "r" / "resnet18" / "seed-0" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first[0]  # epoch 1 was restored, not retrained
    ckpt = torch.load(runs / "r" / "resnet18" / "seed-0" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["scheduler"]["last_epoch"] == 2 * history[0]["train_images"] // 8
    check_model_outputs(runs / "r" / "resnet18" / "seed-0", GENRES, 2, PER_CLASS["test"] * len(GENRES))


def test_sgd_with_batch_cap(tiny_dataset, tmp_path):
    cfg = fast_config(optimizer="sgd", lr=0.05, max_train_batches=2, patience=1, epochs=2, run_name="sgd")
    result = run_baseline(tiny_dataset, tmp_path / "runs", cfg, progress=False)
    history = json.loads((result.run_dir / "resnet18" / "seed-0" / "history.json").read_text())
    assert [h["train_images"] for h in history] == [16] * len(history)
    assert result.models["resnet18"]["config"]["optimizer"] == "sgd"
    # One seed: the model's confusion matrix is its seed's, so the seed's plot is reused, not drawn again.
    model_dir = result.run_dir / "resnet18"
    assert (model_dir / "confusion_matrix.csv").read_text() == (
        model_dir / "seed-0" / "confusion_matrix.csv"
    ).read_text()
    assert (model_dir / "confusion_matrix.png").read_bytes() == (
        model_dir / "seed-0" / "confusion_matrix.png"
    ).read_bytes()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_dataset, tmp_path):
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "equigen.cli",
        "baseline",
        "--dataset",
        str(tiny_dataset),
        "--runs-dir",
        str(runs),
        "--models",
        "resnet18",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--name",
        "ddp",
        "--no-progress",
        "--no-pretrained",
        "--seeds",
        "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = runs / "ddp"
    # Predictions from both ranks are gathered: the metrics cover the whole test split once.
    metrics = check_model_outputs(run_dir / "resnet18" / "seed-0", GENRES, 1, PER_CLASS["test"] * len(GENRES))
    assert metrics["device"] == "2 x cpu"
    history = json.loads((run_dir / "resnet18" / "seed-0" / "history.json").read_text())
    assert history[0]["train_images"] == PER_CLASS["train"] * len(GENRES)  # both halves of the train split
    assert json.loads((run_dir / "report.json").read_text())["models"][0]["model"] == "resnet18"
    assert proc.stdout.count("report:") == 1  # only rank 0 prints


def test_corrupt_shard_names_the_file(tiny_dataset, tmp_path):
    ds = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, ds)
    bad = ds / "data" / "validation-00000-of-00001.parquet"
    bad.write_bytes(b"this is not parquet" * 50)
    with pytest.raises(EquigenError) as e:
        run_baseline(ds, tmp_path / "runs", fast_config(), progress=False)
    assert str(bad) in one_line_error(e)


def test_undecodable_image_names_shard_and_row(tiny_dataset, tmp_path):
    ds = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, ds)
    path = ds / "data" / "validation-00000-of-00001.parquet"
    table = pq.read_table(path)
    images = table.column("image").to_pylist()
    images[3]["bytes"] = b"not a jpeg"
    column = pa.array(images, table.schema.field("image").type)
    pq.write_table(table.set_column(0, table.schema.field("image"), column), path)
    with pytest.raises(EquigenError) as e:  # decoded in a worker process, still one line
        run_baseline(ds, tmp_path / "runs", fast_config(workers=1), progress=False)
    msg = one_line_error(e)
    assert str(path) in msg and "row 3" in msg


def test_wrong_schema_and_missing_shard(tiny_dataset, tmp_path):
    ds = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, ds)
    bad = ds / "data" / "test-00000-of-00001.parquet"
    pq.write_table(pa.table({"label": [0, 1], "genre": ["a", "b"]}), bad)
    with pytest.raises(EquigenError) as e:
        run_baseline(ds, tmp_path / "runs", fast_config(), progress=False)
    assert str(bad) in one_line_error(e) and "schema" in str(e.value)

    (ds / "data" / "train-00001-of-00002.parquet").unlink()
    with pytest.raises(EquigenError) as e:
        run_baseline(ds, tmp_path / "runs", fast_config(), progress=False)
    assert "train-00001-of-00002.parquet" in one_line_error(e)


def test_missing_or_empty_dataset(tmp_path):
    with pytest.raises(EquigenError) as e:
        run_baseline(tmp_path / "nope", tmp_path / "runs", fast_config(), progress=False)
    assert "nope" in one_line_error(e)
    (tmp_path / "empty" / "data").mkdir(parents=True)
    with pytest.raises(EquigenError) as e:
        run_baseline(tmp_path / "empty", tmp_path / "runs", fast_config(), progress=False)
    assert "no train shards" in one_line_error(e)


def test_class_names_fall_back_to_genre_column(tiny_dataset, tmp_path):
    from equigen.baseline.data import class_names

    ds = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, ds)
    for path in (ds / "data").glob("train-*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.replace_schema_metadata(None), path)
    assert class_names(ds) == GENRES


def test_unknown_model_is_rejected(tiny_dataset, tmp_path):
    with pytest.raises(EquigenError) as e:
        run_baseline(tiny_dataset, tmp_path / "runs", fast_config(models=("resnet19",)), progress=False)
    msg = one_line_error(e)
    assert "resnet19" in msg and "resnet50" in msg and "efficientnet_b0" in msg
    assert not (tmp_path / "runs").exists()


def test_weights_missing_or_unloadable(tiny_dataset, tmp_path):
    with pytest.raises(EquigenError) as e:
        run_baseline(tiny_dataset, tmp_path / "runs", fast_config(weights=tmp_path / "none.pth"), progress=False)
    assert "none.pth" in one_line_error(e)
    assert not (tmp_path / "runs").exists()

    from equigen.baseline.models import build_model

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(EquigenError) as e:
        build_model("resnet18", 4, junk)
    assert "junk.pth" in one_line_error(e)


def test_weights_load_backbone_and_replace_head(tmp_path):
    from equigen.baseline.models import build_model

    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18(weights=None)  # stands in for the ImageNet file; nothing downloaded
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet.state_dict(), path)

    model = build_model("resnet18", len(GENRES), path)
    assert model.fc.out_features == len(GENRES)
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet.layer4[1].bn2.running_var)

    with pytest.raises(EquigenError) as e:  # a resnet18 file does not fit resnet34
        build_model("resnet34", len(GENRES), path)
    assert "resnet34" in one_line_error(e)

    effnet = torchvision.models.efficientnet_b0(weights=None)
    torch.save({"state_dict": effnet.state_dict()}, tmp_path / "eff.pth")
    model = build_model("efficientnet_b0", 3, tmp_path / "eff.pth")
    assert model.classifier[-1].out_features == 3
    assert torch.equal(model.features[0][0].weight, effnet.features[0][0].weight)


def test_config_validation_and_weights_option(tmp_path):
    with pytest.raises(EquigenError):
        BaselineConfig(epochs=0).validated()
    with pytest.raises(EquigenError):
        BaselineConfig(optimizer="adam").validated()
    with pytest.raises(EquigenError):  # one bare path cannot serve two architectures
        BaselineConfig(weights=tmp_path / "w.pth").validated()
    assert parse_weights_option(None) is None
    assert parse_weights_option(["w.pth"]) == Path("w.pth")
    assert parse_weights_option(["resnet50=a.pth", "efficientnet_b0=b.pth"]) == {
        "resnet50": Path("a.pth"),
        "efficientnet_b0": Path("b.pth"),
    }
    with pytest.raises(EquigenError):
        parse_weights_option(["a.pth", "b.pth"])
    cfg = BaselineConfig(weights={"resnet50": Path("a.pth")}).validated()
    assert cfg.weights_for("resnet50") == Path("a.pth") and cfg.weights_for("efficientnet_b0") is None


def test_config_errors_name_the_cli_flags():
    cases = (
        (BaselineConfig(models=()), "--models"),
        (BaselineConfig(models=("resnet18", "resnet18")), "--models"),
        (BaselineConfig(run_name="a/b"), "--name"),
    )
    for cfg, flag in cases:
        with pytest.raises(EquigenError) as e:
            cfg.validated()
        assert one_line_error(e).split()[0].rstrip(":") == flag


def test_cli_runs_under_the_data_dir_from_the_environment(tiny_dataset, tmp_path):
    from typer.testing import CliRunner

    from equigen.cli import app

    data_dir = tmp_path / "data"
    args = [
        "baseline",
        "--dataset",
        str(tiny_dataset),
        "--models",
        "resnet18",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--max-train-batches",
        "1",
        "--name",
        "cli",
        "--no-progress",
        "--no-pretrained",
        "--seeds",
        "0",
    ]
    res = CliRunner().invoke(app, args, env={"EQUIGEN_DATA_DIR": str(data_dir)})
    assert res.exit_code == 0, res.output
    report = data_dir / "runs" / "cli" / "report.md"
    assert report.is_file() and res.stdout.strip() == f"report: {report}"

    res = CliRunner().invoke(app, [*args, "--runs-dir", str(tmp_path / "elsewhere"), "--epochs", "0"])
    assert "--epochs" in str(res.exception) and not (tmp_path / "elsewhere").exists()


def test_readme_torchrun_line_parses_with_the_cli():
    import typer

    from equigen.cli import app

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    line = next(text for text in readme.splitlines() if text.startswith("torchrun"))
    verb, *args = line.split("#")[0].split("-m equigen.cli", 1)[1].split()
    root = typer.main.get_command(app)
    command = root.get_command(root.make_context("equigen", [verb]), verb)
    params = command.make_context(verb, args).params
    assert params["models"] == "resnet50,efficientnet_b0" and params["data_dir"] == Path("D")


def test_cli_user_error_exits_with_the_user_error_code(tmp_path):
    from equigen.core.errors import EXIT_USER_ERROR

    cmd = [sys.executable, "-m", "equigen.cli", "baseline", "--dataset", str(tmp_path), "--models", ","]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USER_ERROR and "--models" in proc.stderr


def test_import_equigen_baseline_is_light():
    code = "import sys, equigen.baseline; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- pretrained weights: torchvision's weights API, cached under $TORCH_HOME; tests never download ---------------


def _seed_cache(monkeypatch, torch_home: Path, name: str) -> torch.nn.Module:
    """Pre-seed $TORCH_HOME's hub cache with a state dict the test writes, and forbid the network fetch."""
    from equigen.baseline import models

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(models, "_download", lambda url, path: pytest.fail(f"tried to download {url}"))
    torch.manual_seed(7)
    imagenet = torchvision.models.get_model(name, weights=None)
    path = models.cached_weights_path(name)
    assert path.parent == torch_home / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), path)
    return imagenet


@pytest.mark.slow  # trains from the preseeded ImageNet cache
def test_pretrained_path_loads_the_preseeded_cache_with_the_weights_preprocessing(tiny_dataset, tmp_path, monkeypatch):
    from equigen.baseline.models import build_model, fetch_pretrained

    imagenet = _seed_cache(monkeypatch, tmp_path / "torch", "resnet18")
    model = build_model("resnet18", len(GENRES), fetch_pretrained("resnet18"))
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight) and model.fc.out_features == len(GENRES)

    cfg = fast_config(pretrained=True, image_size=None, epochs=3, freeze_epochs=1, run_name="pre", max_train_batches=2)
    result = run_baseline(tiny_dataset, tmp_path / "runs", cfg, progress=False)
    metrics = result.models["resnet18"]
    # ResNet18_Weights.IMAGENET1K_V1: resize 256, crop 224, ImageNet mean/std, bilinear
    assert metrics["preprocessing"] == {
        "image_size": 224,
        "resize": 256,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",
    }
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["start"]["resnet18"] == "ImageNet weights resnet18-f37072fd.pth"
    history = json.loads((result.run_dir / "resnet18" / "seed-0" / "history.json").read_text())
    # --freeze-epochs 1: the backbone's learning rate is 0 for the first epoch, then it fine-tunes at lr x 0.1.
    assert history[0]["backbone_lr"] == 0 and history[0]["lr"] > 0
    assert 0 < history[1]["backbone_lr"] < history[1]["lr"] or history[1]["lr"] == 0


def test_pretrained_offline_with_an_empty_cache_fails_in_one_line(tiny_dataset, tmp_path, monkeypatch):
    import urllib.error

    from equigen.baseline import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, path):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(models, "_download", offline)
    with pytest.raises(EquigenError) as e:
        run_baseline(tiny_dataset, tmp_path / "runs", fast_config(pretrained=True), progress=False)
    msg = one_line_error(e)
    for needle in ("--weights resnet18=PATH", "--no-pretrained", "resnet18-f37072fd.pth", str(tmp_path / "torch")):
        assert needle in msg, msg
    assert not (tmp_path / "runs").exists()  # failed before any folder was made


def test_cli_pretrained_without_network_names_weights_and_exits_2(tiny_dataset, tmp_path):
    # A proxy nobody listens on stands in for "no network": urllib fails at once, on any machine.
    env = {
        **os.environ,
        "TORCH_HOME": str(tmp_path / "torch"),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "equigen.cli",
            "baseline",
            "--dataset",
            str(tiny_dataset),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--models",
            "resnet18",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--weights resnet18=PATH" in lines[0], proc.stderr
    assert not list((tmp_path / "torch").rglob("*.pth"))  # no partial file left in the cache
