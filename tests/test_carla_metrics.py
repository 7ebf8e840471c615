"""FDM's CARLA speed metrics on trajectories with known answers, WD against scipy, the position regressor trained
through the CLI, and the CARLA protocol of ``vdiff test`` with the released regressor (imported by ``vdiff-import``,
logged to W&B) and with the project's own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
import yaml

from tests.fixtures_real_data import write_carla
from tests.tiny_run import REPO, merge
from video_diffusion_lab import import_cli as vdiff_import
from video_diffusion_lab.cli import run as vdiff
from video_diffusion_lab.metrics import CARLASpeedMetrics, carla_speed_metrics, speed_estimates, wasserstein_1d
from video_diffusion_lab.metrics.weights import file_sha256

RELEASED = REPO / "tests" / "fixtures" / "carla_regressor"


def drive(speed: float, frames: int = 40, fps: float = 10.0, start=(0.0, 0.0), angle: float = 0.0) -> torch.Tensor:
    """(frames, 2) positions of a car driving in a straight line at ``speed`` m/s."""
    t = torch.arange(frames, dtype=torch.float64)[:, None] / fps
    direction = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
    return torch.tensor(start, dtype=torch.float64) + speed * t * direction


def test_speeds_are_distances_gap_frames_apart_per_second():
    turn = torch.tensor([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0], [6.0, 4.0]], dtype=torch.float64)[None]
    # gap 2 at 4 fps: pairs (0, 2) and (1, 3), 0.5 s apart: |(3, 4)| / 0.5 = 10 and |(3, 4)| / 0.5 = 10
    assert torch.equal(speed_estimates(turn, fps=4, gap=2), torch.tensor([[10.0, 10.0]], dtype=torch.float64))
    assert torch.allclose(speed_estimates(drive(2.5)[None]), torch.full((1, 30), 2.5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected \(videos, frames, 2\)"):
        speed_estimates(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="no speed estimate 10 frames apart"):
        speed_estimates(torch.zeros(1, 10, 2))
    with pytest.raises(ValueError, match="fps"):
        speed_estimates(drive(1.0)[None], fps=0)


def test_identical_trajectories_give_zero_wd_and_op():
    videos = torch.stack([drive(3.0), drive(1.5, angle=2.0), drive(0.0, start=(5.0, 5.0))])
    metrics = carla_speed_metrics(videos, videos.clone())
    assert metrics["wd"] == 0.0 and metrics["op"] == 0.0 and metrics["data_op"] == 0.0
    assert metrics["data_speeds"] == metrics["generated_speeds"] == 3 * 30
    assert metrics["histogram"]["data"] == metrics["histogram"]["generated"]
    assert sum(metrics["histogram"]["data"]) == 90


def test_constant_speeds_give_their_difference():
    data = torch.stack([drive(3.0), drive(3.0, angle=1.0)])
    generated = np.stack([drive(1.25).numpy(), drive(1.25, angle=-2.0).numpy(), drive(1.25, start=(9.0, 1.0)).numpy()])
    metrics = carla_speed_metrics(data, generated)  # numpy and torch alike
    assert metrics["wd"] == pytest.approx(1.75, abs=1e-12)
    assert metrics["op"] == 0.0
    # half the generated videos at 1 m/s, half at 4 m/s, the data at 3 m/s: W1 = (2 + 1) / 2
    mixed = torch.stack([drive(1.0), drive(4.0)])
    assert carla_speed_metrics(data, mixed)["wd"] == pytest.approx(1.5, abs=1e-12)


def test_one_impossible_jump_gives_the_right_op():
    data = drive(2.0, frames=30)[None]
    jump = drive(2.0, frames=30)
    jump[15] += torch.tensor([120.0, 0.0])  # one frame 120 m away: a "jump" through the town and back
    # 20 speed estimates (t = 0..19, to t + 10); those that use frame 15, t = 5 and t = 15, are outliers
    metrics = carla_speed_metrics(data, jump[None])
    assert metrics["op"] == pytest.approx(100.0 * 2 / 20)
    assert metrics["generated_speeds"] == 20 and sum(metrics["histogram"]["generated"]) == 18
    assert metrics["wd"] == pytest.approx(0.0, abs=1e-12), "outliers are left out of WD"
    lower = carla_speed_metrics(data, jump[None], outlier_speed=1.0)
    assert lower["op"] == 100.0 and lower["data_op"] == 100.0 and math.isnan(lower["wd"])


def test_histogram_bins_speeds_up_to_the_outlier_speed():
    metrics = carla_speed_metrics(drive(0.05)[None], drive(9.95)[None], bins=10)
    assert metrics["histogram"]["edges"] == pytest.approx([float(i) for i in range(11)])
    assert metrics["histogram"]["data"] == [30] + [0] * 9
    assert metrics["histogram"]["generated"] == [0] * 9 + [30]


@pytest.mark.parametrize("n,m,seed", [(1, 1, 0), (5, 7, 1), (40, 13, 2), (100, 100, 3)])
def test_wd_matches_scipy(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(n, generator=g) * 3, torch.rand(m, generator=g) * 5 + 1
    expected = scipy.stats.wasserstein_distance(u.numpy(), v.numpy())
    assert abs(float(wasserstein_1d(u, v)) - expected) < 1e-9


def test_metric_over_batches_equals_the_function_on_all_videos():
    g = torch.Generator().manual_seed(0)
    walk = lambda n: torch.randn(n, 25, 2, generator=g, dtype=torch.float64).cumsum(1)  # noqa: E731
    data, generated = walk(5), walk(7) * 3
    metric = CARLASpeedMetrics()
    for part in data.split(2):
        metric.update(part, generated=False)
    for part in generated.split(3):
        metric.update(part, generated=True)
    expected = carla_speed_metrics(data, generated)
    computed = metric.compute()
    assert computed["wd"] == pytest.approx(expected["wd"], abs=1e-12) and computed["op"] == expected["op"]
    assert computed["histogram"] == expected["histogram"] and 0 < computed["op"] < 100


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
    vdiff(["fit", "--config", str(tiny_regressor_config(tmp_path, root))])
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4
    mean = checkpoint["state_dict"]["network.coord_mean"]
    # fixture coords: x = 1000 * video + t over train videos 0..1 (one carved for validation), y = -t
    assert mean[0] > 0 and mean[1] < 0, "the normalisation is estimated from the training coordinates"


def tiny_protocol_config(tmp_path: Path, root: Path, regressor: dict, wandb: bool = False) -> Path:
    """experiments/fdm_carla_test.yaml at 32x32 with a 12-frame video, the speed gap 2 frames at 1 fps (the fixture
    car moves sqrt(2) m a frame)."""
    config = yaml.safe_load((REPO / "experiments" / "fdm_carla_test.yaml").read_text())
    config["trainer"].update(accelerator="cpu", default_root_dir=str(tmp_path / "test"), enable_progress_bar=False)
    if wandb:
        config["trainer"]["logger"] = {
            "class_path": "pytorch_lightning.loggers.WandbLogger",
            "init_args": {"project": "test", "offline": True, "save_dir": str(tmp_path / "test")},
        }
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("CARLAPositionMetrics"):
            callback["init_args"].update(regressor, fps=1.0, gap=2)
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
    return path


def test_carla_protocol_with_the_released_regressor(tmp_path: Path):
    """vdiff-import reads the released files; vdiff test regresses both sides with them, names them in the report
    and logs the speed histogram to W&B."""
    root = write_carla(tmp_path / "carla", num_train=1, num_test=2, num_frames=12, size=32)
    imported = tmp_path / "carla_regressor.pt"
    assert (
        vdiff_import.main(
            [
                "carla_regressor",
                str(RELEASED / "regressor_checkpoint.pth"),
                "--classifier",
                str(RELEASED / "classifier_checkpoint.pth"),
                "--out",
                str(imported),
            ]
        )
        == 0
    )
    config = tiny_protocol_config(tmp_path, root, {"released_regressor": str(imported)}, wandb=True)
    vdiff(["test", "--config", str(config), "--untrained"])
    report = json.loads((tmp_path / "test" / "metrics_test.json").read_text())
    carla = report["carla"]
    assert carla["regressor"]["kind"] == "released" and carla["regressor"]["sha256"] == file_sha256(imported)
    for role in ("classifier", "regressor"):
        assert carla["regressor"]["sources"][role]["sha256"] == file_sha256(RELEASED / f"{role}_checkpoint.pth")
    # the data set's side: the 2 test videos and, read from the folder, the training video (data_videos: all)
    assert (carla["num_videos"], carla["num_training_videos"], carla["num_generated_videos"]) == (2, 1, 4)
    assert (carla["data_speeds"], carla["generated_speeds"]) == (3 * 10, 4 * 10)
    assert carla["wd"] is None or carla["wd"] >= 0  # null when every speed of a side is an outlier
    assert 0 <= carla["op"] <= 100 and carla["data_position_error"] > 0
    assert carla["wd_recorded_coordinates"] is None or carla["wd_recorded_coordinates"] >= 0
    assert (tmp_path / "test" / carla["histogram_png"]).stat().st_size > 0
    assert list(tmp_path.glob("test/wandb/offline-run-*/files/media/images/test/carla/speed_histogram*.png"))


def test_carla_protocol_with_the_projects_regressor(tmp_path: Path):
    root = write_carla(tmp_path / "carla", num_train=3, num_test=2, num_frames=12, size=32)
    vdiff(["fit", "--config", str(tiny_regressor_config(tmp_path / "regressor", root))])
    checkpoint = tmp_path / "regressor" / "run" / "checkpoints" / "last.ckpt"
    regressor = {"released_regressor": None, "regressor_checkpoint": str(checkpoint), "data_videos": "test"}
    config = tiny_protocol_config(tmp_path, root, regressor)
    vdiff(["test", "--config", str(config), "--untrained"])
    report = json.loads((tmp_path / "test" / "metrics_test.json").read_text())
    carla = report["carla"]
    assert carla["regressor"] == {"kind": "project", "file": str(checkpoint), "sha256": file_sha256(checkpoint)}
    # data_videos: test - the 2 test videos only; their recorded coordinates move sqrt(2) m a frame, 1.41 m/s at
    # 1 fps: no outlier
    assert carla["num_training_videos"] == 0
    assert sum(carla["histogram_recorded_coordinates"]["data"]) == carla["data_speeds"] == 20
    assert report["scheme"] == "autoreg" and report["num_videos"] == 2


def test_protocol_settings_and_missing_regressor_files_are_named(tmp_path: Path):
    from video_diffusion_lab.callbacks.carla_metrics import CARLAPositionMetrics

    with pytest.raises(ValueError, match="released_regressor.*regressor_checkpoint"):
        CARLAPositionMetrics()
    with pytest.raises(ValueError, match="gap"):
        CARLAPositionMetrics(released_regressor="x.pt", gap=0)
    with pytest.raises(ValueError, match="data_videos"):
        CARLAPositionMetrics(released_regressor="x.pt", data_videos="train")
    missing = CARLAPositionMetrics(released_regressor=str(tmp_path / "absent.pt"))
    with pytest.raises(FileNotFoundError, match="absent.pt.*vdiff-import carla_regressor"):
        missing.on_test_start(None, torch.nn.Linear(1, 1))
