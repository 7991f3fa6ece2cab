#!/usr/bin/env bash
# Installs EquiGen into .venv and runs the offline demo (simulator -> fetch -> ... -> baseline).
# Usage: bash scripts/demo.sh [equigen demo args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install.sh
exec .venv/bin/equigen demo "$@"
