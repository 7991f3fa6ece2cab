"""The demo end to end (a real subprocess), the notebook on its output, and the README's commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _demo(data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "equigen.cli",
        "demo",
        "--data-dir",
        str(data_dir),
        "--per-genre",
        "8",
        "--epochs",
        "1",
        "--image-size",
        "32",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo") / "equigen-demo"
    result = _demo(data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return data_dir, result


@pytest.mark.slow
def test_demo_runs_every_stage_and_prints_the_model_table(demo_dir):
    data_dir, result = demo_dir
    out = result.stderr
    for model in ("resnet18", "efficientnet_b0"):
        assert re.search(rf"{model}\s+│\s+[0-9.]+", out), "side-by-side table row"
    for label in ("dataset card", "report", "dataset plots"):
        assert label in out
    summary = json.loads((data_dir / "demo.json").read_text())
    assert set(summary["stages"]) == {"fetch", "dedup", "balance", "split", "verify", "baseline"}
    assert (data_dir / "dataset" / "README.md").is_file()
    assert (data_dir / "dataset" / "croissant.json").is_file()
    report = Path(summary["report"])
    assert report.is_file() and "resnet18" in report.read_text()
    for png in [
        "reports/balance.png",
        "reports/dedup_pairs.png",
        "dataset/plots/split_genre_counts.png",
        "runs/demo/resnet18/confusion_matrix.png",
        "runs/demo/efficientnet_b0/seed-0/learning_curves.png",
        "runs/demo/efficientnet_b0/confident_errors.png",
        "runs/demo/per_genre_f1.png",
        "dataset/plots/samples.jpg",
    ]:
        assert (data_dir / png).stat().st_size > 10_000, png
    assert "](plots/samples.jpg)" in (data_dir / "dataset" / "README.md").read_text(), "the card shows the covers"
    # One seed by default, and still the paired comparison: interval over test covers and McNemar's test.
    assert summary["comparison"] and "95 % CI" in summary["comparison"] and "McNemar" in summary["comparison"]


@pytest.mark.slow
def test_demo_rerun_resumes_with_the_same_dataset(demo_dir):
    data_dir, _ = demo_dir
    before = (data_dir / "dataset" / "checksums.sha256").read_text()
    again = _demo(data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (data_dir / "dataset" / "checksums.sha256").read_text() == before
    assert "MusicBrainz requests 0" in again.stderr  # discovery was already complete


def test_demo_fresh_refuses_a_folder_that_is_not_a_data_folder(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    result = subprocess.run(
        [sys.executable, "-m", "equigen.cli", "demo", "--data-dir", str(precious), "--fresh"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "refusing" in result.stderr
    assert (precious / "thesis.tex").read_text() == "do not delete"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_the_demo_output(demo_dir):
    import nbformat
    from nbclient import NotebookClient

    data_dir, _ = demo_dir
    nb = nbformat.read(ROOT / "notebooks" / "explore.ipynb", as_version=4)
    os.environ["EQUIGEN_DATA_DIR"] = str(data_dir)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        ).execute()
    finally:
        del os.environ["EQUIGEN_DATA_DIR"]
    images = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    )
    assert images >= 6, "counts, samples, clusters, artists, confusion matrices/curves, per-genre F1"


@pytest.mark.slow
def test_readme_python_loading_snippet_runs(demo_dir):
    data_dir, _ = demo_dir
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "load_dataset" in b)
    code = block.replace('"D/dataset', f'"{data_dir}/dataset').replace("'D/dataset", f"'{data_dir}/dataset")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert set(scope["ds"]) == {"train", "validation", "test"}
    assert len(scope["ds"]["train"].features["label"].names) == 15
    assert set(scope["train"]["genre"]) == {"Jazz"}


def _readme_equigen_commands() -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            m = re.search(r"(?:^|\s)(?:-m equigen\.cli|equigen)\s+([a-z]+)(.*)$", line)
            if m and not line.startswith(("bash", "export")):
                commands.append([m.group(1), *m.group(2).split()])
    return commands


def test_every_readme_command_uses_real_verbs_and_options():
    from typer.testing import CliRunner

    from equigen.cli import app

    commands = _readme_equigen_commands()
    assert len(commands) >= 15
    runner = CliRunner()
    helps: dict[str, str] = {}
    for verb, *args in commands:
        if verb not in helps:
            res = runner.invoke(app, [verb, "--help"])
            assert res.exit_code == 0, f"README uses unknown verb {verb!r}"
            helps[verb] = res.output
        for opt in (a.split("=")[0] for a in args if a.startswith("--")):
            assert opt in helps[verb], f"README: `equigen {verb}` has no option {opt}"
