"""Every embedded config as the README runs it: its own logger (W&B, offline), its callbacks and validation, shortened
by flags only. A failure like W&B refusing to merge model and data hyper-parameters cannot land again."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tiny_run import REPO
from video_diffusion_lab import cli as vdiff

EMBEDDED = sorted(path.name for path in (REPO / "experiments").glob("*_shapes.yaml"))


@pytest.fixture(autouse=True)
def finish_wandb_run():
    """One W&B run per test, as one per command line: a run left open would take the next test's logs."""
    yield
    import wandb

    wandb.finish()


def test_every_method_has_an_embedded_config() -> None:
    assert EMBEDDED == ["fdm_shapes.yaml", "ramvid_shapes.yaml", "rvd_shapes.yaml", "vdm_shapes.yaml"]


@pytest.mark.parametrize("name", EMBEDDED)
def test_fit_runs_with_the_configured_logger_and_validation(name: str, tmp_path: Path) -> None:
    vdiff.run(
        [
            "fit",
            "--config",
            str(REPO / "experiments" / name),
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--data.init_args.train_size",
            "64",
            "--data.init_args.val_size",
            "2",
            "--data.init_args.eval_batch_size",
            "2",
            "--model.init_args.sampling.steps",
            "2",
        ]
    )
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert list(tmp_path.glob("wandb/offline-run-*")), "the configured W&B logger wrote no run"
    logged = checkpoint["hyper_parameters"]
    assert {"clip", "diffusion", "sampling", "task", "ema", "optimizer"} <= set(logged)
