"""Stop training at the first non-finite loss or gradient, before it reaches the weights."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite; no step with it was applied."""


class NonFiniteLossGuard(Callback):
    """Raises ``NonFiniteLossError`` when the training loss (before backward) or the gradients (before the optimizer
    step) are not finite, so a NaN never reaches the weights, the EMA or a checkpoint.

    The loss is checked on every DDP rank and the verdict summed over ranks through the strategy, so all ranks stop
    together instead of the healthy ones waiting forever in the next gradient all-reduce. Gradients are identical on
    all ranks after that all-reduce, so every rank reaches the same verdict on its own. With a mixed-precision grad
    scaler, infinite gradients are the scaler's normal signal to skip a step and lower its scale, so only the loss
    is checked then. ``ResumableCheckpoint`` does not save on this error: the last checkpoint stays the last good one.
    """

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        loss = loss.detach()
        bad_here = torch.tensor(0.0 if bool(torch.isfinite(loss).all()) else 1.0, device=loss.device)
        bad_ranks = int(trainer.strategy.reduce(bad_here, reduce_op="sum").item())
        if bad_ranks:
            value = loss.float().mean().item()
            where = f"{bad_ranks} of {trainer.world_size} processes" if trainer.world_size > 1 else "the loss"
            raise NonFiniteLossError(self.message(trainer, f"training loss is not finite ({where}; {value} here)"))

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads)
            if not bool(torch.isfinite(norm)):
                raise NonFiniteLossError(self.message(trainer, f"gradient norm is not finite ({norm.item()})"))

    @staticmethod
    def message(trainer: pl.Trainer, what: str) -> str:
        from video_diffusion_lab.callbacks.checkpointing import describe_checkpoint, find_last_checkpoint

        folders = [c.dirpath for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
        last = describe_checkpoint(find_last_checkpoint(folders))
        batch = trainer.fit_loop.epoch_loop.batch_idx
        return (
            f"Training stopped: the {what} in the step after global step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}, batch {batch}). That step was not applied; the last checkpoint is intact: "
            f"{last}. Lower the learning rate or clip gradients (trainer.gradient_clip_val), then resume with "
            "--ckpt_path last."
        )
