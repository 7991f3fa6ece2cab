#!/usr/bin/env bash
# Installs EquiGen with its test extras into .venv (fresh machine: ~4 min, torch from the local wheel cache),
# then lints (ruff check + format check, the import-layers contract) and runs the tests.
# Usage: bash scripts/test.sh [--all] [pytest args]
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
exec .venv/bin/python -m pytest -q "${tier[@]}" "$@"
