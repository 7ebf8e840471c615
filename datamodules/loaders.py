"""How every data module batches its clips: one training loader that resumes exactly, one evaluation loader that
never pads or repeats a clip, on one process or many.

Training. ``ResumableSampler`` orders an epoch by a permutation drawn from (seed, epoch) alone - not from the global
RNG - and splits it between DDP ranks as ``DistributedSampler`` does. Every item is loaded with the global RNGs
seeded from (seed, epoch, index) (``SeededItems``), so random windows and crops are the same with any number of
workers and after a resume. ``ResumableLoader`` is a DataLoader that Lightning checkpoints: its ``state_dict`` is the
position in the epoch (``callbacks.ExactResume`` moves it after every trained batch, so it counts the batches the
model has trained on, not the ones that workers or Lightning's prefetch have already loaded), and Lightning hands it
back through ``load_state_dict`` before the first batch of a resumed run, which then continues with the next batch
of the same permutation.

Evaluation. ``UnrepeatedDistributedSampler`` (Lightning's) gives each rank every ``world_size``-th clip, without the
padding of ``DistributedSampler`` that would count clips twice; ranks may hold one clip more than others. The
sampler is already distributed, so Lightning keeps it instead of injecting its own.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.seed import isolate_rng
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def process_group() -> tuple[int, int]:
    """(world size, rank) of the running DDP group; (1, 0) outside one. Lightning requests loaders after it has
    set the group up, so the data modules ask here rather than taking the numbers as settings."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def shuffle_seed() -> int:
    """The run's seed (``seed_everything``; Lightning keeps it in PL_GLOBAL_SEED), 0 when none was set."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededItems(Dataset):
    """A training set read through ``(epoch, index)`` keys: the item is made with torch, numpy and Python's global
    RNGs seeded from (seed, epoch, index) and restored afterwards, so its randomness depends on nothing else (worker,
    loading order, what the main process drew before). A plain index reads the item as the data set gives it."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        epoch, index = key
        seed = item_seed(self.seed, epoch, index)
        with isolate_rng(include_cuda=False):
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """This rank's share of a permutation drawn from (seed, epoch), as ``(epoch, index)`` keys for ``SeededItems``.
    ``start`` items of the share are skipped by the next iteration only (the rest of a resumed epoch)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self):
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter([(self.epoch, index) for index in indices[start:]])


class TracksTrainedBatches:
    """A training loader whose checkpointed state is the batches trained on: ``position`` is {"epoch", "batches"},
    the batches of that epoch already trained on, moved by ``callbacks.ExactResume`` after every trained batch
    (Lightning fetches ahead, so what the loader has yielded is not what the model has trained on)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.position = {"epoch": 0, "batches": 0}


class ResumableLoader(TracksTrainedBatches, DataLoader):
    """The training DataLoader of the map-style data sets."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ResumableSampler):
            raise TypeError("ResumableLoader needs a ResumableSampler")

    def layout(self) -> dict[str, int]:
        """What a position means: the same numbers of batches cover the same clips only with the same layout."""
        return {
            "batch_size": int(self.batch_size),
            "num_replicas": self.sampler.num_replicas,
            "seed": self.sampler.seed,
            "dataset_size": len(self.dataset),
            "batches_per_epoch": len(self),
        }

    def state_dict(self) -> dict[str, int]:
        return {**self.position, **self.layout()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        saved = {k: int(state[k]) for k in self.layout() if k in state}
        if saved != self.layout():
            rank_zero_warn(
                f"Resuming with a different training loader layout (checkpoint {saved}, now {self.layout()}): the "
                "epoch continues after the same number of clips, but not with exactly the same batches."
            )
        if batches >= saved.get("batches_per_epoch", len(self)):
            epoch, batches = epoch + 1, 0  # saved after the epoch's last batch: the next one starts afresh
        clips_seen = batches * saved.get("batch_size", self.batch_size) * saved.get("num_replicas", 1)
        per_rank = clips_seen // self.sampler.num_replicas
        self.sampler.set_epoch(epoch)
        self.sampler.start = per_rank - per_rank % self.batch_size
        self.position = {"epoch": epoch, "batches": per_rank // self.batch_size}


def training_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False) -> ResumableLoader:
    world_size, rank = process_group()
    seed = shuffle_seed()
    return ResumableLoader(
        SeededItems(dataset, seed),
        batch_size=batch_size,
        sampler=ResumableSampler(dataset, world_size, rank, seed),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        drop_last=True,
        # Worker seeds come from this generator, not from the global RNG that training draws its noise from.
        generator=torch.Generator().manual_seed(seed),
    )


def evaluation_loader(dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    world_size, rank = process_group()
    if 0 < len(dataset) < world_size:
        raise ValueError(
            f"an evaluation split of {len(dataset)} clip(s) cannot be shared by {world_size} processes without "
            "repeating clips: use more clips (data.*_size) or fewer devices"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(shuffle_seed()),
    )


class ClipDataModule(pl.LightningDataModule):
    """The loaders every data module shares. Subclasses provide ``dataset(split)`` for "train", "val" and "test"
    (and ``predict_dataset()`` when predict uses other clips than test)."""

    pin_memory = False

    def __init__(self, batch_size: int, eval_batch_size: int | None, num_workers: int):
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def predict_dataset(self) -> Dataset:
        return self.dataset("test")

    def train_dataloader(self) -> ResumableLoader:
        return training_loader(self.dataset("train"), self.batch_size, self.num_workers, self.pin_memory)

    def _evaluation_loader(self, dataset: Dataset) -> DataLoader:
        return evaluation_loader(dataset, self.eval_batch_size, self.num_workers, self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.dataset("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.predict_dataset())
