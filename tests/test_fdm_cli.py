"""FDM end to end through the CLI: fit on whole videos, predict a long video with a scheme (mp4 + PNG of the
scheme), test over whole videos, and bad settings stopped before any training or sampling."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
import yaml

from tests.tiny_run import REPO, merge
from video_diffusion_lab import cli as vdiff

FDM_CONFIG = REPO / "experiments" / "fdm_shapes.yaml"


def tiny_fdm_config(run_dir: Path, model: dict | None = None) -> Path:
    config = yaml.safe_load(FDM_CONFIG.read_text())
    config["trainer"].update(
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    merge(
        config["model"]["init_args"],
        {
            "clip": {"num_frames": 4, "image_size": 8},
            "network": {"model_channels": 8, "attention_resolutions": [4]},
            "diffusion": {"steps": 100},
            "sampling": {"steps": 2},
            "task": {"num_given": 3, "video_length": 14},
            "rollout": {"frames_per_stage": 2},
        },
    )
    merge(config["model"]["init_args"], model or {})
    config["data"]["init_args"].update(
        num_frames=12,
        image_size=8,
        size_range=[2.0, 3.0],
        offscreen=4.0,
        train_size=8,
        val_size=2,
        test_size=2,
        predict_size=2,
        batch_size=4,
        eval_batch_size=2,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_fit_predict_long_video_with_a_scheme_and_test(tmp_path: Path) -> None:
    config = tiny_fdm_config(tmp_path)
    vdiff.run(["fit", "--config", str(config)])
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()

    # 14 frames with a network that holds 4 per pass: the video is longer than the 12-frame data clips
    vdiff.run(
        ["predict", "--config", str(config), "--ckpt_path", "last", "--model.init_args.rollout.scheme", "hierarchy_2"]
    )
    out = tmp_path / "predictions"
    samples = sorted(out.glob("sample_*.mp4"))
    assert len(samples) == 2 and count_frames(samples[0]) == 14
    picture = out / "scheme_hierarchy_2.png"
    assert picture.exists()
    with av.open(str(picture)) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert image.shape[1] % 14 == 0 and image.shape[0] > 0
    assert ((image == (220, 50, 40)).all(-1)).any() and ((image == (40, 90, 220)).all(-1)).any()

    vdiff.run(
        [
            "test",
            "--config",
            str(config),
            "--ckpt_path",
            "last",
            "--model.init_args.rollout.scheme",
            "adaptive_autoreg",
            "--model.init_args.task.video_length",
            "12",
        ]
    )
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["method"] == "FDM" and report["scheme"] == "adaptive_autoreg"
    assert report["video_length"] == 12 and report["num_given"] == 3 and report["frames_per_pass"] == 4
    assert report["num_stages"] == 5  # 9 generated frames, 2 a stage
    assert report["model"]["psnr_mean"] > 0


@pytest.mark.parametrize(
    "model, field",
    [
        ({"rollout": {"scheme": "hierarchy-9"}}, "rollout.scheme"),
        ({"rollout": {"frames_per_stage": 4}}, "rollout.frames_per_stage"),
        ({"task": {"num_given": 14}}, "task.num_given"),
        ({"rollout": {"frames_per_pass": 5}}, "rollout.frames_per_pass"),
        ({"rollout": {"adaptive_distance": "ssim"}}, "rollout.adaptive_distance"),
        ({"padding": "zeros"}, "padding"),
        ({"windows": {"probability": 0.5, "shortest": 0}}, "windows.shortest"),
    ],
)
def test_bad_settings_stop_before_training_naming_the_field(tmp_path: Path, model: dict, field: str) -> None:
    config = tiny_fdm_config(tmp_path, model)
    with pytest.raises(Exception) as error:
        vdiff.run(["fit", "--config", str(config)])
    assert field in str(error.value)
    assert not (tmp_path / "checkpoints").exists()
