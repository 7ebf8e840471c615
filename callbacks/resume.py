"""Exact resume: a run continued from a checkpoint draws the same batches and the same random numbers as the run that
was never stopped, so its losses match step by step (on CPU; GPU kernels may not be bitwise deterministic).

Lightning's checkpoint already holds the weights, the EMA (a submodule), the optimizer and the loop counters. This
callback adds the rest:
- the global RNG states of torch (CPU and CUDA), numpy and Python, of every DDP rank (gathered into rank 0's
  checkpoint, handed back by rank), restored when training starts; a fresh run re-seeds every rank but 0 from its
  rank, so ranks draw different diffusion times, noise and masks (``seed_everything`` gives all the same seed);
- the training loader's position: after each trained batch it moves ``TracksTrainedBatches.position``, which Lightning
  saves with the loop state and gives back to the loader before the resumed run's first batch
  (``datamodules/loaders.py``).
Validation during ``fit`` runs with the RNG states isolated (as Lightning's sanity check does), so how often a run
validates never changes its training, and a resume that skips a validation the first run did still matches.
A checkpoint written because of an exception (SIGTERM, Ctrl-C, a crash) gets the RNG states of the last trained
batch, not those of a step that was cut off halfway.

What a resume takes from the configuration instead of the checkpoint - the optimizer's and scheduler's settings -
is ``ConfiguredOptimizerOnResume`` below.
"""

from __future__ import annotations

import copy
import inspect
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.seed import isolate_rng
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader

from video_diffusion_lab.datamodules.loaders import TracksTrainedBatches


def rng_states() -> dict[str, Any]:
    """This process's global RNG states, in types the safe checkpoint loader reads (no numpy arrays)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)],
        "python": [version, list(python_state), gauss],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    version, python_state, gauss = states["python"]
    random.setstate((version, tuple(python_state), gauss))


def seed_rank(rank: int) -> None:
    """Re-seed torch, numpy and Python from this process's torch seed and its rank."""
    seed = int(np.random.SeedSequence([torch.initial_seed(), rank]).generate_state(1)[0])
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def training_loaders(trainer: pl.Trainer) -> list[DataLoader]:
    loaders = trainer.train_dataloader
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


class ExactResume(Callback):
    """Keeps RNG states and the training loader's position in checkpoints (added by the CLI to every run)."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._loaded: dict[str, Any] | None = None  # from a checkpoint, applied when training starts
        self._after_last_batch: dict[str, Any] | None = None  # this rank's states when the last batch was trained
        self._interrupted = False
        self._validation_rng: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    # ------------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        local = self._after_last_batch if self._interrupted and self._after_last_batch else rng_states()
        # Lightning builds the checkpoint on every rank (only rank 0 writes it), so a gather is safe here.
        if dist.is_available() and dist.is_initialized() and trainer.world_size > 1:
            states: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(states, local)
        else:
            states = [local]
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = state_dict or None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._interrupted = True  # checkpoint callbacks come after this one: they save the last clean states

    # -------------------------------------------------------------------------------------------------- training
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self._loaded and self._loaded.get("rng")) and trainer.global_rank > 0:
            # seed_everything gives every process the same seed: without this, every rank would draw the same
            # diffusion times, noise and masks for its clips. Rank 0 keeps the stream of a one-process run.
            seed_rank(trainer.global_rank)
        if self._loaded and self._loaded.get("rng"):
            states = self._loaded["rng"]
            if len(states) == trainer.world_size:
                set_rng_states(states[trainer.global_rank])
            else:
                rank_zero_warn(
                    f"The checkpoint holds the RNG states of {len(states)} process(es), this run has "
                    f"{trainer.world_size}: random draws restart from the seed, so the resumed run is not exact."
                )
        self._loaded = None
        self._after_last_batch = rng_states()
        resumable = all(isinstance(loader, TracksTrainedBatches) for loader in training_loaders(trainer))
        if not resumable:
            rank_zero_warn(
                "The training DataLoader does not track the batches trained on (datamodules.loaders."
                "TracksTrainedBatches): a run resumed mid-epoch will not continue with the batches the interrupted run "
                "would have trained on."
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for loader in training_loaders(trainer):
            if isinstance(loader, TracksTrainedBatches):
                loader.position = {"epoch": trainer.current_epoch, "batches": 0}

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for loader in training_loaders(trainer):
            if isinstance(loader, TracksTrainedBatches):
                loader.position = {"epoch": trainer.current_epoch, "batches": batch_idx + 1}
        self._after_last_batch = rng_states()

    # ------------------------------------------------------------------------------------------------ validation
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._validation_rng = isolate_rng()
            self._validation_rng.__enter__()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._validation_rng is not None:
            self._validation_rng.__exit__(None, None, None)
            self._validation_rng = None


# ----------------------------------------------------------------------------- optimizer settings on a resumed fit
def group_settings(group: dict[str, Any]) -> dict[str, Any]:
    """A param group's settings: everything in it but the parameters."""
    return {key: value for key, value in group.items() if key not in ("params", "param_names")}


