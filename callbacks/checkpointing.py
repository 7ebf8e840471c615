"""Checkpointing so that no step of a run is ever lost, and the checks that a checkpoint is the model being run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from jsonargparse.typing import import_object
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from video_diffusion_lab.callbacks.non_finite import NonFiniteLossError


class ResumableCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also refreshes ``last.ckpt`` when training ends between two periodic saves, and saves
    on an exception only when that state is worth resuming from.

    Lightning's own callback writes ``last`` at the end of training only if it never wrote one, so a run stopped by
    ``max_steps`` between two ``every_n_train_steps`` saves would resume from an older step. With
    ``save_on_exception`` a run stopped by SIGTERM (``StopOnSigterm``) or Ctrl-C saves where it stopped, so
    ``--ckpt_path last`` continues from the newest state. Two exceptions never save: a non-finite loss (the last
    good checkpoint must stay the last one) and any exception outside ``fit`` (Lightning would otherwise write a
    training checkpoint from ``test``).
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != TrainerFn.FITTING or isinstance(exception, NonFiniteLossError):
            return
        super().on_exception(trainer, pl_module, exception)


# ------------------------------------------------------------------------------------------------ checkpoint files
def find_last_checkpoint(folders: Iterable[str | Path]) -> Path | None:
    """The newest ``last*.ckpt`` (``last.ckpt``, ``last-v1.ckpt``, ...) in ``folders``, as Lightning picks it."""
    found = [path for folder in folders for path in Path(folder).glob("last*.ckpt") if path.is_file()]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint read with the safe loader; memory-mapped, so only the tensors looked at are read from disk."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files in the legacy (non-zip) format cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def describe_checkpoint(path: Path | None) -> str:
    """'<path> (global step N)', for messages; says so when there is none."""
    if path is None:
        return "no checkpoint has been written by this run yet"
    try:
        step = load_checkpoint(path).get("global_step")
    except Exception as error:  # noqa: BLE001 - a message must not fail because the file is odd
        return f"{path} (unreadable: {type(error).__name__})"
    return f"{path} (global step {step})"


class CheckpointMismatchError(ValueError):
    """The checkpoint named on the command line cannot be loaded into the configured model."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, tuple):
        value = list(value)
    return {prefix: value}


def hyperparameter_changes(saved: Mapping[str, Any], configured: Mapping[str, Any]) -> list[str]:
    """``"field: saved -> configured"`` for every hyper-parameter (dotted for nested groups) that differs."""
    old, new = _flatten(dict(saved)), _flatten(dict(configured))
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key.startswith("_") or key.endswith("._class_path"):
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            changes.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return changes


def _same_class(class_path: str, cls: type) -> bool:
    try:
        return import_object(class_path) is cls
    except Exception:  # noqa: BLE001 - a class that no longer imports is compared by name
        return class_path.rsplit(".", 1)[-1] == cls.__qualname__


def check_checkpoint_matches(path: Path, model: nn.Module, configured_class_path: str) -> list[str]:
    """Raise ``CheckpointMismatchError`` unless the checkpoint at ``path`` holds weights for ``model``: the same
    method (the checkpoint's saved ``_class_path`` when LightningCLI wrote it, else its weight names) and the same
    tensor shapes. Returns the hyper-parameters the configuration changes relative to the checkpoint's (sampler,
    scheme, ...: they apply to the checkpoint's weights)."""
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"--ckpt_path {path}: not a Lightning checkpoint (it has no 'state_dict')")
    hparams = checkpoint.get("hyper_parameters") or {}
    full_name = f"{type(model).__module__}.{type(model).__qualname__}"
    configured = f"{configured_class_path} ({full_name})" if configured_class_path != full_name else full_name
    saved_class = hparams.get("_class_path")
    holds = f"holds a {saved_class} model" if saved_class else "was not written by the vdiff CLI (no class recorded)"
    if saved_class and not _same_class(saved_class, type(model)):
        raise CheckpointMismatchError(
            f"--ckpt_path {path} holds a {saved_class} model, but the configuration builds {configured}. Pass the "
            "config the checkpoint was trained with (its run folder keeps it as config_fit.yaml) or a checkpoint of "
            "the configured method."
        )
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    shapes = [
        f"{key}: checkpoint {tuple(state[key].shape)}, configured {tuple(expected[key].shape)}"
        for key in sorted(expected.keys() & state.keys())
        if isinstance(state[key], torch.Tensor) and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or shapes:
        problems = []
        if shapes:
            problems.append(f"{len(shapes)} weight(s) of another shape, e.g. " + "; ".join(shapes[:3]))
        if missing:
            problems.append(f"{len(missing)} weight(s) the checkpoint lacks, e.g. " + ", ".join(missing[:3]))
        if unexpected:
            problems.append(f"{len(unexpected)} weight(s) the model does not have, e.g. " + ", ".join(unexpected[:3]))
        changes = hyperparameter_changes(hparams, getattr(model, "hparams", {}))
        hint = f" Settings that differ (checkpoint -> configured): {'; '.join(changes[:8])}." if changes else ""
        raise CheckpointMismatchError(
            f"--ckpt_path {path} {holds} whose weights do not fit the configured {configured}: "
            f"{'; '.join(problems)}.{hint}"
        )
    return hyperparameter_changes(hparams, getattr(model, "hparams", {})) if saved_class else []
