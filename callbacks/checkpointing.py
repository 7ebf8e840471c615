"""Checkpointing so that no step of a run is ever lost."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also refreshes ``last.ckpt`` when training ends between two periodic saves.

    Lightning's own callback writes ``last`` at the end of training only if it never wrote one, so a run stopped by
    ``max_steps`` between two ``every_n_train_steps`` saves would resume from an older step. Combined with
    ``save_on_exception`` (an interrupted run saves where it stopped), ``--ckpt_path last`` always continues from the
    newest state.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)
