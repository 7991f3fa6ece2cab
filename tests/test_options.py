"""Each verb's options are one object checked once; fetch and balance share --per-genre, --artist-cap and
--min-confidence (declared once in the CLI, checked by one function)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import assert_one_line_error, run_cli
from typer.testing import CliRunner

from equigen.cli import app
from equigen.core.errors import EquigenError
from equigen.core.options import BalanceOptions, DedupOptions, SplitOptions, VerifyOptions


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: BalanceOptions(per_genre=0), "--per-genre"),
        (lambda: BalanceOptions(artist_cap=0), "--artist-cap"),
        (lambda: BalanceOptions(min_confidence=float("nan")), "--min-confidence"),
        (lambda: BalanceOptions(seed=-1), "--seed"),
        (lambda: DedupOptions(threshold=65), "--threshold"),
        (lambda: SplitOptions(ratios=(0.5, 0.5, 0.5)), "sum to 1"),
        (lambda: SplitOptions(ratios=(0.5, 0.5)), "three numbers"),
        (lambda: SplitOptions(shard_rows=0), "--shard-rows"),
        (lambda: VerifyOptions(radius=-1), "--radius"),
    ],
)
def test_a_bad_option_is_refused_when_the_options_are_built(build, needle):
    with pytest.raises(EquigenError, match=needle):
        build()


def test_none_means_the_default_and_options_are_frozen():
    assert DedupOptions(threshold=None) == DedupOptions()
    assert VerifyOptions(radius=None).radius == DedupOptions().threshold
    with pytest.raises(dataclasses.FrozenInstanceError):
        BalanceOptions().per_genre = 3


def _option_help(verb: str, option: str) -> str:
    """The help line block of one option as `equigen VERB --help` prints it, whitespace squeezed."""
    text = CliRunner().invoke(app, [verb, "--help"], terminal_width=400).output
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{option} "))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if line.strip().startswith("-") or not line.strip():
            break
        block.append(line)
    return " ".join(" ".join(block).split())


@pytest.mark.parametrize("option", ["--per-genre", "--artist-cap", "--min-confidence"])
def test_fetch_and_balance_declare_the_shared_options_once(option):
    fetch, balance = _option_help("fetch", option), _option_help("balance", option)
    assert option in fetch and fetch == balance


@pytest.mark.parametrize("verb", ["fetch", "balance"])
def test_fetch_and_balance_refuse_the_same_bad_value_with_the_same_line(verb, tmp_path):
    result = run_cli(verb, "--data-dir", str(tmp_path / "data"), "--min-confidence", "1.5", env=_offline_env())
    assert_one_line_error(result, "--min-confidence must be between 0 and 1, got 1.5")
    assert not (tmp_path / "data").exists()  # refused before any folder was made


def _offline_env() -> dict:
    import os

    return {**os.environ, "COLUMNS": "400", "EQUIGEN_CONTACT": "tests@example.org"}
