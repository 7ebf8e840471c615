"""VDM end to end through the CLI: joint image-video training, test with guidance, temporal extension with a scheme,
spatial extension, class-conditional training with classifier-free guidance, and config errors naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import decord
import pytest
import torch
import yaml

from tests.tiny_run import REPO, merge
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.groups import ClipShape, RolloutConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules.vdm import VDM, VDMUNetConfig

VDM_CONFIG = REPO / "experiments" / "vdm_shapes.yaml"


def tiny_vdm_config(
    run_dir: Path,
    model: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
) -> Path:
    """vdm_shapes.yaml shrunk to seconds: 8x8 clips of 4 frames (+2 image frames), width 8, 3 sampling steps."""
    config = yaml.safe_load(VDM_CONFIG.read_text())
    config["trainer"].update(
        max_steps=3,
        limit_val_batches=1,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
        logger=False,
        **(trainer or {}),
    )
    tiny_model = {
        "clip": {"num_frames": 4, "image_size": 8},
        "network": {"model_channels": 8, "channel_mult": [1, 2], "attention_resolutions": [4], "attention_head_dim": 8},
        "sampling": {"steps": 3},
        "task": {"num_given": 2},
        "num_image_frames": 2,
    }
    tiny_data = dict(
        num_frames=4,
        image_size=8,
        size_range=[2.0, 3.0],
        train_size=12,
        val_size=2,
        test_size=2,
        predict_size=2,
        batch_size=4,
        eval_batch_size=2,
    )
    merge(config["model"]["init_args"], tiny_model)
    merge(config["model"]["init_args"], model or {})
    config["data"]["init_args"].update({**tiny_data, **(data or {})})
    path = run_dir / "config.vdm.yaml"
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def frames_of(path: Path) -> tuple[int, int]:
    reader = decord.VideoReader(str(path))
    return len(reader), reader[0].shape[0]


def test_fit_test_and_extend_in_time_and_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_vdm_config(tmp_path)
    vdiff.run(["fit", "--config", str(config), "--trainer.limit_val_batches", "0"])  # test and predict sample below
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert checkpoint["hyper_parameters"]["num_image_frames"] == 2
    assert checkpoint["hyper_parameters"]["clip"] == {"num_frames": 4, "image_size": 8, "channels": 3}

    vdiff.run(
        ["test", "--config", str(config), "--ckpt_path", "last", "--model.init_args.conditioning_method", "replacement"]
    )
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["method"] == "VDM" and report["sampler"] == "ddpm" and report["num_given"] == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in report["model"].values())

    # Temporal extension: 4-frame model -> 7 frames with Autoreg (2 given, 1 new frame per stage ... 2 per stage).
    vdiff.run(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            "last",
            "--model.init_args.task.video_length",
            "7",
            "--model.init_args.rollout.scheme",
            "autoreg",
            "--model.init_args.rollout.frames_per_stage",
            "2",
        ]
    )
    samples = sorted((tmp_path / "predictions").glob("sample_*.mp4"))
    assert len(samples) == 2
    length, _ = frames_of(samples[0])
    assert length == 7

    # Spatial extension: each 8x8 clip downsampled to 4x4 and generated back at 8x8 by spatial guidance.
    out_dir = tmp_path / "spatial"
    vdiff.run(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            "last",
            "--model.init_args.spatial_factor",
            "2",
            "--trainer.callbacks+=callbacks.VideoPredictionWriter",
            f"--trainer.callbacks.output_dir={out_dir}",
        ]
    )
    written = sorted(out_dir.glob("sample_*.mp4"))
    assert len(written) == 2
    length, height = frames_of(written[0])
    assert length == 4 and height == 8 * 4  # the writer scales by 4


def test_class_conditional_training_and_guided_sampling(tmp_path: Path) -> None:
    network = VDMUNetConfig(
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        attention_head_dim=8,
        num_classes=3,
    )
    model = VDM(
        clip=ClipShape(num_frames=3, image_size=8),
        network=network,
        cond_drop_prob=0.5,
        guidance_weight=1.5,
        sampling=SamplingConfig(sampler="ddim", steps=2),
        task=TaskConfig(num_given=1),
    )
    batch = {
        "video": torch.rand(2, 3, 3, 8, 8) * 2 - 1,
        "frame_indices": torch.arange(3).expand(2, 3),
        "index": torch.arange(2),
        "label": torch.tensor([0, 2]),
    }
    with torch.no_grad():  # zero-initialised output layers pass no gradient back at the start
        for p in model.network.parameters():
            p.add_(0.1 * torch.randn_like(p))
    loss = model.training_step(batch, 0)
    loss.backward()
    assert model.network.cond_embed.label_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        out = model.sample(
            batch["video"],
            model.eval_mask(batch),
            generator=torch.Generator().manual_seed(0),
            **model.conditioning(batch),
        )
    assert torch.equal(out[:, 0], batch["video"][:, 0])
    with pytest.raises(ValueError, match="num_classes"):
        model.conditioning({k: v for k, v in batch.items() if k != "label"})


def test_temporal_extension_with_a_non_contiguous_scheme(tmp_path: Path) -> None:
    network = VDMUNetConfig(
        model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), attention_head_dim=8
    )
    model = VDM(
        clip=ClipShape(num_frames=4, image_size=8),
        network=network,
        sampling=SamplingConfig(sampler="ddim", steps=2),
        task=TaskConfig(num_given=1, video_length=9),
        rollout=RolloutConfig(scheme="hierarchy_2", frames_per_stage=2),
        conditioning_method="replacement",
    )
    batch = {
        "video": torch.rand(1, 4, 3, 8, 8) * 2 - 1,
        "frame_indices": torch.arange(4)[None],
        "index": torch.zeros(1),
    }
    with torch.inference_mode():
        out = model.predict_step(batch, 0)
    assert out["samples"].shape == (1, 9, 3, 8, 8)
    assert torch.equal(out["samples"][:, 0], batch["video"][:, 0])
    assert out["samples"][:, 1:].abs().sum(dim=(2, 3, 4)).min() > 0  # every frame was generated


@pytest.mark.parametrize(
    "model, data, field",
    [
        ({"diffusion": {"prediction": "score"}}, {}, "diffusion.prediction"),
        ({"sampling": {"sampler": "euler"}}, {}, "sampling.sampler"),
        ({"network": {"frame_conditioning": True}, "num_image_frames": 0}, {}, "conditioning_method"),
        ({"guidance_weight": 2.0}, {}, "guidance_weight"),
        ({"clip": {"image_size": 10}, "network": {"channel_mult": [1, 2, 2]}}, {"image_size": 10}, "image_size"),
        ({"diffusion": {"schedule": "linear"}}, {}, "diffusion.schedule"),
        ({"spatial_factor": 3}, {}, "spatial_factor"),
        ({}, {"batch_size": 1}, "num_image_frames"),
    ],
)
def test_bad_config_stops_before_training_naming_the_field(tmp_path: Path, model: dict, data: dict, field: str) -> None:
    config = tiny_vdm_config(tmp_path, model=model, data=data)
    with pytest.raises(Exception) as error:
        vdiff.run(["fit", "--config", str(config)])
    assert field in str(error.value)
    assert not (tmp_path / "checkpoints").exists(), "no training step may run on a bad config"
