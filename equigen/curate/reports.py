"""The reports folder (`<data folder>/reports/`) the curate verbs write their JSON and plots to."""

from __future__ import annotations

import json
from pathlib import Path

from equigen.core.config import Settings
from equigen.core.errors import EquigenError
from equigen.core.storage import write_atomic


def reports_dir(settings: Settings) -> Path:
    path = settings.data_dir / "reports"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EquigenError(f"cannot create {path}: {exc.strerror or exc}") from None
    return path


def write_json(path: Path, payload: dict) -> None:
    write_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
