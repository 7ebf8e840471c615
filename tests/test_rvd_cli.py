"""RVD through the CLI: fit, test and an autoregressive rollout with `vdiff predict`, and config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml

from tests.tiny_run import merge
from video_diffusion_lab import cli as vdiff

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "experiments" / "rvd_shapes.yaml"


pytestmark = pytest.mark.usefixtures("single_thread")


class CapturePredictions(pl.Callback):
    """Keeps what predict_step returned, so the test can read the exact tensors (videos on disk are lossy)."""

    outputs: list[dict[str, Any]] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        CapturePredictions.outputs.append({k: v.detach().cpu() for k, v in outputs.items() if v is not None})


def tiny_rvd_config(run_dir: Path, model: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """experiments/rvd_shapes.yaml shrunk to seconds: 8x8 clips of 4 frames, width 8, 3 training steps."""
    config = yaml.safe_load(CONFIG.read_text())
    config["trainer"].update(
        max_steps=3,
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
        logger=False,
    )
    config["trainer"]["callbacks"].append({"class_path": "tests.test_rvd_cli.CapturePredictions"})
    merge(
        config["model"]["init_args"],
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "channel_mult": [1, 2], "predictor_mult": [1, 2]},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 3},
            "task": {"num_given": 2},
            "ema": {"decay": 0.5},
        },
    )
    merge(config["model"]["init_args"], model or {})
    config["data"]["init_args"].update(
        dict(
            num_frames=4,
            image_size=8,
            size_range=[2.0, 3.0],
            train_size=12,
            val_size=2,
            test_size=4,
            predict_size=2,
            batch_size=4,
            eval_batch_size=4,
        ),
        **(data or {}),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_test_and_predict_roll_out_from_the_given_frames(tmp_path: Path) -> None:
    config = tiny_rvd_config(tmp_path)
    vdiff.run(["fit", "--config", str(config)])
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()

    vdiff.run(["test", "--config", str(config), "--ckpt_path", "last", "--model.init_args.evaluation.num_samples", "2"])
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["method"] == "RVD" and report["num_given"] == 2 and report["num_videos"] == 4
    assert torch.isfinite(torch.tensor(report["model"]["crps"]))
    assert report["model"]["psnr_best"] >= report["model"]["psnr_mean"]

    CapturePredictions.outputs = []
    vdiff.run(["predict", "--config", str(config), "--ckpt_path", "last", "--model.init_args.task.video_length", "7"])
    assert len(CapturePredictions.outputs) == 1
    out = CapturePredictions.outputs[0]
    samples, video, observed = out["samples"], out["video"], out["observed"]
    assert samples.shape == (2, 7, 3, 8, 8), "task.video_length=7 rolls the 4-frame clips forward to 7 frames"
    assert observed[:, :2].all() and not observed[:, 2:].any()
    torch.testing.assert_close(samples[:, :2], video[:, :2], rtol=0, atol=0)  # given frames untouched
    assert samples.abs().max() <= 1 and not torch.allclose(samples[:, 2], samples[:, 1])
    assert len(list((tmp_path / "predictions").glob("sample_*.mp4"))) == 2


@pytest.mark.parametrize(
    "model, field",
    [
        ({"task": {"task": "infilling"}}, "task.task"),
        ({"task": {"task": "unconditional"}}, "task.task"),
        ({"task": {"num_given": 4}}, "task.num_given"),
        ({"network": {"predictor_mult": [1, 2, 2, 2, 2]}}, "predictor_mult"),
        ({"train_warmup": 0}, "train_warmup"),
    ],
)
def test_bad_config_stops_before_training_naming_the_field(tmp_path: Path, model: dict, field: str) -> None:
    config = tiny_rvd_config(tmp_path, model=model)
    with pytest.raises(Exception) as error:
        vdiff.run(["fit", "--config", str(config)])
    assert field in str(error.value)
    assert not (tmp_path / "checkpoints").exists()
