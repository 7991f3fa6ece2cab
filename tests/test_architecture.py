"""The layering ARCHITECTURE.md describes holds: every module is placed in the import-linter contract and
described in ARCHITECTURE.md, and no import cycle exists (function-level imports included)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "equigen"


def _modules() -> set[str]:
    """Top-level modules and subpackages of equigen (what the layers contract places)."""
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return names


def test_every_module_is_in_a_layer_and_in_architecture_md():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    layers = config["tool"]["importlinter"]["contracts"][0]["layers"]
    placed = {m.strip().removeprefix("equigen.") for layer in layers for m in re.split(r"[|:]", layer)}
    assert _modules() - placed == set(), "add these modules to a layer in pyproject's [tool.importlinter]"
    assert placed - _modules() == set(), "the contract names modules that do not exist"
    described = set(re.findall(r"^\| `([a-z_]+)(?:\.py|/)`", (PACKAGE / "ARCHITECTURE.md").read_text(), re.M))
    assert _modules() - described == set(), "describe these modules in equigen/ARCHITECTURE.md"


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("equigen")  # grimp sees imports inside functions too
    top = {m: ".".join(m.split(".")[:2]) for m in graph.modules}
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = top[module], top.get(imported, imported)
            if a != b and a != "equigen" and b != "equigen":
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
