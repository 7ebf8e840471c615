"""The papers' test protocols from ``vdiff test`` on data in the published formats, with a random-weight I3D file
standing in for StyleGAN-V's ``i3d_torchscript.pt`` (loaded through the same path a user's file takes)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from tests.fixtures_real_data import write_bair_tfrecords, write_kinetics
from tests.tiny_run import REPO
from video_diffusion_lab import cli as vdiff

TINY_RAMVID = [
    "--trainer.devices",  # the paper config trains on 8; evaluating the tiny clips takes one process
    "1",
    "--model.init_args.network.model_channels",
    "8",
    "--model.init_args.network.channel_mult",
    "[1, 2]",
    "--model.init_args.network.num_res_blocks",
    "1",
    "--model.init_args.network.attention_resolutions",
    "[]",
    "--model.init_args.diffusion.steps",
    "100",
    "--model.init_args.sampling.sampler",
    "ddim",
    "--model.init_args.sampling.steps",
    "2",
    "--model.init_args.clip.image_size",
    "16",
    "--data.init_args.image_size",
    "16",
    "--model.init_args.evaluation.num_samples",
    "2",
    "--model.init_args.evaluation.sample_batch_size",
    "4",
    "--data.init_args.eval_batch_size",
    "2",
    "--data.init_args.num_workers",
    "0",
    "--trainer.logger",
    "false",
    "--trainer.enable_progress_bar",
    "false",
]


class RandomI3D(nn.Module):
    """The StyleGAN-V detector's call signature with random weights: uint8 (B, 3, T, H, W) -> 400 features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 400)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        v = x.float() / 127.5 - 1.0
        return self.proj(torch.cat([v.mean(dim=(2, 3, 4)), v.std(dim=(2, 3, 4))], dim=1))


def save_detector(path: Path, seed: int) -> Path:
    """A ``RandomI3D`` with weights drawn from ``seed``, saved as TorchScript at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(RandomI3D().eval()).save(str(path))
    return path


@pytest.fixture
def i3d_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = save_detector(tmp_path / "weights" / "i3d_torchscript.pt", seed=0)
    monkeypatch.setenv("FVD_I3D_TORCHSCRIPT", str(path))
    monkeypatch.setenv("VIDEO_DIFFUSION_CACHE", str(tmp_path / "cache"))  # the real-feature cache
    return path


def read_report(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics_test.json").read_text())


def test_bair_1_to_15_protocol_reports_fvd_crps_and_best_of_n(tmp_path: Path, i3d_file: Path) -> None:
    data_root = tmp_path / "bair"
    write_bair_tfrecords(data_root, {"train": 4, "test": 2})
    run_dir = tmp_path / "run"
    vdiff.run(
        [
            "test",
            "--untrained",
            "--config",
            str(REPO / "experiments/ramvid_bair.yaml"),
            "--config",
            str(REPO / "experiments/protocols/bair_1to15.yaml"),
            "--data.init_args.root",
            str(data_root),
            "--data.init_args.val_size",
            "1",
            "--trainer.default_root_dir",
            str(run_dir),
            *TINY_RAMVID,
        ]
    )
    report = read_report(run_dir)
    assert report["task"] == "prediction" and report["num_given"] == 1
    assert report["fvd_protocol"]["extractor"] == "styleganv" and report["protocol"]["fvd"] == "styleganv"
    assert {"psnr_mean", "psnr_best", "ssim_mean", "ssim_best", "crps", "fvd"} <= set(report["model"])
    assert report["model"]["fvd"] >= 0 and report["model"]["psnr_best"] >= report["model"]["psnr_mean"]
    assert report["num_videos"] == 2


def test_kinetics_5_to_11_protocol_on_published_layout(tmp_path: Path, i3d_file: Path) -> None:
    data_root = tmp_path / "kinetics"
    write_kinetics(data_root, num_frames=20, height=48, width=64, broken=False)
    run_dir = tmp_path / "run"
    vdiff.run(
        [
            "test",
            "--untrained",
            "--config",
            str(REPO / "experiments/ramvid_kinetics600.yaml"),
            "--config",
            str(REPO / "experiments/protocols/kinetics600_5to11.yaml"),
            "--data.init_args.root",
            str(data_root),
            "--trainer.default_root_dir",
            str(run_dir),
            *TINY_RAMVID,
        ]
    )
    report = read_report(run_dir)
    assert report["num_given"] == 5 and report["video_length"] == 16
    assert report["fvd_protocol"]["extractor"] == "styleganv" and report["model"]["fvd"] >= 0


def test_required_fvd_weights_missing_stops_with_the_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FVD_I3D_TORCHSCRIPT", str(tmp_path / "nowhere" / "i3d_torchscript.pt"))
    data_root = tmp_path / "bair"
    write_bair_tfrecords(data_root, {"train": 4, "test": 2})
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        vdiff.run(
            [
                "test",
                "--untrained",
                "--config",
                str(REPO / "experiments/ramvid_bair.yaml"),
                "--config",
                str(REPO / "experiments/protocols/bair_1to15.yaml"),
                "--data.init_args.root",
                str(data_root),
                "--data.init_args.val_size",
                "1",
                "--trainer.default_root_dir",
                str(tmp_path / "run"),
                *TINY_RAMVID,
            ]
        )
    assert not (tmp_path / "run" / "metrics_test.json").exists()
