#!/usr/bin/env bash
# Installs EquiGen with its test extras into .venv (fresh machine: ~4 min, torch from the local wheel cache),
# then lints (ruff check + format check, the import-layers contract) and runs the tests.
# Usage: bash scripts/test.sh [--all] [pytest args]
#   Tests run in one pytest-xdist worker per core, a test file per worker (-n auto --dist loadfile: a file's
#   module fixtures are built once); many tests wait on sockets, subprocesses and backoffs, so 2 workers on 2 cores
#   took the default tier from 303 s to 190 s. `-n 0` (given after) runs them in one process, e.g. for --pdb.
#   default: every test but the slow end-to-end tier (pytest -m "not slow")
#   --all:   the whole suite, slow tier included (what CI runs: .ci/run)
#   -m slow: the slow tier alone (a later -m replaces the default one)
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(-m "not slow")
if [ "${1:-}" = "--all" ]; then
  tier=()
  shift
fi
source scripts/install.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q -n auto --dist loadfile "${tier[@]}" "$@"
