"""Every use of Lightning's and jsonargparse's private API in the project, in one place.

Each one is here because no documented extension point does the job; the reason is given with it.
``tests/test_lightning_private.py`` checks that each still exists as it is used here, so a release of Lightning or
jsonargparse that renames or changes one fails that test instead of silently changing what a run does.
"""

from __future__ import annotations

from typing import Any, Union

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import WandbLogger


class LightningCLIKeepingTheConfiguredModel(LightningCLI):
    """LightningCLI without its replacement of the configured model by a checkpoint's hyper-parameters.

    ``LightningCLI.__init__`` calls ``_parse_ckpt_path`` right after ``parse_arguments``: for an explicit
    ``--ckpt_path`` it parses the checkpoint's saved hyper-parameters over the configuration, so command-line overrides
    are dropped without a word. No argument or documented hook switches it off (as of Lightning 2.6)."""

    def _parse_ckpt_path(self) -> None:
        """Switched off: the subclass checks instead that the checkpoint fits the configured model."""


def count_batches_as_int(parser: LightningArgumentParser) -> None:
    """Make ``limit_val_batches: 1`` mean one batch, as Lightning documents (int = batches, float = fraction).

    Python's typing caches ``Optional[Union[int, float]]`` as the equal ``Union[float, int, None]`` that Fabric built
    first (``Fabric.clip_gradients``), and jsonargparse tries union members in order, so a YAML ``1`` became ``1.0``
    (100%). Putting int first in every such trainer option restores the distinction: ``1`` is one batch, ``1.0`` all
    of them. jsonargparse keeps the type of an option only in the private ``action._typehint``."""
    for action in parser._actions:
        typehint = getattr(action, "_typehint", None)
        members = getattr(typehint, "__args__", ())
        numeric = action.dest.startswith("trainer.") and int in members and float in members
        if numeric and members.index(float) < members.index(int):
            ordered = (int, *[member for member in members if member is not int])
            action._typehint = Union[ordered]  # noqa: UP007 - built from a tuple at run time, not the cached union


# ModelCheckpoint decides when to save inside its hooks; saving at another moment (before the first step, at the end
# of training between two periodic saves) has no public method, so these call the ones its hooks call.
def save_checkpoints_now(callback: ModelCheckpoint, trainer: pl.Trainer) -> None:
    """Save ``callback``'s checkpoints (top-k and ``last``) for the trainer's current state, as a periodic save."""
    candidates = callback._monitor_candidates(trainer)
    callback._save_topk_checkpoint(trainer, candidates)
    callback._save_last_checkpoint(trainer, candidates)


def save_last_checkpoint_now(callback: ModelCheckpoint, trainer: pl.Trainer) -> None:
    """Save ``callback``'s ``last`` checkpoint for the trainer's current state."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))


def last_saved_step(callback: ModelCheckpoint) -> int:
    """The global step of the newest checkpoint ``callback`` wrote (0 before its first)."""
    return callback._last_global_step_saved


def drop_unset_wandb_anonymous(logger: Any) -> None:
    """Stop wandb's "The anonymous setting has no effect" warning on every run.

    ``WandbLogger`` always passes ``anonymous`` to ``wandb.init`` (None when not set), and wandb >= 0.19 warns about
    any value it is given. The logger keeps those arguments in the private ``_wandb_init``; the key is dropped only
    when it is unset, so a configured ``anonymous`` still reaches wandb."""
    if isinstance(logger, WandbLogger) and logger._wandb_init.get("anonymous", "set") is None:
        del logger._wandb_init["anonymous"]
