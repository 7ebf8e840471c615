"""What the benchmark scripts share: run ``vdiff`` as a user does (a subprocess, the shipped config plus flags) and
read back what it wrote in the run folder.

A fit is skipped when its run folder already holds a finished ``last.ckpt`` (``--max_steps`` reached), so a table
can be rebuilt from trained runs, or a stopped benchmark continued, without training again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
VDIFF = [sys.executable, "-m", "video_diffusion_lab.cli"]


def vdiff(*args: str, threads: int | None = None) -> None:
    """Run ``vdiff ARGS`` from the repository root; its output goes to the terminal, a failure stops the script."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    print("$ vdiff " + " ".join(args), flush=True)
    subprocess.run([*VDIFF, *args], cwd=REPO, env=env, check=True)


def trained_steps(run_dir: Path) -> int:
    last = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(last, map_location="cpu", weights_only=True)["global_step"] if last.exists() else 0


def fit(config: Path, run_dir: Path, max_steps: int, *overrides: str, threads: int | None = None) -> None:
    """Train (or resume) until ``max_steps``; nothing to do if the run folder's last checkpoint is there."""
    if trained_steps(run_dir) >= max_steps:
        print(f"{run_dir}: trained ({max_steps} steps), not fitting again", flush=True)
        return
    resume = ["--ckpt_path", "last"] if (run_dir / "checkpoints" / "last.ckpt").exists() else []
    vdiff(
        "fit", "--config", str(config), "--trainer.default_root_dir", str(run_dir), *overrides, *resume, threads=threads
    )


def training_minutes(run_dir: Path) -> float:
    """Wall time of the last ``fit`` in the run folder: ``config_fit.yaml`` is written when it starts, ``last.ckpt``
    when it ends (validation, sample videos and checkpoints included; a resumed run counts its last part only)."""
    start = (run_dir / "config_fit.yaml").stat().st_mtime
    return ((run_dir / "checkpoints" / "last.ckpt").stat().st_mtime - start) / 60


def test(config: Path, run_dir: Path, name: str, *overrides: str, threads: int | None = None) -> dict[str, Any]:
    """``vdiff test`` of the run's last checkpoint; its ``metrics_test.json`` is kept as ``<name>.json`` (and read
    from there when the script runs again)."""
    kept = run_dir / "benchmark" / f"{name}.json"
    if not kept.exists():
        vdiff(
            "test",
            "--config",
            str(config),
            "--trainer.default_root_dir",
            str(run_dir),
            "--ckpt_path",
            "last",
            "--trainer.logger",
            "false",
            *overrides,
            threads=threads,
        )
        kept.parent.mkdir(exist_ok=True)
        (run_dir / "metrics_test.json").replace(kept)
    return json.loads(kept.read_text())


def trained_parameters(run_dir: Path) -> int:
    """Parameters of the trained network (the EMA copy is not counted)."""
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return sum(t.numel() for k, t in state.items() if k.startswith("network."))


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return (
            f"{value:.3g}"
            if isinstance(value, float) and abs(value) < 1
            else (f"{value:.2f}" if isinstance(value, float) else str(value))
        )

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
