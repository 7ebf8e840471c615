"""Checkpointing so that no step of a run is ever lost and a run that diverges keeps a good state to go back to."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn

from video_diffusion_lab.callbacks.non_finite import NonFiniteLossError
from video_diffusion_lab.checkpoints import CheckpointWriteError
from video_diffusion_lab.lightning_private import last_saved_step, save_checkpoints_now, save_last_checkpoint_now


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps a good state to go back to after a divergence, refreshes ``last.ckpt`` when
    training ends between two periodic saves, and saves on an exception only when that state is worth resuming from.

    - The newest checkpoint's weights are untested until the next step has run on them: a non-finite loss or
      gradient in that step came from them. So the two newest periodic checkpoints are kept (``save_top_k=2``,
      ranked by ``step``; pass ``save_top_k`` / ``monitor`` to choose otherwise) and a fresh run saves its starting
      point before the first step; ``NonFiniteLossGuard`` names the newest checkpoint before the step that diverged.
    - Lightning's own callback writes ``last`` at the end of training only if it never wrote one, so a run stopped by
      ``max_steps`` between two ``every_n_train_steps`` saves would resume from an older step.
    - With ``save_on_exception`` a run stopped by SIGTERM (``StopOnSigterm``) or Ctrl-C saves where it stopped, so
      ``--ckpt_path last`` continues from the newest state. Three exceptions never save: a non-finite loss (that
      state is the diverged one), a failed checkpoint write (a full disk fails again and would hide the first error)
      and any exception outside ``fit`` (Lightning would otherwise write a training checkpoint from ``test``).
    """

    def __init__(self, *, save_top_k: int = 2, monitor: str | None = "step", mode: str = "max", **kwargs: Any):
        super().__init__(save_top_k=save_top_k, monitor=monitor, mode=mode, **kwargs)
        self._fitting = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._fitting = stage == "fit"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._fitting:  # validate, test and predict save nothing, so the saved top-k and folder do not matter
            super().load_state_dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.global_step == 0 and not trainer.fast_dev_run:
            save_checkpoints_now(self, trainer)  # the starting point: the state to go back to if step 1 diverges

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and last_saved_step(self) != trainer.global_step:
            save_last_checkpoint_now(self, trainer)
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != TrainerFn.FITTING or isinstance(exception, (NonFiniteLossError, CheckpointWriteError)):
            return
        super().on_exception(trainer, pl_module, exception)
