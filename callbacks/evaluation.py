"""Periodic evaluation during ``fit``: the validation samples scored with the test protocol's metrics."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch import Tensor

from video_diffusion_lab.metrics.protocol import EvaluationProtocol, VideoEvaluation
from video_diffusion_lab.metrics.report import append_jsonl, run_dir


class PeriodicEvaluation(pl.Callback):
    """Every ``every_n_epochs`` validation epochs, score the validation samples (EMA weights, fixed seed, the
    module's task) with PSNR/SSIM, the copy-last-frame baseline and FVD (``fvd``: see ``EvaluationProtocol``), log
    them to every logger and append them to ``<run dir>/metrics_val.jsonl``.

    It reuses what ``validation_step`` sampled, so it adds no sampling. Metric states are reduced across DDP ranks
    (every rank computes); only rank 0 writes. Non-finite numbers are written as null (``metrics.report``).
    """

    def __init__(self, every_n_epochs: int = 1, fvd: str = "auto", fvd_weights_path: str | None = None):
        super().__init__()
        self.every_n_epochs = every_n_epochs
        self.protocol = EvaluationProtocol(num_samples=1, fvd=fvd, fvd_weights_path=fvd_weights_path)
        self.evaluation: VideoEvaluation | None = None

    def _active(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._active(trainer) and self.evaluation is None:
            self.evaluation = VideoEvaluation(self.protocol, pl_module.video_length).to(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.evaluation is None or not self._active(trainer) or not isinstance(outputs, dict):
            return
        samples: Tensor = outputs["samples"]
        self.evaluation.update(samples[None], batch["video"], outputs["mask"])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.evaluation is None or not self._active(trainer):
            return
        results = self.evaluation.compute()
        self.evaluation.reset()
        scalars = {f"val_eval/{k}": v for k, v in results["model"].items()}
        scalars.update({f"val_eval/copy_last_frame/{k}": v for k, v in results["copy_last_frame"].items()})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=trainer.global_step)
            record = {"epoch": trainer.current_epoch, "step": trainer.global_step, **results}
            append_jsonl(run_dir(trainer) / "metrics_val.jsonl", record)
