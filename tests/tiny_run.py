"""Tiny versions of the experiment configs, for tests that go through the CLI. The one place that knows the configs'
layout: tests pass overrides here instead of editing YAML themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MAIN_CONFIG = REPO / "experiments" / "ramvid_shapes.yaml"
FDM_CONFIG = REPO / "experiments" / "fdm_shapes.yaml"
EXPERIMENTS = REPO / "experiments"
# The tiny maze world every maze entry uses, so that their runs complete the same test videos.
TINY_MAZE = dict(
    video_length=12,
    image_size=8,
    maze_cells=2,
    train_size=8,
    val_size=1,
    test_size=2,
    predict_size=2,
    batch_size=4,
    eval_batch_size=2,
)

# Per method: the experiment config and the model / data fields that shrink it to seconds.
TINY = {
    "ramvid": (
        MAIN_CONFIG,
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "channel_mult": [1, 2]},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 3},
            "task": {"num_given": 2},
            "max_given": 2,
        },
        dict(
            num_frames=4,
            image_size=8,
            size_range=[2.0, 3.0],
            train_size=16,
            val_size=4,
            test_size=4,
            predict_size=2,
            batch_size=4,
            eval_batch_size=4,
        ),
    ),
    "fdm": (
        FDM_CONFIG,
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "attention_resolutions": [4]},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 2},
            "task": {"num_given": 3, "video_length": 10},
            "rollout": {"frames_per_stage": 2},
        },
        dict(
            num_frames=10,
            image_size=8,
            size_range=[2.0, 3.0],
            offscreen=4.0,
            train_size=16,
            val_size=4,
            test_size=4,
            predict_size=2,
            batch_size=4,
            eval_batch_size=2,
        ),
    ),
    "maze": (
        EXPERIMENTS / "fdm_maze.yaml",
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "attention_resolutions": [4]},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 2},
            "task": {"num_given": 3, "video_length": 12},
            "rollout": {"frames_per_stage": 2},
        },
        TINY_MAZE,
    ),
    "ramvid_maze": (
        EXPERIMENTS / "ramvid_maze.yaml",
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "channel_mult": [1, 2], "attention_resolutions": []},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 2},
            "task": {"num_given": 3, "video_length": 12},
            "rollout": {"frames_per_stage": 2},
            "max_given": 2,
        },
        {**TINY_MAZE, "num_frames": 4},  # the tiny "maze" entry's videos: the runs share test videos
    ),
    "rvd": (
        EXPERIMENTS / "rvd_shapes.yaml",
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "channel_mult": [1, 2], "predictor_mult": [1, 2]},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 3},
            "task": {"num_given": 2},
        },
        dict(
            num_frames=4,
            image_size=8,
            size_range=[2.0, 3.0],
            train_size=16,
            val_size=4,
            test_size=4,
            predict_size=2,
            batch_size=4,
            eval_batch_size=4,
        ),
    ),
    "vdm": (
        EXPERIMENTS / "vdm_shapes.yaml",
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "channel_mult": [1, 2], "attention_resolutions": [4]},
            "sampling": {"steps": 3},
            "task": {"num_given": 2},
            "num_image_frames": 2,
        },
        dict(
            num_frames=4,
            image_size=8,
            size_range=[2.0, 3.0],
            train_size=16,
            val_size=4,
            test_size=4,
            predict_size=2,
            batch_size=4,
            eval_batch_size=4,
        ),
    ),
}


def merge(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` updated in place with ``overrides``; nested dicts (config groups) are merged key by key."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict) and "class_path" not in value:
            merge(config[key], value)
        else:
            config[key] = value
    return config


def tiny_config(
    run_dir: Path,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    wandb: bool = False,
    callbacks: list[dict[str, Any]] | None = None,
    method: str = "ramvid",
) -> Path:
    """The method's shapes config shrunk to seconds (RaMViD: 8x8 clips of 4 frames, a 2-level U-Net of width 8),
    4 steps, a checkpoint every 2 steps, one validation batch. ``callbacks`` (class_path / init_args dicts) join the
    config's."""
    base, tiny_model, tiny_data = TINY[method]
    config = yaml.safe_load(base.read_text())
    config["trainer"].update(
        max_steps=4,
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    if not wandb:
        config["trainer"]["logger"] = False
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("Checkpoint"):
            callback["init_args"]["every_n_train_steps"] = 2
    config["trainer"]["callbacks"] += callbacks or []
    config["trainer"].update(trainer or {})
    for overrides in (tiny_model, model or {}):
        merge(config["model"]["init_args"], overrides)
    config["data"]["init_args"].update({**tiny_data, **(data or {})})
    path = run_dir / "config.tiny.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def run_vdiff(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m video_diffusion_lab.cli ARGS`` (the `vdiff` command) in a new process group, with the repo on
    PYTHONPATH and one thread per process. On a
    timeout the whole group is killed - DDP ranks are grandchildren that would otherwise outlive the test - and
    ``subprocess.TimeoutExpired`` is raised with what the run printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "video_diffusion_lab.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_vdiff_ddp(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``run_vdiff`` on 2 CPU processes (gloo DDP)."""
    return run_vdiff(
        *args, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp", timeout=timeout
    )


def run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python benchmarks/SCRIPT ARGS`` as a user runs it, from the repository root, one thread."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the markdown tables in ``text``, by first cell (the first row of that name wins)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in rows:
            rows[cells[0]] = cells[1:]
    return rows
