"""README's table of every verb's defaults is the one `equigen VERB --help` prints (scripts/readme_defaults.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import readme_defaults  # noqa: E402

from equigen.cli import app  # noqa: E402


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_readme_defaults_table_is_the_generated_one():
    block = readme_defaults.readme_block((ROOT / "README.md").read_text())
    assert block is not None, "README.md lost its defaults table markers"
    assert block == readme_defaults.render(), (
        "README's defaults differ from --help: run python scripts/readme_defaults.py --write"
    )


@pytest.mark.parametrize("verb", sorted(readme_defaults.verb_defaults()))
def test_every_default_in_the_table_is_what_help_prints(verb):
    res = CliRunner().invoke(app, [verb, "--help"], terminal_width=200)
    assert res.exit_code == 0
    shown = _squeezed(res.output)
    for option, default in readme_defaults.verb_defaults()[verb]:
        for name in option.split("/"):  # an argument (DATASET_DIR) is printed in lower case
            assert _squeezed(name) in shown or (name.isupper() and name.lower() in shown), f"{verb} --help: {name}?"
        if default in ("none", "on", "off", "required"):  # no value to find: the option's presence is the check
            continue
        assert _squeezed(default) in shown, f"`equigen {verb}` {option}: README says {default!r}, --help does not"
