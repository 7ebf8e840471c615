"""The command line: LightningCLI with fit, validate, test and predict.

    vdiff fit --config experiments/ramvid_shapes.yaml
    vdiff test --config experiments/ramvid_shapes.yaml --ckpt_path last
    vdiff fit --print_config --config experiments/ramvid_shapes.yaml

Model and data are chosen in the YAML by ``class_path`` / ``init_args``; any field can be overridden on the command
line (``--model.init_args.sampling_steps 100``).

The checkpoint you name is the model you run: the configured model (with every override) is built and the
checkpoint's weights are loaded into it, after a check that the checkpoint holds the same method with weights of the
same shapes. LightningCLI's default is the opposite - an explicit ``--ckpt_path`` replaces the configured model by
the checkpoint's saved hyper-parameters and drops command-line overrides silently - so that step is switched off
(``lightning_private.py``). A resumed ``fit`` also trains with the configured optimizer and scheduler settings
(``lr``, ``weight_decay``, ``gamma``, ...), not the checkpoint's: see ``ConfiguredOptimizerOnResume``.
``validate``, ``test`` and ``predict`` need a checkpoint (``--ckpt_path FILE`` or ``last``), or ``--untrained`` to
run the initial weights on purpose. Every run gets the callbacks that make it safe to stop and resume
(``NonFiniteLossGuard``, ``ExactResume``, ``ConfiguredOptimizerOnResume``, ``StopOnSigterm``), writes its
checkpoints atomically (``AtomicCheckpointIO``) and keeps its resolved config as
``<run dir>/config_<subcommand>.yaml``. ``fit`` ends by printing the run folder and its checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from jsonargparse import ActionYesNo, Namespace
from jsonargparse.typing import import_object
from lightning_fabric.plugins import CheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

# Imported for their classes: LightningCLI resolves a short ``class_path: RaMViD`` among the subclasses already
# imported, so every method, data module and callback is imported before a config is parsed.
from video_diffusion_lab import datamodules, lightning_modules  # noqa: F401
from video_diffusion_lab.callbacks import ExactResume, NonFiniteLossGuard, RunConfigSaver, StopOnSigterm, TestReport
from video_diffusion_lab.callbacks.resume import ConfiguredOptimizerOnResume
from video_diffusion_lab.checkpoints import (
    AtomicCheckpointIO,
    check_checkpoint_matches,
    describe_checkpoint,
    find_last_checkpoint,
)
from video_diffusion_lab.lightning_private import (
    LightningCLIKeepingTheConfiguredModel,
    count_batches_as_int,
    drop_unset_wandb_anonymous,
)
from video_diffusion_lab.metrics.report import run_dir

EVALUATION_SUBCOMMANDS = ("validate", "test", "predict")
EXIT_SIGTERM = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
# Before 0.2 the packages were installed at the top level, so run folders of that time name `lightning_modules.RaMViD`.
LEGACY_CLASS_PATH = re.compile(r"(class_path:\s*)((?:lightning_modules|datamodules|callbacks)\.)")
# Hyper-parameters a checkpoint's weights do not depend on: on a resumed fit ConfiguredOptimizerOnResume applies
# and reports them; validate, test and predict do not use them.
OPTIMIZATION_FIELDS = ("optimizer.", "lr_scheduler.")


def translate_legacy_config(path: str) -> str | None:
    """The YAML of config file ``path`` with pre-0.2 class paths moved into the namespace, or None if it has none."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None  # not a readable file (a YAML string, or a missing file jsonargparse reports itself)
    translated, count = LEGACY_CLASS_PATH.subn(r"\1video_diffusion_lab.\2", text)
    if not count:
        return None
    rank_zero_info(f"{path}: written before 0.2; read with its {count} class path(s) moved into video_diffusion_lab")
    return translated


