"""FDM's CARLA Town01 metrics from ``vdiff test``: WD and OP of the car's speeds (``metrics.carla``), with the
position regressor run on both sides, the test videos and the generated ones, as in the paper's speed histogram.

The data set's side is, by default, every video of the data set, train and test (``data_videos: all``), as the
paper compares with "the original dataset" and the release regresses the whole data folder
(``scripts/video_to_world_coords.py --dataset_dir``); ``data_videos: test`` keeps the run's test videos only.

Added to ``metrics_test.json`` under ``"carla"`` and to the loggers (``test/carla/...``):
- ``wd`` (m/s), ``op`` (percent): the published metrics, data-set speeds from the regressor;
- ``wd_recorded_coordinates``: WD with the data-set speeds from the recorded coordinates (``coords_<i>.npy``) instead;
- ``data_op``: outliers among the regressed data-set speeds, ``data_position_error``: the regressor's mean error on
  the test frames (metres) - how far the regressor itself can be trusted;
- ``regressor``: which regressor produced the numbers: ``released`` (FDM's, imported by ``vdiff-import
  carla_regressor``; preferred when given) or ``project`` (``lightning_modules.carla_regressor``), with the file and
  its sha256;
- the settings (fps, gap, outlier speed), the numbers of videos and speeds, and the speed histograms.
``carla_speed_histogram.png`` (data set against the generated videos, the paper's figure) is written beside the
metrics and logged to W&B when a ``WandbLogger`` is configured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, SumMetric

from video_diffusion_lab.datamodules.carla import coords_name, load_video
from video_diffusion_lab.datamodules.video_index import resize_uint8, uint8_to_unit_range
from video_diffusion_lab.metrics.carla import FPS, GAP, OUTLIER_SPEED, CARLASpeedMetrics
from video_diffusion_lab.metrics.report import run_dir, write_json
from video_diffusion_lab.metrics.weights import file_sha256
from video_diffusion_lab.networks.official.carla_regressor import load_imported

HISTOGRAM_FILE = "carla_speed_histogram.png"
LOGGED = ("wd", "op", "data_op", "wd_recorded_coordinates", "data_position_error")
DATA_VIDEOS = ("all", "test")


def load_project_regressor(checkpoint: str | Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The project's own position regressor, trained with ``experiments/carla_position_regressor.yaml``."""
    from video_diffusion_lab.lightning_modules.carla_regressor import CARLAPositionRegressor

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"regressor_checkpoint: {path} does not exist. Import FDM's released regressor (released_regressor, "
            "docs/carla.md) or train this project's: vdiff fit --config experiments/carla_position_regressor.yaml "
            "--data.init_args.root <CARLA folder>"
        )
    module = CARLAPositionRegressor.load_from_checkpoint(path, map_location=device, weights_only=True)
    return module.network, {"kind": "project", "file": str(path), "sha256": file_sha256(path)}


@torch.no_grad()
def regress_positions(regressor: nn.Module, frames: Tensor, batch_size: int) -> Tensor:
    """(..., C, H, W) frames in [-1, 1] -> (..., 2) float64 positions on the regressor's device, ``batch_size`` frames
    at a time (long videos may wait on the CPU: only a chunk at a time moves)."""
    device = next(regressor.parameters()).device
    flat = frames.reshape(-1, *frames.shape[-3:])
    positions = [regressor.positions(part.to(device)).double() for part in flat.split(batch_size)]
    return torch.cat(positions).reshape(*frames.shape[:-3], 2)


