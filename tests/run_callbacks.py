"""Callbacks that tests add to CLI runs (also in DDP child processes): record what happened, stop a run on cue."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class RecordLosses(Callback):
    """Appends {"step", "rank", "loss"} per trained batch to ``path`` (one JSON line each), with the loss's exact
    float, so runs can be compared step by step."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        record = {"step": trainer.global_step, "rank": trainer.global_rank, "loss": float(loss.detach())}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class RecordRNG(Callback):
    """Writes ``<folder>/rng_rank<r>.pt``: this rank's torch RNG state when its first training batch starts (read,
    not drawn from, so training is unchanged)."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        path = self.folder / f"rng_rank{trainer.global_rank}.pt"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save(torch.get_rng_state(), path)


def read_losses(path: Path, rank: int = 0) -> dict[int, float]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["rank"] == rank}


class SignalAt(Callback):
    """Sends ``signal_name`` (e.g. "SIGKILL", "SIGTERM") to this process once ``global_step`` reaches ``step``:
    a kill at an exact step, not at a time. In DDP only rank ``rank`` signals itself (-1: every rank)."""

    def __init__(self, step: int, signal_name: str = "SIGKILL", rank: int = -1):
        self.step, self.signal, self.rank = step, getattr(signal, signal_name), rank

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step and self.rank in (-1, trainer.global_rank):
            os.kill(os.getpid(), self.signal)


class PoisonBatch(Callback):
    """Fills the training batch with NaN at ``step`` (on one rank, or all with rank=-1): a non-finite loss there."""

    def __init__(self, step: int, rank: int = -1):
        self.step, self.rank = step, rank

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step and self.rank in (-1, trainer.global_rank):
            batch["video"].fill_(float("nan"))


class RankMarker(Callback):
    """Writes ``<folder>/<stage>_rank<r>.done`` when a stage ends on a rank: proof that every rank finished."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def _mark(self, trainer: pl.Trainer, stage: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{stage}_rank{trainer.global_rank}.done").write_text(str(trainer.global_step))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "fit")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "test")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._mark(trainer, "validate")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark(trainer, "predict")


def checkpoint_tensors_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(bool(torch.isfinite(v).all()) for v in state.values() if torch.is_floating_point(v))