def scheduler_settings(scheduler: Any) -> dict[str, Any]:
    """A scheduler's settings: its ``__init__`` arguments that it keeps as attributes (``gamma``, ``step_size``,
    ``T_max``, ...), which its state_dict holds and a restore brings back; not its position (``last_epoch``)."""
    progress = {"self", "optimizer", "last_epoch", "verbose"}
    names = inspect.signature(type(scheduler).__init__).parameters.keys() - progress
    return {name: copy.deepcopy(getattr(scheduler, name)) for name in sorted(names) if name in vars(scheduler)}


def same_setting(a: Any, b: Any) -> bool:
    """Equal settings, a list equal to a tuple of the same values (a checkpoint may hold either)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_setting(x, y) for x, y in zip(a, b, strict=True))
    return a == b


class ConfiguredOptimizerOnResume(Callback):
    """A resumed ``fit`` trains with the configured optimizer and scheduler settings, not the checkpoint's.

    Lightning restores the optimizer's state_dict, param groups included, so ``--ckpt_path last`` with a new
    ``optimizer.init_args.lr`` would train on at the checkpoint's lr; a scheduler's state_dict likewise brings back
    its saved settings and base learning rates. This callback notes the configured values once the optimizers exist
    (``on_fit_start``, before the restore) and, after the restore (``on_train_start``), puts back each one the
    checkpoint changed, printing every change it makes (rank 0):

    - every param-group setting: ``lr``, ``weight_decay``, ``betas``, ``eps``, ``momentum``, ...;
    - where a scheduler sets the lr (the group has ``initial_lr``), the base lr: ``initial_lr`` and the scheduler's
      ``base_lrs``, with the current lr scaled by the same factor, so the schedule goes on from where it was;
    - the scheduler's own settings, its ``__init__`` arguments (``gamma``, ``step_size``, ``T_max``, ...).

    What the optimizer has learned (Adam's moments) and the schedule's position (``last_epoch``) stay the
    checkpoint's. ``ReduceLROnPlateau`` lowers the lr itself, so there the lr stays the checkpoint's (with a
    warning when the configured one differs). An optimizer of another kind cannot take the checkpoint's state: its
    settings differ in name, and that stops the run with an error naming the checkpoint.
    """

    def __init__(self) -> None:
        self._groups: list[list[dict[str, Any]]] | None = None
        self._schedulers: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning calls on_fit_start after the optimizers are built and before their state is restored.
        self._groups = [[copy.deepcopy(group_settings(g)) for g in opt.param_groups] for opt in trainer.optimizers]
        self._schedulers = [scheduler_settings(config.scheduler) for config in trainer.lr_scheduler_configs]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        configured_groups, self._groups = self._groups, None
        if trainer.ckpt_path is None or configured_groups is None:
            return
        changes: list[str] = []
        for index, (optimizer, groups) in enumerate(zip(trainer.optimizers, configured_groups, strict=True)):
            name = f"optimizer {index}" if len(trainer.optimizers) > 1 else "optimizer"
            schedulers = [c.scheduler for c in trainer.lr_scheduler_configs if c.scheduler.optimizer is optimizer]
            for number, (group, configured) in enumerate(zip(optimizer.param_groups, groups, strict=True)):
                where = f"{name} group {number}" if len(groups) > 1 else name
                missing = sorted(optimizer.defaults.keys() - group.keys())
                if missing:
                    raise ValueError(
                        f"--ckpt_path {trainer.ckpt_path}: its optimizer state lacks the settings {missing} of the "
                        f"configured {type(optimizer).__name__}: it was written by another optimizer. Resume with the "
                        "optimizer the run was trained with."
                    )
                changes += self.apply_group(group, configured, schedulers, number, where)
        for config, configured in zip(trainer.lr_scheduler_configs, self._schedulers, strict=True):
            for key, value in configured.items():
                restored = getattr(config.scheduler, key)
                if not same_setting(restored, value):
                    setattr(config.scheduler, key, value)
                    changes.append(f"lr_scheduler {key}: {restored!r} -> {value!r}")
        if changes:
            rank_zero_info(
                f"Resumed from {trainer.ckpt_path} with the configured optimizer settings "
                f"(checkpoint -> now): {'; '.join(changes)}"
            )

    @staticmethod
    def apply_group(
        group: dict[str, Any], configured: dict[str, Any], schedulers: list[Any], number: int, where: str
    ) -> list[str]:
        """Put the configured settings back into restored param group ``group``; the changes made, described."""
        changes = []
        plateau = any(isinstance(s, ReduceLROnPlateau) for s in schedulers)
        for key, value in configured.items():
            restored = group.get(key)
            if key in group and same_setting(restored, value):
                continue
            scheduled = "initial_lr" in configured and "initial_lr" in group  # lr is the schedule's; its base too
            if key == "lr" and (scheduled or plateau):
                if plateau:
                    rank_zero_warn(
                        f"{where}: lr {value!r} is configured, but ReduceLROnPlateau sets the lr: the "
                        f"checkpoint's {restored!r} is kept"
                    )
                continue  # the schedule's current value; its base is initial_lr
            if key == "initial_lr" and key in group:
                group["lr"] = group["lr"] * (value / restored)
                for scheduler in schedulers:
                    scheduler.base_lrs[number] = value
                changes.append(f"{where} base lr: {restored!r} -> {value!r} (now {group['lr']!r})")
            else:
                changes.append(f"{where} {key}: {restored!r} -> {value!r}")
            group[key] = value
        return changes
