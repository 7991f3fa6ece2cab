#!/usr/bin/env bash
# Installs EquiGen with its test extras into .venv (fresh machine: ~4 min, torch from the local wheel cache),
# then lints (ruff check + format check, the import-layers contract) and runs the whole test suite.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q "$@"