def translate_legacy_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config FILE`` written before 0.2 replaced by its translated YAML (``--config`` takes a
    path or the YAML itself)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = translate_legacy_config(out[i + 1]) or out[i + 1]
        elif arg.startswith("--config="):
            translated = translate_legacy_config(arg.split("=", 1)[1])
            out[i] = f"--config={translated}" if translated else arg
    return out


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_third_party_output() -> None:
    """Silence what other libraries print on every run that asks nothing of the user, each by its exact message:

    - Lightning's "💡 Tip: ... try installing litlogger" / "... cloud uploads" adverts (its rank-zero log);
    - torch 2.13's deprecation of ``isinstance(treespec, LeafSpec)``, raised by Lightning's own ``_pytree`` module
      on every batch transfer; only Lightning can change that code.
    Warnings that concern the run (a slow data loader, a checkpoint folder that is not empty on a fresh run) stay."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"pytorch_lightning\.utilities\._pytree",
    )


def _is_subclass(component: object, base: type) -> bool:
    return isinstance(component, Namespace) and issubclass(import_object(component.class_path), base)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class VideoDiffusionCLI(LightningCLIKeepingTheConfiguredModel):
    """LightningCLI that keeps a run's files in one folder: ``trainer.default_root_dir``.

    Checkpoint callbacks without a ``dirpath`` write to ``<default_root_dir>/checkpoints`` and loggers without a
    ``save_dir`` (or the default ".") write to ``<default_root_dir>``, so ``--ckpt_path last`` finds the run's
    checkpoint from a new process and one override moves the whole run. W&B runs as the logger config says: the
    configs log offline until ``--trainer.logger.init_args.offline false`` (after ``wandb login``).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--untrained",
            action=ActionYesNo(no_prefix=None),
            default=False,
            help="validate/test/predict: run the model's initial (random) weights without a checkpoint, on purpose",
        )
        count_batches_as_int(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
            return
        # Parsed here rather than by LightningCLI, which warns about both sys.argv and args being set whenever it is
        # given the translated list.
        self.config = parser.parse_args(translate_legacy_configs(sys.argv[1:] if args is None else list(args)))

    # ------------------------------------------------------------------------------------------------- the config
    def before_instantiate_classes(self) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        root = Path(trainer.default_root_dir or "runs/default")
        checkpoint_dirs = []
        for callback in _as_list(trainer.callbacks):
            if _is_subclass(callback, ModelCheckpoint):
                if not callback.init_args.get("dirpath"):
                    callback.init_args.dirpath = str(root / "checkpoints")
                checkpoint_dirs.append(Path(callback.init_args.dirpath))
        for logger in _as_list(trainer.logger):
            if isinstance(logger, Namespace) and logger.init_args.get("save_dir", "") in (None, "."):
                logger.init_args.save_dir = str(root)
        if self.subcommand:
            config.ckpt_path = self.resolve_checkpoint(config, checkpoint_dirs or [root / "checkpoints"])
            if self.subcommand == "fit" and config.ckpt_path:
                for folder in checkpoint_dirs:  # resuming into the run's own folder is the point, not a mistake
                    warnings.filterwarnings(
                        "ignore",
                        message=re.escape(f"Checkpoint directory {folder} exists and is not empty."),
                        category=UserWarning,
                    )

    def resolve_checkpoint(self, config: Namespace, checkpoint_dirs: list[Path]) -> str | None:
        """The checkpoint file the subcommand runs, or None; errors for a missing or contradictory choice."""
        ckpt_path, untrained, command = config.get("ckpt_path"), config.get("untrained", False), self.subcommand
        if untrained and command not in EVALUATION_SUBCOMMANDS:
            raise ValueError(
                f"--untrained: only for {'/'.join(EVALUATION_SUBCOMMANDS)}; `vdiff {command}` starts "
                "from the initial weights anyway unless --ckpt_path is given"
            )
        if untrained and ckpt_path is not None:
            raise ValueError(f"--untrained and --ckpt_path {ckpt_path} contradict each other: choose one")
        if ckpt_path is None:
            if command in EVALUATION_SUBCOMMANDS and not untrained:
                raise ValueError(
                    f"vdiff {command}: no checkpoint given. Name one with --ckpt_path FILE, or --ckpt_path last for "
                    f"the newest last*.ckpt in {', '.join(map(str, checkpoint_dirs))}; pass --untrained to run the "
                    "model's initial (random) weights on purpose."
                )
            return None
        if ckpt_path == "last":
            found = find_last_checkpoint(checkpoint_dirs)
            if found is None:
                raise FileNotFoundError(
                    f"--ckpt_path last: no last*.ckpt in {', '.join(map(str, checkpoint_dirs))} (the run folder is "
                    f"trainer.default_root_dir={config.trainer.default_root_dir!r}). Train there first, point "
                    "--trainer.default_root_dir at the run, or name a checkpoint file."
                )
            return str(found)
        if ckpt_path in ("best", "hpc") or "://" in str(ckpt_path):
            return ckpt_path  # Lightning resolves these itself
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such file")
        return str(ckpt_path)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The configured Trainer, with ``AtomicCheckpointIO`` unless the config names its own checkpoint I/O."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        plugins = _as_list(config.trainer.get("plugins"))
        if "plugins" not in kwargs and not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        for logger in self.trainer.loggers:
            drop_unset_wandb_anonymous(logger)
        if not self.subcommand:
            return
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            model_config = self.config[self.subcommand].model
            class_path = model_config.class_path if isinstance(model_config, Namespace) else type(self.model).__name__
            changes = check_checkpoint_matches(Path(ckpt_path), self.model, class_path)
            changes = [change for change in changes if not change.startswith(OPTIMIZATION_FIELDS)]
            if changes:
                rank_zero_info(
                    f"Checkpoint {ckpt_path}: its weights run with these settings changed by the configuration "
                    f"(checkpoint -> now): {'; '.join(changes)}"
                )

    # ------------------------------------------------------------------------------------------------------- run
    def after_fit(self) -> None:
        """Say where the run is: its folder and the checkpoint to continue or evaluate from (rank 0)."""
        trainer = self.trainer
        folders = [c.dirpath for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
        if not trainer.is_global_zero:
            return
        last = find_last_checkpoint(folders)
        saved = f"checkpoint {describe_checkpoint(last)}, --ckpt_path last" if last else "no checkpoint callback"
        rank_zero_info(f"vdiff fit: done at global step {trainer.global_step}. Run folder {run_dir(trainer)}; {saved}")


def finish_wandb_run(exit_code: int) -> None:
    """End the W&B run a subcommand started, so that the next run in this process (a test after a fit, a notebook)
    starts its own instead of reusing it with a warning; a process that ends would end it anyway."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def run(args: list[str] | None = None, subcommand: bool = True) -> VideoDiffusionCLI:
    """Parse ``args`` (default: sys.argv), build model, data and trainer, and run the subcommand (with
    ``subcommand=False``: ``args`` name none, and only the objects are built). A run stopped by SIGTERM exits with
    status 143, as a shell reports a process ended by it (``StopOnSigterm`` saved where it stopped)."""
    quiet_third_party_output()
    exit_code = 1
    try:
        cli = VideoDiffusionCLI(
            pl.LightningModule,  # every method, and helpers such as the CARLA position regressor
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True},
            # Each method takes its optimiser and scheduler as init arguments (model.init_args.optimizer /
            # lr_scheduler), applied to the trained network only; LightningCLI's top-level --optimizer would bypass
            # that.
            auto_configure_optimizers=False,
            # On in every run, whatever the config: the first four make runs safe to stop and resume (two flags summed
            # over ranks per step); StopOnSigterm comes after ExactResume, so a stop after a batch finds that batch
            # recorded. TestReport writes what `vdiff test` measured.
            trainer_defaults={
                "callbacks": [
                    NonFiniteLossGuard(),
                    ExactResume(),
                    ConfiguredOptimizerOnResume(),
                    StopOnSigterm(),
                    TestReport(),
                ]
            },
            args=args,
            run=subcommand,
        )
        exit_code = 0
        return cli
    except SIGTERMException as stop:
        # SIGTERMException is a SystemExit(None): exit status 0, as if the run had finished. Scripts, make and
        # schedulers must see that it did not.
        exit_code = EXIT_SIGTERM
        raise SystemExit(EXIT_SIGTERM) from stop
    finally:
        if subcommand:
            finish_wandb_run(exit_code)


def main() -> None:
    run()


if __name__ == "__main__":
    main()
