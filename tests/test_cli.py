"""The framework end to end through LightningCLI: fit, test, predict, resume, config files and config errors
(DDP: test_ddp.py; checkpoint choice: test_checkpoint_selection.py; exact resume: test_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.tiny_run import MAIN_CONFIG, tiny_config
from video_diffusion_lab import cli as vdiff


def run_cli(*args: str) -> None:
    vdiff.run(list(args))


def load_checkpoint(path: Path) -> dict:
    # Checkpoints hold only tensors and plain types, so the safe loader reads them.
    return torch.load(path, map_location="cpu", weights_only=True)


def test_fit_test_predict_write_checkpoints_metrics_and_videos(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, wandb=True)
    run_cli("fit", "--config", str(config))
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint.exists()
    assert list((tmp_path / "videos").glob("*.mp4")), "the sample logger wrote no validation videos"
    assert list(tmp_path.glob("wandb/offline-run-*/files/media/videos/**/*.mp4")), "no video reached W&B"
    periodic = [json.loads(line) for line in (tmp_path / "metrics_val.jsonl").read_text().splitlines()]
    assert periodic and {"psnr_mean", "ssim_mean"} <= set(periodic[-1]["model"]) and periodic[-1]["step"] > 0

    run_cli("test", "--config", str(config), "--ckpt_path", "last", "--model.init_args.evaluation.num_samples", "3")
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["num_videos"] == 4 and report["task"] == "prediction" and report["num_given"] == 2
    assert report["sampler"] == "ddim" and report["sampling_steps"] == 3
    assert report["checkpoint"].endswith("last.ckpt") and report["checkpoint_global_step"] == 4
    assert report["protocol"]["num_samples"] == 3
    assert set(report["model"]) == {"psnr_mean", "psnr_best", "ssim_mean", "ssim_best", "crps"}
    assert set(report["copy_last_frame"]) == {"psnr_mean", "psnr_best", "ssim_mean", "ssim_best", "crps"}
    assert report["model"]["psnr_best"] >= report["model"]["psnr_mean"]
    # RaMViD samples a clip in one pass: one network evaluation per DDIM step for each sampled clip.
    assert report["sampling_cost"]["network_evaluations_per_clip"] == 3
    assert report["sampling_cost"]["seconds_per_clip"] > 0
    assert all(torch.isfinite(torch.tensor(v)) for v in report["model"].values())
    assert "fvd" in report["notes"], "4-frame clips cannot give an FVD, and the report must say why"

    run_cli("predict", "--config", str(config), "--ckpt_path", "last", "--model.init_args.task.video_length", "6")
    samples = sorted((tmp_path / "predictions").glob("sample_*.mp4"))
    grids = sorted((tmp_path / "predictions").glob("grid_*.mp4"))
    assert len(samples) == 2 and len(grids) == 2
    import decord

    reader = decord.VideoReader(str(samples[0]))
    assert len(reader) == 6, "task.video_length=6 should roll the 4-frame model forward to 6 frames"


def test_print_config_shows_model_and_data_class_paths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "--config", str(MAIN_CONFIG), "--print_config")
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: video_diffusion_lab.lightning_modules.RaMViD" in printed
    assert "class_path: video_diffusion_lab.datamodules.MovingShapesDataModule" in printed
    assert "seed_everything: 0" in printed


@pytest.mark.parametrize(
    "model, data, field",
    [
        ({"clip": {"image_size": 10}, "network": {"channel_mult": [1, 2, 2]}}, {"image_size": 10}, "image_size"),
        ({"task": {"num_given": 4}}, {}, "task.num_given"),
        ({"task": {"task": "outpainting"}}, {}, "task.task"),
        ({"max_given": 4}, {}, "max_given"),
        ({"sampling": {"sampler": "euler"}}, {}, "sampling.sampler"),
        ({"diffusion": {"prediction": "score"}}, {}, "diffusion.prediction"),
        ({"clip": {"num_frames": 6}}, {}, "clip.num_frames"),
    ],
)
def test_bad_config_stops_before_training_naming_the_field(tmp_path: Path, model: dict, data: dict, field: str) -> None:
    config = tiny_config(tmp_path, model=model, data=data)
    with pytest.raises(Exception) as error:
        run_cli("fit", "--config", str(config))
    assert field in str(error.value)
    assert not (tmp_path / "checkpoints").exists(), "no training step may run on a bad config"


def test_resume_continues_training_with_ema_intact(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    run_cli("fit", "--config", str(config))
    first = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert first["global_step"] == 4 and int(first["state_dict"]["ema.num_updates"]) == 4

    run_cli("fit", "--config", str(config), "--trainer.max_steps", "8", "--ckpt_path", "last")
    resumed = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 8
    # An EMA restarted from scratch would have averaged only the 4 new steps.
    assert int(resumed["state_dict"]["ema.num_updates"]) == 8
    name = next(k for k in resumed["state_dict"] if k.startswith("network.") and k.endswith("weight"))
    ema_name = "ema.module." + name.removeprefix("network.")
    assert not torch.equal(resumed["state_dict"][name], first["state_dict"][name]), "training did not continue"
    assert not torch.equal(resumed["state_dict"][ema_name], first["state_dict"][ema_name]), "EMA did not continue"
    assert not torch.equal(resumed["state_dict"][ema_name], resumed["state_dict"][name]), "EMA equals raw weights"


def test_each_subcommand_keeps_its_config_and_a_failed_start_writes_none(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"max_steps": 2, "limit_val_batches": 0})
    run_cli("fit", "--config", str(config))
    run_cli("test", "--config", str(config), "--ckpt_path", "last")
    assert sorted(p.name for p in tmp_path.glob("config_*.yaml")) == ["config_fit.yaml", "config_test.yaml"]
    assert not (tmp_path / "config.yaml").exists()
    fit_config = yaml.safe_load((tmp_path / "config_fit.yaml").read_text())
    test_config = yaml.safe_load((tmp_path / "config_test.yaml").read_text())
    assert fit_config["ckpt_path"] is None and fit_config["trainer"]["max_steps"] == 2
    assert test_config["ckpt_path"] == str(tmp_path / "checkpoints" / "last.ckpt"), "the resolved file is recorded"

    # A start that fails (here: the data module's clips do not fit the model) leaves the files as they were.
    before = {p.name: p.read_text() for p in tmp_path.glob("config_*.yaml")}
    with pytest.raises(ValueError, match="num_frames"):
        run_cli("fit", "--config", str(config), "--data.init_args.num_frames", "6")
    with pytest.raises(ValueError, match="num_frames"):
        run_cli("test", "--config", str(config), "--ckpt_path", "last", "--data.init_args.num_frames", "6")
    assert {p.name: p.read_text() for p in tmp_path.glob("config_*.yaml")} == before


@pytest.mark.parametrize("value, batches", [("1", 1), ("1.0", 3), ("0.5", 1), ("2", 2)])
def test_limit_val_batches_int_counts_batches_and_float_is_a_fraction(tmp_path: Path, value: str, batches: int) -> None:
    config = tiny_config(tmp_path, trainer={"max_steps": 1}, data={"val_size": 12, "eval_batch_size": 4})
    cli = vdiff.run(["fit", "--config", str(config), "--trainer.limit_val_batches", value])
    assert cli.trainer.num_val_batches == [batches]
