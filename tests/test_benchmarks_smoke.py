"""Each benchmark script runs end to end at toy size (--smoke) in a subprocess.

The anchor side is skipped (importorskip) when its package isn't installed; our side always runs
(--ours-only). Smoke results go to benchmarks/work/smoke/, never benchmarks/results/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SMOKE_OUT = BENCH / "work" / "smoke"

# script -> modules its anchors need (importorskip'd for the full smoke run)
SCRIPTS = {
    "bench_phash": ["imagehash", "imagededup"],
    "bench_near_dup": ["faiss", "pybktree", "imagededup"],
    "bench_split": ["sklearn"],
    "bench_loader": ["torchvision"],
    "bench_dedup_quality": ["imagededup"],
    "bench_download": [],  # img2dataset lives in its own venv: checked below
    "bench_dump": [],  # its anchor (a bare tarfile + json pass) needs nothing
}


def img2dataset_venv_ready() -> bool:
    import os

    py = Path(os.environ.get("EQUIGEN_BENCH_VENV", BENCH / "work" / "bench-venv")) / "bin" / "python"
    return py.exists() and subprocess.run([str(py), "-c", "import img2dataset"], capture_output=True).returncode == 0


def run_smoke(name: str, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--smoke", "--no-install", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    doc = json.loads((SMOKE_OUT / f"{name}.json").read_text())
    assert doc["smoke"] is True and doc["rows"], doc
    for row in doc["rows"]:
        assert row["comparison"] and row["ours"] and row["goal"]
    return doc


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_ours_smoke(name):
    doc = run_smoke(name, "--ours-only")
    assert doc["ours_only"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_full_smoke(name):
    for module in SCRIPTS[name]:
        pytest.importorskip(module)
    if name == "bench_download" and not img2dataset_venv_ready():
        pytest.skip(
            "img2dataset is not installed in its benchmark venv (EQUIGEN_BENCH_VENV, benchmarks/work/bench-venv)"
        )
    doc = run_smoke(name)
    assert doc["ours_only"] is False
    assert any(row["anchor"] != "-" for row in doc["rows"])


@pytest.mark.slow
def test_rehearsal_smoke_runs_every_stage_and_a_killed_fetch_resumes_to_the_same_dataset(tmp_path):
    """benchmarks/rehearsal.py at toy size (no baseline): every stage measured; a fetch killed with SIGKILL and
    run again ends with the same dataset as the uninterrupted rehearsal."""
    script = [sys.executable, str(BENCH / "rehearsal.py"), "--per-genre", "4", "--artists", "400", "--skip-baseline"]
    clean = subprocess.run(
        [*script, "--work", str(tmp_path / "a"), "--out", str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert clean.returncode == 0, clean.stdout[-2000:] + clean.stderr[-3000:]
    doc = json.loads((tmp_path / "a.json").read_text())
    assert set(doc["stages"]) == {"fetch", "dedup", "balance", "split", "verify"}
    fetch = doc["stages"]["fetch"]
    assert fetch["requests"]["musicbrainz"]["requests"] == fetch["catalog"]["last_fetch"]["mb_requests"]
    assert fetch["peak_rss_mb"] > 0 and fetch["bytes_added"] > 0
    killed = subprocess.run(
        [
            *script,
            "--work",
            str(tmp_path / "b"),
            "--out",
            str(tmp_path / "b.json"),
            "--kill-after",
            "6",
            "--compare-with",
            str(tmp_path / "a.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == 0, killed.stdout[-2000:] + killed.stderr[-3000:]
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["stages"]["fetch"]["first"]["killed"] and doc["compared_with"]["same_dataset"]


@pytest.mark.slow
def test_taxonomy_benchmark_finds_a_reason_for_every_contested_name():
    """bench_taxonomy.py against ../shared/reference (skipped where absent): every name on which two or more public
    hierarchies disagree with the taxonomy has its reason in genre_rules.toml [contested]."""
    reference = Path(__file__).resolve().parents[2] / "shared" / "reference"
    if not (reference / "external_hierarchies.tsv").is_file():
        pytest.skip(f"no external_hierarchies.tsv at {reference}")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_taxonomy.py"), str(reference), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads((SMOKE_OUT / "bench_taxonomy.json").read_text())
    details = doc["details"]
    assert details["overall"]["compared"] > 2000 and details["overall"]["share"] > 0.9
    assert details["unexplained"] == [], details["unexplained"]


def test_committed_results_name_no_folder_of_the_machine_they_ran_on():
    """benchmarks/results/*.json carry paths relative to the repository (benchmarks/_common.repo_relative)."""

    def strings(doc):
        if isinstance(doc, dict):
            for v in doc.values():
                yield from strings(v)
        elif isinstance(doc, list):
            for v in doc:
                yield from strings(v)
        elif isinstance(doc, str):
            yield doc

    found = [
        (p.name, s)
        for p in sorted((BENCH / "results").glob("*.json"))
        for s in strings(json.loads(p.read_text()))
        if s.startswith(("/work/", "/home/", "/root/", "/Users/", "/tmp/"))
    ]
    assert not found, found[:5]


def test_repo_relative_rewrites_paths_inside_the_repository_only(tmp_path):
    sys.path.insert(0, str(BENCH))
    import _common as C

    doc = {
        "data": BENCH / "work" / "x",
        "runs": [str(BENCH.parent / "README.md"), "text"],
        "n": 3,
        "tmp": str(tmp_path),
    }
    assert C.repo_relative(doc) == {
        "data": "benchmarks/work/x",
        "runs": ["README.md", "text"],
        "n": 3,
        "tmp": str(tmp_path),
    }
