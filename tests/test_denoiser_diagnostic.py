"""The x0-error-by-noise-level diagnostic: exact on known denoisers, and the script runs on a real checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.tiny_run import run_benchmark, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.diffusion.masks import task_mask
from video_diffusion_lab.diffusion.schedules import DiscreteSchedule
from video_diffusion_lab.metrics.denoising import noise_levels, x0_error_by_noise_level


def clips() -> torch.Tensor:
    return torch.rand(3, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_an_oracle_has_no_error_and_the_mean_matches_its_baseline() -> None:
    x0, schedule = clips(), DiscreteSchedule.linear(100)
    mask = task_mask("prediction", 3, 4, 1)
    times = noise_levels(schedule, 5)
    assert times.tolist() == [99, 74, 50, 25, 0]
    oracle = x0_error_by_noise_level(lambda z, t, m: x0, schedule, x0, mask, times)
    assert all(row.rmse == 0 for row in oracle)
    latent_mean = x0[:, 1:].mean(dim=(0, 1))
    mean = x0_error_by_noise_level(lambda z, t, m: latent_mean.expand_as(z), schedule, x0, mask, times)
    assert all(row.rmse == pytest.approx(row.mean_rmse, rel=1e-5) for row in mean)
    # Only latent frames count: an error on the observed frame changes nothing.
    wrong_given = x0.clone()
    wrong_given[:, 0] += 1
    assert all(row.rmse == 0 for row in x0_error_by_noise_level(lambda z, t, m: wrong_given, schedule, x0, mask, times))


def test_the_script_writes_a_table_and_a_plot_for_a_checkpoint(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"limit_val_batches": 0})
    vdiff.run(["fit", "--config", str(config)])
    result = run_benchmark(
        "denoiser_diagnostic.py",
        "--config",
        str(config),
        "--ckpt_path",
        str(tmp_path / "checkpoints" / "last.ckpt"),
        "--levels",
        "4",
        "--batches",
        "1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "diagnostics" / "denoiser_diagnostic.json").read_text())
    assert report["method"] == "RaMViD" and report["checkpoint_global_step"] == 4 and len(report["levels"]) == 4
    assert all(level["mean_psnr"] > 0 for level in report["levels"])
    png = (tmp_path / "diagnostics" / "denoiser_diagnostic.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
