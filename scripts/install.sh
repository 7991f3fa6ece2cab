#!/usr/bin/env bash
# Creates .venv and installs EquiGen with torch/torchvision and the test extras (idempotent).
# torch 2.14.1 / torchvision 0.29.1 are the pins this project is tested with (x86_64, Python 3.11).
set -euo pipefail
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" -e ".[test]"
