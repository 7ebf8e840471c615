"""A non-finite loss stops training with a clear error before it reaches the weights and names the newest checkpoint
whose weights did not give it; metric files never hold bare NaN (lr 1e10, then a resume at 1e-3: test_user_findings)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from tests.run_callbacks import checkpoint_tensors_finite, read_losses
from tests.tiny_run import run_vdiff_ddp, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.callbacks import NonFiniteLossError


def poison(step: int, rank: int = -1) -> dict:
    return {"class_path": "tests.run_callbacks.PoisonBatch", "init_args": {"step": step, "rank": rank}}


def strict_json(text: str) -> object:
    """JSON as the standard defines it: NaN and Infinity are not numbers there."""

    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in a metrics file")

    return json.loads(text, parse_constant=refuse)


def test_nan_loss_stops_at_its_step_and_names_the_checkpoint_before_the_weights_that_gave_it(tmp_path: Path) -> None:
    # Checkpoints at steps 0, 2 and 4; the loss after step 4 is NaN, so step 4's weights gave it and step 2's did not.
    losses = tmp_path / "losses.jsonl"
    config = tiny_config(
        tmp_path,
        trainer={"max_steps": 8},
        callbacks=[
            poison(step=4),
            {"class_path": "tests.run_callbacks.RecordLosses", "init_args": {"path": str(losses)}},
        ],
    )
    with pytest.raises(NonFiniteLossError) as error:
        vdiff.run(["fit", "--config", str(config)])
    message = str(error.value)
    folder = tmp_path / "checkpoints"
    assert "not finite" in message and "after global step 4" in message, message
    good = folder / "epoch=0-step=2.ckpt"
    assert error.value.resume_from == good and f"{good} (global step 2)" in message and f"--ckpt_path {good}" in message
    assert sorted(read_losses(losses)) == [1, 2, 3, 4], "no step was trained after the NaN"
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4, "last.ckpt was replaced after the NaN"
    assert all(checkpoint_tensors_finite(path) for path in folder.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"]


def test_nan_on_one_ddp_rank_stops_both_ranks(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"max_steps": 8, "limit_val_batches": 0}, callbacks=[poison(step=2, rank=1)])
    try:
        result = run_vdiff_ddp("fit", "--config", str(config), timeout=150)
    except subprocess.TimeoutExpired as hang:
        pytest.fail(f"a rank kept waiting after the other met a NaN: {str(hang.stderr or '')[-3000:]}")
    assert result.returncode != 0
    assert result.stderr.count("NonFiniteLossError") >= 2, "both ranks stop with the error"
    assert "1 of 2 processes" in result.stderr
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def nan_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A trained tiny run, and a copy of its checkpoint whose EMA weights (the ones evaluation uses) are NaN."""
    config = tiny_config(tmp_path, trainer={"max_steps": 2, "limit_val_batches": 0})
    vdiff.run(["fit", "--config", str(config)])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for name, tensor in checkpoint["state_dict"].items():
        if name.startswith("ema.module.") and torch.is_floating_point(tensor):
            tensor.fill_(float("nan"))
    path = tmp_path / "nan.ckpt"
    torch.save(checkpoint, path)
    return config, path


def test_validation_metrics_of_a_nan_model_are_written_as_null(tmp_path: Path) -> None:
    config, path = nan_checkpoint(tmp_path)
    vdiff.run(["validate", "--config", str(config), "--ckpt_path", str(path), "--trainer.limit_val_batches", "1"])
    records = [strict_json(line) for line in (tmp_path / "metrics_val.jsonl").read_text().splitlines()]
    assert records[-1]["model"]["psnr_mean"] is None and "model.psnr_mean=nan" in records[-1]["non_finite"]
    assert math.isfinite(records[-1]["copy_last_frame"]["psnr_mean"])


def test_test_report_of_a_nan_model_is_strict_json(tmp_path: Path) -> None:
    # Needs the test report written through metrics.report.write_json (lightning_modules).
    config, path = nan_checkpoint(tmp_path)
    vdiff.run(["test", "--config", str(config), "--ckpt_path", str(path)])
    report = strict_json((tmp_path / "metrics_test.json").read_text())
    assert report["model"]["psnr_mean"] is None and report["non_finite"]
