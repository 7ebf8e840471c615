"""Where a run's files go, and metric files that never hold bare NaN.

``run_dir`` is the run folder, ``trainer.default_root_dir``: the CLI points loggers and checkpoints there too. It is
read from the trainer's settings, never through ``trainer.log_dir``, which is a collective call in Lightning (a
broadcast): calling it from rank 0 alone deadlocks DDP.

JSON has no NaN or infinity. ``json_safe`` turns every non-finite float into ``null`` and lists where it was under
the key ``"non_finite"``, so a reader sees that a number is missing and why, instead of a file that strict JSON
parsers refuse.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


def run_dir(trainer: pl.Trainer) -> Path:
    """The run folder (``trainer.default_root_dir``); safe to call on any subset of DDP ranks."""
    return Path(trainer.default_root_dir)


def json_safe(value: Any, path: str = "", found: list[str] | None = None) -> Any:
    """``value`` with every non-finite float replaced by None; the dotted paths of those floats go to ``found``."""
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append(f"{path}={value}")
        return None
    if isinstance(value, dict):
        return {k: json_safe(v, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def to_json(report: dict[str, Any], indent: int | None = 2) -> str:
    """Strict JSON text of ``report``; non-finite numbers become null and are listed under "non_finite"."""
    found: list[str] = []
    safe = json_safe(report, found=found)
    if found:
        safe["non_finite"] = found
    return json.dumps(safe, indent=indent, allow_nan=False) + "\n"


def write_json(path: Path, report: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(report))
    return path


def append_jsonl(path: Path, record: dict[str, Any]) -> Path:
    """One strict-JSON line per record (non-finite numbers as null, listed under "non_finite")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(to_json(record, indent=None))
    return path