def speed_histogram_figure(results: dict[str, Any], generated_label: str, path: Path) -> Path:
    """The data set's and the generated videos' speed densities over [0, outlier speed] (the paper's figure), as a
    PNG; ``results`` is the report's ``carla`` entry."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    histograms, edges = results["histogram"], results["histogram"]["edges"]
    figure = Figure(figsize=(6, 3.5))
    axis = figure.add_subplot()
    for label, counts, color in (
        ("data set", histograms["data"], "0.3"),
        (generated_label, histograms["generated"], "C3"),
    ):
        total = sum(counts) or 1
        widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
        axis.stairs([c / total / w for c, w in zip(counts, widths)], edges, label=label, color=color, linewidth=1.5)
    axis.set_xlabel(f"speed (m/s), positions {results['gap']} frames ({results['gap'] / results['fps']:g} s) apart")
    axis.set_title(f"WD {results['wd']:.3g} m/s, OP {results['op']:.3g}%", fontsize=10)
    axis.set_ylabel("density")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


class CARLAPositionMetrics(pl.Callback):
    """FDM's WD and OP on CARLA Town01 (``docs/carla.md``); needs ``data.return_coords: true`` for the recorded
    coordinates' WD and the regressor's error.

    ``released_regressor``: a file written by ``vdiff-import carla_regressor`` (FDM's released regressor, the one the
    paper's numbers come from); used when given. ``regressor_checkpoint``: the project's own regressor, the fallback.
    ``data_videos``: ``all`` (the test videos of the run and every training video, read from the data folder and
    shared between the processes) or ``test``.
    """

    def __init__(
        self,
        released_regressor: str | None = None,
        regressor_checkpoint: str | None = None,
        fps: float = FPS,
        gap: int = GAP,
        outlier_speed: float = OUTLIER_SPEED,
        data_videos: str = "all",
        regressor_batch_size: int = 256,
    ):
        super().__init__()
        if released_regressor is None and regressor_checkpoint is None:
            raise ValueError("CARLAPositionMetrics: give released_regressor (FDM's, imported) or regressor_checkpoint")
        if data_videos not in DATA_VIDEOS:
            raise ValueError(f"data_videos: choose one of {DATA_VIDEOS}, got {data_videos!r}")
        if regressor_batch_size < 1:
            raise ValueError(f"regressor_batch_size: must be >= 1, got {regressor_batch_size}")
        self.released_regressor, self.regressor_checkpoint = released_regressor, regressor_checkpoint
        self.settings = {"fps": fps, "gap": gap, "outlier_speed": outlier_speed}
        CARLASpeedMetrics(**self.settings)  # check the settings now, not after sampling
        self.data_videos, self.regressor_batch_size = data_videos, regressor_batch_size
        self.regressor: nn.Module | None = None
        self.regressor_record: dict[str, Any] = {}

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.released_regressor is not None:
            regressor, self.regressor_record = load_imported(self.released_regressor)
        else:
            regressor, self.regressor_record = load_project_regressor(self.regressor_checkpoint, pl_module.device)
        self.regressor = regressor.to(pl_module.device).eval().requires_grad_(False)
        self.regressed = CARLASpeedMetrics(**self.settings).to(pl_module.device)
        self.recorded = CARLASpeedMetrics(**self.settings).to(pl_module.device)
        self.position_error = MeanMetric().to(pl_module.device)
        self.videos = SumMetric().to(pl_module.device)
        self.generated_videos = SumMetric().to(pl_module.device)
        self.has_coordinates = False
        self.training_videos = SumMetric().to(pl_module.device)
        self.training_videos.update(0)  # a count of none, not "no update" (data_videos: test)
        if self.data_videos == "all":
            self.add_training_videos(trainer)

    @torch.no_grad()
    def add_training_videos(self, trainer: pl.Trainer) -> None:
        """The data set's side beyond the test videos: this process's share of the training split, whole videos."""
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "split_names"):
            raise ValueError("CARLAPositionMetrics(data_videos='all') needs the CARLA data module (CARLADataModule)")
        names = datamodule.split_names("train")[trainer.global_rank :: trainer.world_size]
        for name in names:
            frames = resize_uint8(load_video(datamodule.root / name), datamodule.image_size)
            positions = regress_positions(self.regressor, uint8_to_unit_range(frames), self.regressor_batch_size)
            self.regressed.update(positions[None], generated=False)
            coords = datamodule.root / coords_name(name)
            if datamodule.return_coords and coords.is_file():
                recorded = torch.from_numpy(np.load(coords)[: len(frames), :2]).to(positions)
                self.recorded.update(recorded[None], generated=False)
        self.training_videos.update(len(names))

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        samples, video = outputs["samples"], outputs["video"]  # (N, B, T, C, H, W), (B, T, C, H, W) in [-1, 1]
        n, b, t = samples.shape[:3]
        data = regress_positions(self.regressor, video, self.regressor_batch_size)
        generated = regress_positions(self.regressor, samples, self.regressor_batch_size).flatten(0, 1)
        self.regressed.update(data, generated=False)
        self.regressed.update(generated, generated=True)
        self.recorded.update(generated, generated=True)
        if "coords" in batch:
            self.has_coordinates = True
            coords = batch["coords"][:, :t].to(data)  # FDM cuts test videos to its video_length
            self.recorded.update(coords, generated=False)
            self.position_error.update((data - coords).norm(dim=-1))
        self.videos.update(b)
        self.generated_videos.update(n * b)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        regressed = self.regressed.compute()
        results: dict[str, Any] = {
            "wd": regressed["wd"],
            "op": regressed["op"],
            "data_op": regressed["data_op"],
            "regressor": self.regressor_record,
            **self.settings,
            "data_videos": self.data_videos,
            "num_videos": int(self.videos.compute()),
            "num_training_videos": int(self.training_videos.compute()),
            "num_generated_videos": int(self.generated_videos.compute()),
            "data_speeds": regressed["data_speeds"],
            "generated_speeds": regressed["generated_speeds"],
        }
        if self.has_coordinates:  # the same data module on every rank: all have coordinates, or none
            recorded = self.recorded.compute()
            results["wd_recorded_coordinates"] = recorded["wd"]
            results["data_position_error"] = float(self.position_error.compute())
            results["histogram_recorded_coordinates"] = recorded["histogram"]
        results["histogram"] = regressed["histogram"]
        if trainer.is_global_zero:
            self.write(trainer, pl_module, results)

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, results: dict[str, Any]) -> None:
        folder = run_dir(trainer)
        scheme = getattr(getattr(pl_module, "rollout_config", None), "scheme", None)
        label = f"generated ({scheme})" if scheme else "generated"
        figure = speed_histogram_figure(results, label, folder / HISTOGRAM_FILE)
        results["histogram_png"] = figure.name
        scalars = {f"test/carla/{k}": results[k] for k in LOGGED if k in results}
        for logger in trainer.loggers:
            logger.log_metrics(scalars)
            if isinstance(logger, pl.loggers.WandbLogger):
                logger.log_image(key="test/carla/speed_histogram", images=[str(figure)], caption=[label])
        path = folder / "metrics_test.json"
        report = json.loads(path.read_text()) if path.is_file() else {}
        report["carla"] = results
        write_json(path, report)
        source = self.regressor_record
        print(
            f"CARLA ({source['kind']} regressor {Path(source['file']).name}, sha256 {source['sha256'][:12]}): "
            f"WD {results['wd']:.4g} m/s, OP {results['op']:.3g}%"
            + (
                f"; WD against recorded coordinates {results['wd_recorded_coordinates']:.4g} m/s"
                if "wd_recorded_coordinates" in results
                else ""
            )
        )
