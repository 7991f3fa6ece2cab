#!/usr/bin/env bash
# The GPU check of issue 26 in one command, from the repository root of a checkout (no install needed):
#
#   bash benchmarks/gpu_check.sh             # on a GPU machine: ~6 min (build 9,000 covers, train 2 models x 3 epochs)
#   bash benchmarks/gpu_check.sh --dry-run   # anywhere, on the CPU at toy size (~1 min): checks the script itself
#
# Needs Python with torch + torchvision and the project's runtime dependencies importable (simplejpeg,
# aiohttp, pyarrow, pandas, typer, rich, matplotlib, scikit-learn, scipy, requests); extra
# arguments go to benchmarks/gpu_check.py (e.g. --per-genre 300, --skip nvjpeg). Figures (gpu_check.json,
# gpu_check.log, build.log, train.log) go to $OUT if set, else benchmarks/work/gpu_check/.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || PY=python
"$PY" - <<'EOF' || { echo "gpu_check: missing imports (above): install them first" >&2; exit 2; }
import importlib, sys
missing = []
for m in ("torch", "torchvision", "simplejpeg", "aiohttp", "pyarrow", "pandas", "typer", "rich", "matplotlib",
          "sklearn", "scipy", "requests", "PIL", "numpy", "equigen.cli", "equigen.baseline.train"):
    try:
        importlib.import_module(m)
    except Exception as e:
        missing.append(f"{m} ({type(e).__name__}: {e})")
if missing:
    print("gpu_check: cannot import: " + "; ".join(missing), file=sys.stderr)
    sys.exit(1)
EOF
exec "$PY" benchmarks/gpu_check.py "$@"
