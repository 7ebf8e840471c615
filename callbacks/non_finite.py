"""Stop training at the first non-finite loss or gradient, before it reaches the weights, and name the checkpoint
to resume from."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from video_diffusion_lab.checkpoints import newest_checkpoint_before


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite; no step with it was applied.
    ``resume_from`` is the checkpoint the message advises resuming from (None when the run kept none before)."""

    def __init__(self, message: str, resume_from: Path | None = None):
        super().__init__(message)
        self.resume_from = resume_from


class NonFiniteLossGuard(Callback):
    """Raises ``NonFiniteLossError`` when the training loss (before backward) or the gradients (before the optimizer
    step) are not finite, so a NaN never reaches the weights, the EMA or a checkpoint.

    The loss is checked on every DDP rank and the verdict summed over ranks through the strategy, so all ranks stop
    together instead of the healthy ones waiting forever in the next gradient all-reduce. Gradients are identical on
    all ranks after that all-reduce, so every rank reaches the same verdict on its own. With a mixed-precision grad
    scaler, infinite gradients are the scaler's normal signal to skip a step and lower its scale, so only the loss
    is checked then.

    The loss of the step after global step N is computed from the weights of step N: when it is not finite, those
    weights are the diverged ones (after a too-large update they are finite but huge, e.g. 1e10) and a checkpoint of
    step N would fail again on resume. The message therefore names the newest checkpoint of an earlier step
    (``ResumableCheckpoint`` keeps one) and advises resuming from it with a lower learning rate.
    """

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        loss = loss.detach()
        bad_here = torch.tensor(0.0 if bool(torch.isfinite(loss).all()) else 1.0, device=loss.device)
        bad_ranks = int(trainer.strategy.reduce(bad_here, reduce_op="sum").item())
        if bad_ranks:
            value = loss.float().mean().item()
            where = f"{bad_ranks} of {trainer.world_size} processes" if trainer.world_size > 1 else "the loss"
            raise self.error(trainer, f"training loss is not finite ({where}; {value} here)")

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads)
            if not bool(torch.isfinite(norm)):
                raise self.error(trainer, f"gradient norm is not finite ({norm.item()})")

    @staticmethod
    def error(trainer: pl.Trainer, what: str) -> NonFiniteLossError:
        step = trainer.global_step
        folders = [c.dirpath for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
        good = newest_checkpoint_before(folders, step)
        batch = trainer.fit_loop.epoch_loop.batch_idx
        message = (
            f"Training stopped: the {what} in the step after global step {step} (epoch {trainer.current_epoch}, "
            f"batch {batch}). That step was not applied; it was computed from the weights of global step {step}, so a "
            "checkpoint of that step would stop here again."
        )
        if good is None:
            return NonFiniteLossError(
                f"{message} No checkpoint of an earlier step is kept: lower the learning rate "
                "(model.init_args.optimizer.init_args.lr) or clip gradients (trainer.gradient_clip_val) and start the "
                "run again."
            )
        path, saved = good
        return NonFiniteLossError(
            f"{message} The newest checkpoint before it is {path} (global step {saved}): lower the learning rate "
            "(model.init_args.optimizer.init_args.lr) or clip gradients (trainer.gradient_clip_val) and resume from "
            f"it with --ckpt_path {path}.",
            resume_from=path,
        )
