"""FDM's CARLA Town01 metrics from ``vdiff test``: where the car is in generated frames, by the position regressor.

Three numbers, added to ``metrics_test.json`` and the loggers (definitions in ``metrics/carla.py``):
- ``position_error``: mean distance between the regressed position of each generated frame and the true position
  of that frame (``coords`` of the test video);
- ``wd``: Wasserstein distance between the distance travelled in the test videos (true coordinates) and in the
  sampled videos (regressed positions);
- ``po``: percentage of sampled frames farther than ``off_road_threshold`` from every training-set position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from video_diffusion_lab.datamodules.carla import coords_name
from video_diffusion_lab.metrics.carla import PercentageOffRoad, WassersteinDistanceTravelled
from video_diffusion_lab.metrics.report import run_dir, write_json


class CARLAPositionMetrics(pl.Callback):
    def __init__(self, regressor_checkpoint: str, off_road_threshold: float = 1.0, road_stride: int = 1):
        super().__init__()
        if off_road_threshold <= 0:
            raise ValueError(f"off_road_threshold: must be > 0, got {off_road_threshold}")
        self.regressor_checkpoint = regressor_checkpoint
        self.off_road_threshold, self.road_stride = off_road_threshold, road_stride
        self.regressor: torch.nn.Module | None = None

    def training_positions(self, datamodule: Any) -> torch.Tensor:
        """Every (x, y) the car visits in the training videos: the reference set of PO."""
        if not hasattr(datamodule, "split_names"):
            raise ValueError("CARLAPositionMetrics needs the CARLA data module (data: datamodules.CARLADataModule)")
        coords = [
            np.load(datamodule.root / coords_name(name), mmap_mode="r")[:: self.road_stride, :2]
            for name in datamodule.split_names("train")
        ]
        return torch.from_numpy(np.concatenate(coords).astype(np.float64))

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from video_diffusion_lab.lightning_modules.carla_regressor import CARLAPositionRegressor

        path = Path(self.regressor_checkpoint)
        if not path.is_file():
            raise FileNotFoundError(
                f"regressor_checkpoint: {path} does not exist. Train the CARLA position regressor first: "
                "vdiff fit --config experiments/carla_position_regressor.yaml --data.init_args.root <CARLA folder>"
            )
        regressor = CARLAPositionRegressor.load_from_checkpoint(path, map_location=pl_module.device, weights_only=True)
        self.regressor = regressor.network.eval().requires_grad_(False)
        road = self.training_positions(trainer.datamodule)
        self.error = MeanMetric().to(pl_module.device)
        self.wd = WassersteinDistanceTravelled().to(pl_module.device)
        self.po = PercentageOffRoad(road, self.off_road_threshold).to(pl_module.device)

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
        samples, mask = outputs["samples"], outputs["mask"]  # (N, B, T, C, H, W)
        n, b, t = samples.shape[:3]
        coords = batch["coords"][:, :t].to(pl_module.device).double()  # FDM may cut clips to its video_length
        positions = self.regressor.positions(samples.flatten(0, 2)).reshape(n, b, t, 2).double()
        latent = mask.latent
        self.error.update((positions - coords[None]).norm(dim=-1)[:, latent].flatten())
        self.wd.update(coords, real=True)
        self.wd.update(positions.flatten(0, 1), real=False)
        self.po.update(positions.flatten(0, 1))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results = {
            "position_error": float(self.error.compute()),
            "wd": float(self.wd.compute()),
            "po": float(self.po.compute()),
            "off_road_threshold": self.off_road_threshold,
            "regressor_checkpoint": str(self.regressor_checkpoint),
        }
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"test/carla/{k}": v for k, v in results.items() if isinstance(v, float)})
            path = run_dir(trainer) / "metrics_test.json"
            report = json.loads(path.read_text()) if path.is_file() else {}
            report["carla"] = results
            write_json(path, report)
            print(
                f"CARLA: position error {results['position_error']:.3f}, WD {results['wd']:.3f}, "
                f"PO {results['po']:.2f}%"
            )
