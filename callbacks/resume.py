"""Exact resume: a run continued from a checkpoint draws the same batches and the same random numbers as the run that
was never stopped, so its losses match step by step (on CPU; GPU kernels may not be bitwise deterministic).

Lightning's checkpoint already holds the weights, the EMA (a submodule), the optimizer and the loop counters. This
callback adds the rest:
- the global RNG states of torch (CPU and CUDA), numpy and Python, of every DDP rank (gathered into rank 0's
  checkpoint, handed back by rank), restored when training starts; a fresh run re-seeds every rank but 0 from its
  rank, so ranks draw different diffusion times, noise and masks (``seed_everything`` gives all the same seed);
- the training loader's position: after each trained batch it moves ``ResumableLoader.position``, which Lightning
  saves with the loop state and gives back to the loader before the resumed run's first batch
  (``datamodules/loaders.py``).
Validation during ``fit`` runs with the RNG states isolated (as Lightning's sanity check does), so how often a run
validates never changes its training, and a resume that skips a validation the first run did still matches.
A checkpoint written because of an exception (SIGTERM, Ctrl-C, a crash) gets the RNG states of the last trained
batch, not those of a step that was cut off halfway.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.seed import isolate_rng
from torch.utils.data import DataLoader

from video_diffusion_lab.datamodules.loaders import ResumableLoader


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
        resumable = all(isinstance(loader, ResumableLoader) for loader in training_loaders(trainer))
        if not resumable:
            rank_zero_warn(
                "The training DataLoader is not a datamodules.loaders.ResumableLoader: a run resumed mid-epoch will "
                "not continue with the batches the interrupted run would have trained on."
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for loader in training_loaders(trainer):
            if isinstance(loader, ResumableLoader):
                loader.position = {"epoch": trainer.current_epoch, "batches": 0}

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for loader in training_loaders(trainer):
            if isinstance(loader, ResumableLoader):
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
