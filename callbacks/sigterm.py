"""SIGTERM (a scheduler's pre-emption, `kill`, `timeout`) stops a run cleanly on every process, even under DDP.

Lightning 2.6 handles SIGTERM with a ``dist.broadcast`` inside the signal handler, i.e. a collective call at whatever
point each process happens to be when the signal arrives; under DDP the ranks then wait in different collectives and
the run hangs (reproduced with 2 gloo processes; Lightning-AI/pytorch-lightning#20806). This callback replaces that
handler while a subcommand runs:
- during ``fit`` the handler only sets a flag; after every trained batch all ranks sum the flag through the strategy
  (the same point on every rank) and, if any rank was signalled, all raise Lightning's ``SIGTERMException`` together.
  The step is complete, ``ExactResume`` has recorded it, and ``ResumableCheckpoint`` (``save_on_exception``) saves
  ``last.ckpt`` on every rank's way out; the CLI then exits with status 143 (128 + SIGTERM).
- during ``validate`` / ``test`` / ``predict`` there is nothing to save: the handler passes the signal on to the
  processes vdiff's own DDP launch started and stops at once.
A stop requested during the validation inside ``fit`` takes effect after the next training step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException


class StopOnSigterm(Callback):
    def __init__(self) -> None:
        self.requested = False
        self._trainer: pl.Trainer | None = None

    def _install(self, trainer: pl.Trainer) -> None:
        # Lightning registers its handler after on_fit_start, before the hooks below, and restores the handlers it
        # found at teardown.
        if threading.current_thread() is threading.main_thread():
            self._trainer = trainer
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        trainer = self._trainer
        if trainer is not None and trainer.state.fn != TrainerFn.FITTING:
            launcher = trainer.strategy.launcher
            if launcher is not None:
                launcher.kill(signum)
            rank_zero_info(f"vdiff {trainer.state.fn.value}: stopped by SIGTERM")
            raise SIGTERMException()

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._install(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        signalled = torch.tensor(1.0 if self.requested else 0.0, device=pl_module.device)
        if trainer.strategy.reduce(signalled, reduce_op="sum").item() > 0:
            rank_zero_info(f"vdiff fit: stopped by SIGTERM at global step {trainer.global_step}")
            raise SIGTERMException()
