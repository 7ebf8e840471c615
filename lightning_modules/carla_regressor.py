"""Training this project's CARLA position regressor from scratch (frames + coords of CARLADataModule), for FDM's WD
and OP (``docs/carla.md``). The paper's numbers come from FDM's released regressor (``vdiff-import carla_regressor``);
this one is the fallback of ``CARLAPositionMetrics(regressor_checkpoint=...)``, and every report names which ran.

Every frame of every training clip is an example: regress the normalised map (x, y) with an MSE loss; the
normalisation (mean / std of x and y) is estimated from the first training batches and kept in the network's buffers,
so a checkpoint maps frames to map coordinates on its own. Validation and test report the mean Euclidean error in map
units (metres in Town01).

    vdiff fit --config experiments/carla_position_regressor.yaml --data.init_args.root <CARLA folder>
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from video_diffusion_lab.networks.position_regressor import PositionRegressor


class CARLAPositionRegressor(pl.LightningModule):
    def __init__(
        self,
        image_size: int = 128,
        channels: int = 3,
        widths: tuple[int, ...] = (32, 64, 128, 128, 256, 256),
        hidden: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        normalisation_batches: int = 20,
    ):
        super().__init__()
        self.save_hyperparameters()
        if normalisation_batches < 1:
            raise ValueError(f"normalisation_batches: must be >= 1, got {normalisation_batches}")
        self.image_size, self.channels = image_size, channels
        self.network = PositionRegressor(channels, widths, hidden)
        self.val_error, self.test_error = MeanMetric(), MeanMetric()

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        for field in ("image_size", "channels"):
            expected, actual = getattr(self, field), getattr(datamodule, field, None)
            if actual is not None and actual != expected:
                raise ValueError(f"{field}: model.{field}={expected} but data.{field}={actual}; set both the same")
        if datamodule is not None and getattr(datamodule, "return_coords", True) is False:
            raise ValueError("return_coords: the position regressor trains on coordinates; set data.return_coords=true")

    @staticmethod
    def frames_and_coords(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        video, coords = batch["video"], batch["coords"]
        return video.flatten(0, 1), coords.flatten(0, 1).float()

    def on_fit_start(self) -> None:
        """Estimate the coordinate normalisation once, from the first training batches (not on resume)."""
        net = self.network
        if not (
            torch.equal(net.coord_mean, torch.zeros_like(net.coord_mean))
            and torch.equal(net.coord_std, torch.ones_like(net.coord_std))
        ):
            return
        coords = []
        for i, batch in enumerate(self.trainer.datamodule.train_dataloader()):
            if i >= self.hparams.normalisation_batches:
                break
            coords.append(batch["coords"].reshape(-1, 2).float())
        coords = torch.cat(coords)
        net.coord_mean.copy_(coords.mean(0))
        net.coord_std.copy_(coords.std(0).clamp(min=1e-3) if len(coords) > 1 else torch.ones(2))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        frames, coords = self.frames_and_coords(batch)
        target = (coords - self.network.coord_mean) / self.network.coord_std
        loss = torch.nn.functional.mse_loss(self.network(frames), target)
        self.log("train/loss", loss, prog_bar=True, batch_size=frames.shape[0])
        return loss

    def _error(self, batch: dict[str, Tensor]) -> Tensor:
        frames, coords = self.frames_and_coords(batch)
        return (self.network.positions(frames) - coords).norm(dim=-1)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_error.update(self._error(batch))
        self.log("val/position_error", self.val_error, prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_error.update(self._error(batch))
        self.log("test/position_error", self.test_error)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.network.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
