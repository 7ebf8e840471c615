"""The resolved configuration of each subcommand, kept in the run folder."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.trainer.states import TrainerFn

from video_diffusion_lab.metrics.report import run_dir


class RunConfigSaver(SaveConfigCallback):
    """Writes ``<run dir>/config_<subcommand>.yaml`` (``config_fit.yaml``, ``config_test.yaml``, ...) once the
    subcommand has started: after setup, the configuration checks and the checkpoint restore succeeded, so a failed
    start never replaces the file of the last run that did start. Each subcommand keeps its own file; a later run of
    the same subcommand (a resumed fit) replaces it. Only rank 0 writes, and nothing here is a collective call
    (Lightning's own callback asks ``trainer.log_dir``, a broadcast)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pass  # too early: setup hooks and the checkpoint restore may still fail

    def _save(self, trainer: pl.Trainer) -> None:
        if self.already_saved or not trainer.is_global_zero:
            return
        path = run_dir(trainer) / f"config_{trainer.state.fn.value}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile)
        self.already_saved = True
        # Lightning merges the module's and the data module's hyper-parameters into one flat dict for the loggers
        # and refuses keys with two values (FDM's num_frames is frames per pass, the data's is the video length), so
        # data modules keep theirs out of that merge and they are logged here, under "data".
        data_hparams = getattr(trainer.datamodule, "hparams", None)
        if data_hparams:
            for logger in trainer.loggers:
                logger.log_hyperparams({"data": dict(data_hparams)})

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._save(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)
