"""The command line: LightningCLI with fit, validate, test and predict.

    vdiff fit --config experiments/ramvid_shapes.yaml
    vdiff test --config experiments/ramvid_shapes.yaml --ckpt_path last
    vdiff fit --print_config --config experiments/ramvid_shapes.yaml

Model and data are chosen in the YAML by ``class_path`` / ``init_args``; any field can be overridden on the command
line (``--model.init_args.sampling_steps 100``).

The checkpoint you name is the model you run: the configured model (with every override) is built and the
checkpoint's weights are loaded into it, after a check that the checkpoint holds the same method with weights of the
same shapes. LightningCLI's default is the opposite - an explicit ``--ckpt_path`` replaces the configured model by
the checkpoint's saved hyper-parameters and drops command-line overrides silently - so that step is switched off.
``validate``, ``test`` and ``predict`` need a checkpoint (``--ckpt_path FILE`` or ``last``), or ``--untrained`` to
run the initial weights on purpose. Every run gets the callbacks that make it safe to stop and resume
(``NonFiniteLossGuard``, ``ExactResume``, ``StopOnSigterm``) and keeps its resolved config as
``<run dir>/config_<subcommand>.yaml``.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Union

import pytorch_lightning as pl
from jsonargparse import ActionYesNo, Namespace
from jsonargparse.typing import import_object
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException

# Imported for their classes: LightningCLI resolves a short ``class_path: RaMViD`` among the subclasses already
# imported, so every method, data module and callback is imported before a config is parsed.
from video_diffusion_lab import datamodules, lightning_modules  # noqa: F401
from video_diffusion_lab.callbacks import ExactResume, NonFiniteLossGuard, RunConfigSaver, StopOnSigterm
from video_diffusion_lab.callbacks.checkpointing import check_checkpoint_matches, find_last_checkpoint

EVALUATION_SUBCOMMANDS = ("validate", "test", "predict")
EXIT_SIGTERM = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
# Before 0.2 the packages were installed at the top level, so run folders of that time name `lightning_modules.RaMViD`.
LEGACY_CLASS_PATH = re.compile(r"(class_path:\s*)((?:lightning_modules|datamodules|callbacks)\.)")


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


def _is_subclass(component: object, base: type) -> bool:
    return isinstance(component, Namespace) and issubclass(import_object(component.class_path), base)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def count_batches_as_int(parser: LightningArgumentParser) -> None:
    """Make ``limit_val_batches: 1`` mean one batch, as Lightning documents (int = batches, float = fraction).

    Python's typing caches ``Optional[Union[int, float]]`` as the equal ``Union[float, int, None]`` that another
    module built first, and jsonargparse tries union members in order, so a YAML ``1`` became ``1.0`` (100%). Putting
    int first in every such trainer option restores the distinction: ``1`` is one batch, ``1.0`` all of them."""
    for action in parser._actions:
        typehint = getattr(action, "_typehint", None)
        members = getattr(typehint, "__args__", ())
        float_first = int in members and float in members and members.index(float) < members.index(int)
        if action.dest.startswith("trainer.") and float_first:
            ordered = (int, *[member for member in members if member is not int])
            action._typehint = Union[ordered]  # noqa: UP007 - built from a tuple; a new one, not the cached float-first union


class VideoDiffusionCLI(LightningCLI):
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
        if args is None or isinstance(args, list):
            args = translate_legacy_configs(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Switched off: LightningCLI would replace the configured model by the checkpoint's hyper-parameters.
        ``after_instantiate_classes`` checks instead that the checkpoint fits the configured model."""

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

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if not self.subcommand:
            return
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            model_config = self.config[self.subcommand].model
            class_path = model_config.class_path if isinstance(model_config, Namespace) else type(self.model).__name__
            changes = check_checkpoint_matches(Path(ckpt_path), self.model, class_path)
            if changes:
                rank_zero_info(
                    f"Checkpoint {ckpt_path}: its weights run with these settings changed by the configuration "
                    f"(checkpoint -> now): {'; '.join(changes)}"
                )

    # ------------------------------------------------------------------------------------------------------- run
    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException as stop:
            # SIGTERMException is a SystemExit(None): exit status 0, as if the run had finished. Scripts, make and
            # schedulers must see that it did not (ResumableCheckpoint saved where it stopped).
            where = f" at global step {self.trainer.global_step}" if subcommand == "fit" else ""
            rank_zero_info(f"vdiff {subcommand}: stopped by SIGTERM{where}")
            raise SystemExit(EXIT_SIGTERM) from stop


def run(args: list[str] | None = None, subcommand: bool = True) -> VideoDiffusionCLI:
    """Parse ``args`` (default: sys.argv), build model, data and trainer, and run the subcommand (with
    ``subcommand=False``: ``args`` name none, and only the objects are built)."""
    return VideoDiffusionCLI(
        pl.LightningModule,  # every method, and helpers such as the CARLA position regressor
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True},
        # Each method takes its optimiser and scheduler as init arguments (model.init_args.optimizer / lr_scheduler),
        # applied to the trained network only; LightningCLI's top-level --optimizer would bypass that.
        auto_configure_optimizers=False,
        # On in every run, whatever the config: they cost two flags summed over ranks per step and make runs safe to
        # stop and resume. StopOnSigterm comes after ExactResume: a stop after a batch finds that batch recorded.
        trainer_defaults={"callbacks": [NonFiniteLossGuard(), ExactResume(), StopOnSigterm()]},
        args=args,
        run=subcommand,
    )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
