"""The private Lightning and jsonargparse API that ``video_diffusion_lab/lightning_private.py`` uses is still there
as it is used: a release that renames or changes one fails here, not silently in a run."""

from __future__ import annotations

import inspect

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import WandbLogger

from video_diffusion_lab import cli as vdiff
from video_diffusion_lab import lightning_private


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_lightning_cli_parses_the_checkpoint_hyperparameters_in_the_method_switched_off() -> None:
    assert parameters(LightningCLI._parse_ckpt_path) == ["self"]
    init = inspect.getsource(LightningCLI.__init__)
    order = [
        init.index(call)
        for call in ("self.parse_arguments(", "self._parse_ckpt_path()", "self.before_instantiate_classes()")
    ]
    assert order == sorted(order), "LightningCLI no longer parses the checkpoint between these two steps"
    switched_off = lightning_private.LightningCLIKeepingTheConfiguredModel._parse_ckpt_path
    assert vdiff.VideoDiffusionCLI._parse_ckpt_path is switched_off


def test_trainer_options_keep_their_type_where_count_batches_as_int_reorders_it() -> None:
    parser = LightningArgumentParser()
    parser.add_lightning_class_args(pl.Trainer, "trainer")
    actions = {action.dest: action for action in parser._actions}
    assert hasattr(actions["trainer.limit_val_batches"], "_typehint")
    lightning_private.count_batches_as_int(parser)
    assert actions["trainer.limit_val_batches"]._typehint.__args__[0] is int
    assert parser.parse_args(["--trainer.limit_val_batches", "1"]).trainer.limit_val_batches == 1
    assert isinstance(parser.parse_args(["--trainer.limit_val_batches", "1"]).trainer.limit_val_batches, int)


def test_model_checkpoint_saves_through_the_methods_its_hooks_call() -> None:
    assert parameters(ModelCheckpoint._monitor_candidates) == ["self", "trainer"]
    assert parameters(ModelCheckpoint._save_topk_checkpoint) == ["self", "trainer", "monitor_candidates"]
    assert parameters(ModelCheckpoint._save_last_checkpoint) == ["self", "trainer", "monitor_candidates"]
    assert ModelCheckpoint()._last_global_step_saved == 0


def test_wandb_logger_keeps_its_init_arguments_with_an_unset_anonymous() -> None:
    logger = WandbLogger(offline=True)
    assert logger._wandb_init["anonymous"] is None
    lightning_private.drop_unset_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init
    configured = WandbLogger(offline=True, anonymous=True)
    lightning_private.drop_unset_wandb_anonymous(configured)
    assert configured._wandb_init["anonymous"] == "allow"
