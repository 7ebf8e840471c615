"""A tiny version of the main job's config, for tests that go through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MAIN_CONFIG = REPO / "experiments" / "ramvid_shapes.yaml"


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
) -> Path:
    """The main job's YAML shrunk to seconds: 8x8 clips of 4 frames, a 2-level U-Net of width 8, 4 steps."""
    config = yaml.safe_load(MAIN_CONFIG.read_text())
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
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"]["every_n_train_steps"] = 2
    config["trainer"].update(trainer or {})
    tiny_model = {
        "clip": {"num_frames": 4, "image_size": 8},
        "network": {"model_channels": 8, "channel_mult": [1, 2]},
        "diffusion": {"steps": 100},
        "sampling": {"steps": 3},
        "task": {"num_given": 2},
        "max_given": 2,
    }
    tiny_data = dict(
        num_frames=4,
        image_size=8,
        size_range=[2.0, 3.0],
        train_size=16,
        val_size=4,
        test_size=4,
        predict_size=2,
        batch_size=4,
        eval_batch_size=4,
    )
    init_args = config["model"]["init_args"]
    for overrides in (tiny_model, model or {}):
        merge(init_args, overrides)
    config["data"]["init_args"].update({**tiny_data, **(data or {})})
    path = run_dir / "config.tiny.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path
