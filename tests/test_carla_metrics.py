"""CARLA metrics on known trajectories (WD, PO), WD against scipy, and the position regressor trained through the CLI
on a tiny CARLA folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import scipy.stats
import torch
import yaml

from tests.fixtures_real_data import write_carla
from tests.tiny_run import REPO, merge
from video_diffusion_lab.cli import run as regressor_cli
from video_diffusion_lab.metrics.carla import (
    PercentageOffRoad,
    WassersteinDistanceTravelled,
    distance_travelled,
    off_road,
    wasserstein_1d,
)


def straight(length: float, frames: int = 5, start=(0.0, 0.0), angle: float = 0.0) -> torch.Tensor:
    """A car driving ``length`` metres in a straight line at constant speed."""
    t = torch.linspace(0, 1, frames)[:, None]
    direction = torch.tensor([math.cos(angle), math.sin(angle)])
    return torch.tensor(start) + length * t * direction


def test_distance_travelled_of_known_paths():
    square = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [0.0, 4.0], [0.0, 0.0]])
    paths = torch.stack([straight(10.0), straight(7.0, angle=1.0), square])
    assert torch.allclose(distance_travelled(paths), torch.tensor([10.0, 7.0, 14.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="positions"):
        distance_travelled(torch.zeros(3, 4))


def test_wd_on_known_trajectories():
    metric = WassersteinDistanceTravelled()
    metric.update(torch.stack([straight(10.0), straight(20.0)]), real=True)
    metric.update(torch.stack([straight(12.0), straight(22.0), straight(17.0), straight(13.0)]), real=False)
    # real {10, 20}: F = 1/2 on [10, 20), 1 from 20; fake {12, 13, 17, 22}: G = 1/4, 1/2, 3/4, 1 from 12, 13, 17, 22.
    # |F - G| = 1/2 on [10,12), 1/4 on [12,13), 0 on [13,17), 1/4 on [17,20), 1/4 on [20,22):
    # 1 + 0.25 + 0 + 0.75 + 0.5 = 2.5
    assert torch.isclose(metric.compute(), torch.tensor(2.5, dtype=torch.float64))
    same = WassersteinDistanceTravelled()
    same.update(torch.stack([straight(5.0), straight(9.0)]), real=True)
    same.update(torch.stack([straight(9.0, angle=2.0), straight(5.0, start=(3.0, 3.0))]), real=False)
    assert same.compute() < 1e-6  # float32 positions along a slanted path


@pytest.mark.parametrize("n,m,seed", [(1, 1, 0), (5, 7, 1), (40, 13, 2), (100, 100, 3)])
def test_wd_matches_scipy(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(n, generator=g) * 3, torch.rand(m, generator=g) * 5 + 1
    expected = scipy.stats.wasserstein_distance(u.numpy(), v.numpy())
    assert abs(float(wasserstein_1d(u, v)) - expected) < 1e-9


def test_po_on_known_trajectories():
    road = torch.stack([torch.arange(0, 101).float(), torch.zeros(101)], dim=1)  # the x axis, every metre
    on = straight(100.0, frames=11)  # along the road
    off = straight(100.0, frames=11, start=(0.0, 3.0))  # parallel, 3 m away
    half = torch.stack([torch.arange(10.0), torch.tensor([0, 0, 0, 0, 0, 2.5, 2.5, 2.5, 2.5, 2.5])], dim=1)
    assert not off_road(on, road, 1.0).any() and off_road(off, road, 1.0).all()
    assert not off_road(off, road, 3.5).any(), "the threshold is configurable"
    metric = PercentageOffRoad(road, threshold=1.0)
    metric.update(torch.stack([on, off]))
    assert metric.compute() == 50.0
    metric.update(half[None])  # 5 of 10 frames off
    assert torch.isclose(metric.compute(), torch.tensor(100.0 * (11 + 5) / 32, dtype=torch.float64))
    with pytest.raises(ValueError, match="threshold"):
        PercentageOffRoad(road, threshold=0.0)


def tiny_regressor_config(tmp_path: Path, root: Path) -> Path:
    config = yaml.safe_load((REPO / "experiments" / "carla_position_regressor.yaml").read_text())
    config["trainer"].update(
        max_steps=4,
        val_check_interval=None,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=str(tmp_path / "run"),
    )
    config["model"]["init_args"].update(image_size=32, widths=[8, 8, 8], hidden=16, normalisation_batches=2)
    config["data"]["init_args"].update(
        root=str(root),
        num_frames=4,
        frame_stride=2,
        image_size=32,
        val_size=1,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "regressor.tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_position_regressor_trains_through_the_cli(tmp_path: Path):
    root = write_carla(tmp_path / "carla", num_train=3, num_test=1, num_frames=12, size=32)
    regressor_cli(["fit", "--config", str(tiny_regressor_config(tmp_path, root))])
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    mean = checkpoint["state_dict"]["network.coord_mean"]
    # fixture coords: x = 1000 * video + t over train videos 0..1 (one carved for validation), y = -t
    assert mean[0] > 0 and mean[1] < 0, "the normalisation is estimated from the training coordinates"


def test_fdm_carla_protocol_reports_position_error_wd_and_po(tmp_path: Path):
    root = write_carla(tmp_path / "carla", num_train=3, num_test=2, num_frames=12, size=32)
    regressor_cli(["fit", "--config", str(tiny_regressor_config(tmp_path / "regressor", root))])
    regressor = tmp_path / "regressor" / "run" / "checkpoints" / "last.ckpt"
    config = yaml.safe_load((REPO / "experiments" / "fdm_carla_test.yaml").read_text())
    config["trainer"].update(accelerator="cpu", default_root_dir=str(tmp_path / "test"), enable_progress_bar=False)
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("CARLAPositionMetrics"):
            callback["init_args"]["regressor_checkpoint"] = str(regressor)
    merge(
        config["model"]["init_args"],
        {
            "clip": {"num_frames": 4, "image_size": 32},
            "network": {"model_channels": 8, "channel_mult": [1, 2], "attention_resolutions": [16]},
            "diffusion": {"steps": 100},
            "sampling": {"sampler": "ddim", "steps": 2},
            "task": {"num_given": 3, "video_length": 12},
            "rollout": {"scheme": "autoreg", "frames_per_pass": 4, "frames_per_stage": 2},
            "evaluation": {"num_samples": 2, "fvd": "off"},
        },
    )
    config["data"]["init_args"].update(
        root=str(root),
        eval_num_frames=12,
        image_size=32,
        eval_batch_size=2,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    path = tmp_path / "fdm.tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    regressor_cli(["test", "--config", str(path), "--untrained"])
    report = json.loads((tmp_path / "test" / "metrics_test.json").read_text())
    carla = report["carla"]
    assert carla["position_error"] > 0 and carla["wd"] >= 0 and 0 <= carla["po"] <= 100
    assert report["scheme"] == "autoreg" and report["num_videos"] == 2
