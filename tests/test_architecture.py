"""The layering ARCHITECTURE.md describes holds: every module is placed in the import-linter contract and
described in ARCHITECTURE.md, and no import cycle exists (function-level imports included)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "equigen"
# Subpackages placed and described whole; every other subpackage (the stages and core) places each module.
PLACED_WHOLE = {"baseline", "simulator"}


def _modules() -> set[str]:
    """Top-level modules and subpackages of equigen, and each module of a subpackage not placed whole
    (`core.catalog`, `harvest.fetch`, ...): what the import contracts place."""
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    names |= packages
    for package in packages - PLACED_WHOLE:
        names |= {f"{package}.{p.stem}" for p in (PACKAGE / package).glob("*.py") if p.stem != "__init__"}
    return names


def _placed() -> set[str]:
    """Every module a layers or independence contract in pyproject's [tool.importlinter] names."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    placed = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            for container in contract.get("containers", [""]):
                for layer in contract["layers"]:
                    for name in re.split(r"[|:]", layer):
                        placed.add(f"{container}.{name.strip()}".strip(".").removeprefix("equigen."))
        elif contract["type"] == "independence":
            placed |= {m.removeprefix("equigen.") for m in contract["modules"]}
    return placed


def test_every_module_is_in_a_layer_and_in_architecture_md():
    placed = _placed()
    assert _modules() - placed == set(), "add these modules to a contract in pyproject's [tool.importlinter]"
    assert placed - _modules() == set(), "the contracts name modules that do not exist"
    text = (PACKAGE / "ARCHITECTURE.md").read_text()
    described = {m.replace("/", ".") for m in re.findall(r"^\| `([a-z_/]+?)(?:\.py|/)`", text, re.M)}
    assert _modules() - described == set(), "describe these modules in equigen/ARCHITECTURE.md"


def _node(module: str) -> str:
    """The unit the cycle check compares: a top-level module, a subpackage placed whole, or a stage's module."""
    parts = module.split(".")
    return ".".join(parts[:2] if len(parts) < 3 or parts[1] in PLACED_WHOLE else parts[:3])


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("equigen")  # grimp sees imports inside functions too
    top = {m: _node(m) for m in graph.modules}
    # the package itself and the stages' __init__ modules (docstrings only) are not units
    inits = {"equigen"} | {f"equigen.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")} - {
        f"equigen.{name}" for name in PLACED_WHOLE
    }
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = top[module], top.get(imported, imported)
            if a != b and not {a, b} & inits:
                edges.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:  # back to a module on the current path: a cycle
                stack = path + [node]
                cycle.extend(stack[stack.index(nxt) :] + [nxt])
                return True
            if state.get(nxt) is None and visit(nxt, path + [node]):
                return True
        state[node] = 2
        return False

    for node in sorted(edges):
        if state.get(node) is None and visit(node, []):
            break
    assert not cycle, f"import cycle: {' -> '.join(cycle)}"
    assert len(edges) > 20  # the graph was really read


def test_only_the_catalog_speaks_sql():
    """core/catalog.py is the only module that runs SQL: every other module asks it through a method."""
    catalog = PACKAGE / "core" / "catalog.py"
    assert re.search(r"\.execute\(", catalog.read_text())  # the pattern finds SQL where it is
    speaking = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != catalog
        and re.search(r"\.execute(many)?\(|catalog\.conn\b|\b(SELECT|INSERT|UPDATE|DELETE) ", path.read_text())
    ]
    assert speaking == []


def _splits_imported_elsewhere(text: str) -> bool:
    """Whether a module imports SPLITS from anywhere but equigen.core.defaults, or assigns it."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module != "equigen.core.defaults":
            if any(alias.name == "SPLITS" for alias in node.names):
                return True
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SPLITS" for t in node.targets):
            return True
    return False


def test_splits_come_from_core_defaults_only():
    """SPLITS is named once (core/defaults.py): every other module imports it from there, none re-exports it."""
    defaults = PACKAGE / "core" / "defaults.py"
    assert _splits_imported_elsewhere(defaults.read_text())  # the check sees the one definition
    assert _splits_imported_elsewhere("from equigen.publish.split_rules import SPLITS")
    paths = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    elsewhere = [
        str(p.relative_to(ROOT)) for p in sorted(paths) if p != defaults and _splits_imported_elsewhere(p.read_text())
    ]
    assert elsewhere == []
