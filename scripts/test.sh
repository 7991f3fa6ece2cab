#!/usr/bin/env bash
# Installs EquiGen with its test extras into .venv (fresh machine: ~4 min, torch from the local wheel cache)
# and runs the whole test suite. Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"
