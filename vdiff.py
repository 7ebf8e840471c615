"""The command line: LightningCLI with fit, validate, test and predict.

    vdiff fit --config experiments/ramvid_shapes.yaml
    vdiff test --config experiments/ramvid_shapes.yaml --ckpt_path last
    vdiff fit --print_config --config experiments/ramvid_shapes.yaml

Model and data are chosen in the YAML by ``class_path`` / ``init_args``; any field can be overridden on the command
line (``--model.init_args.sampling_steps 100``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
from jsonargparse import Namespace
from jsonargparse.typing import import_object
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.callbacks import ModelCheckpoint


def _is_subclass(component: object, base: type) -> bool:
    return isinstance(component, Namespace) and issubclass(import_object(component.class_path), base)


class VideoDiffusionCLI(LightningCLI):
    """LightningCLI that keeps a run's files in one folder: ``trainer.default_root_dir``.

    Checkpoint callbacks without a ``dirpath`` write to ``<default_root_dir>/checkpoints`` and loggers without a
    ``save_dir`` (or the default ".") write to ``<default_root_dir>``, so ``--ckpt_path last`` finds the run's
    checkpoint from a new process and one override moves the whole run. W&B runs as the logger config says: the
    configs log offline until ``--trainer.logger.init_args.offline false`` (after ``wandb login``).
    """

    def before_instantiate_classes(self) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        root = Path(trainer.default_root_dir or "runs/default")
        callbacks = trainer.callbacks if isinstance(trainer.callbacks, list) else [trainer.callbacks]
        for callback in callbacks:
            if _is_subclass(callback, ModelCheckpoint) and not callback.init_args.get("dirpath"):
                callback.init_args.dirpath = str(root / "checkpoints")
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:
            if isinstance(logger, Namespace) and logger.init_args.get("save_dir", "") in (None, "."):
                logger.init_args.save_dir = str(root)


def run(args: list[str] | None = None) -> VideoDiffusionCLI:
    """Parse ``args`` (default: sys.argv), build model, data and trainer, and run the subcommand."""
    return VideoDiffusionCLI(
        pl.LightningModule,  # every method, and helpers such as the CARLA position regressor
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        # Each method takes its optimiser and scheduler as init arguments (model.init_args.optimizer / lr_scheduler),
        # applied to the trained network only; LightningCLI's top-level --optimizer would bypass that.
        auto_configure_optimizers=False,
        args=args,
    )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
