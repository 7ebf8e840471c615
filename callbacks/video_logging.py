"""Callbacks that turn samples into video files and W&B videos.

``SampleVideoLogger`` samples a fixed set of validation clips with the EMA model every N epochs and logs
(conditioning | sample | ground truth) grids; ``VideoPredictionWriter`` writes what ``predict`` samples to disk.
Both encode the files with the project's own writer and hand W&B the file (no moviepy needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, Callback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only
from torch import Tensor

from video_diffusion_lab.metrics.report import run_dir
from video_diffusion_lab.video_io import clip_grid, write_video


def comparison_clip(samples: Tensor, observed: Tensor, ground_truth: Tensor | None = None) -> Tensor:
    """One (T, C, H, W) clip: the given frames (grey where generated) | the sample | the ground truth (grey where
    the video is longer than the data clip)."""
    length = samples.shape[0]
    conditioning = torch.where(observed.reshape(-1, 1, 1, 1).to(samples.device), samples, torch.zeros_like(samples))
    columns = [conditioning, samples]
    if ground_truth is not None:
        truth = torch.zeros_like(samples)
        n = min(length, ground_truth.shape[0])
        truth[:n] = ground_truth[:n].to(samples)
        columns.append(truth)
    return clip_grid(columns)


class SampleVideoLogger(Callback):
    """Every ``every_n_epochs`` validation epochs, log the (conditioning | sample | ground truth) grids of the first
    ``num_videos`` validation clips to W&B and to ``<run dir>/videos``. The samples are those ``validation_step``
    drew (EMA weights, the module's task, a fixed seed), so logging adds no sampling."""

    def __init__(
        self, every_n_epochs: int = 1, num_videos: int = 4, fps: int = 4, scale: int = 4, suffix: str = ".mp4"
    ):
        super().__init__()
        self.every_n_epochs, self.num_videos = every_n_epochs, num_videos
        self.fps, self.scale, self.suffix = fps, scale, suffix
        self._clips: list[Tensor] = []

    def _active(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or not self._active(trainer) or not isinstance(outputs, dict):
            return
        samples, mask = outputs["samples"], outputs["mask"]
        n = min(self.num_videos, samples.shape[0])
        self._clips = [comparison_clip(samples[i], mask.observed[i], batch["video"][i]).cpu() for i in range(n)]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._clips and self._active(trainer):
            self._log(trainer)
        self._clips = []

    @rank_zero_only
    def _log(self, trainer: pl.Trainer) -> None:
        paths = []
        for i, clip in enumerate(self._clips):
            name = f"epoch{trainer.current_epoch:04d}_step{trainer.global_step:07d}_{i}{self.suffix}"
            paths.append(str(write_video(run_dir(trainer) / "videos" / name, clip, self.fps, self.scale)))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_video(
                    "val/samples", videos=paths, step=trainer.global_step, format=[self.suffix[1:]] * len(paths)
                )


class VideoPredictionWriter(BasePredictionWriter):
    """Writes every sampled video of ``predict`` as ``sample_<index>`` and ``grid_<index>`` files."""

    def __init__(self, output_dir: str | None = None, fps: int = 4, scale: int = 4, suffix: str = ".mp4"):
        super().__init__(write_interval="batch")
        self.output_dir, self.fps, self.scale, self.suffix = output_dir, fps, scale, suffix
        self.written: list[Path] = []

    def directory(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir) if self.output_dir else run_dir(trainer) / "predictions"

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Tensor],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        samples, observed, video = prediction["samples"], prediction["observed"], prediction["video"]
        indices = prediction.get("index")
        for i in range(samples.shape[0]):
            key = int(indices[i]) if indices is not None else batch_idx * samples.shape[0] + i
            out = self.directory(trainer)
            self.written.append(write_video(out / f"sample_{key:05d}{self.suffix}", samples[i], self.fps, self.scale))
            grid = comparison_clip(samples[i], observed[i], video[i])
            self.written.append(write_video(out / f"grid_{key:05d}{self.suffix}", grid, self.fps, self.scale))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        on = " (rank 0; every rank writes its own clips)" if trainer.world_size > 1 else ""
        rank_zero_info(f"Wrote {len(self.written)} video files{on} to {self.directory(trainer).resolve()}")
