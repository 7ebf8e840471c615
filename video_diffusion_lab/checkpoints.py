"""Checkpoint files: finding, reading and writing them, and checking that one holds the model being run.

The CLI (``--ckpt_path``), the callbacks that write checkpoints and the non-finite guard's advice use these; this
module imports none of them. Every read goes through ``load_checkpoint`` (the safe loader; errors name the file) and
every write through ``atomic_save`` (a temporary file in the target folder, then a rename).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import fsspec
import torch
from jsonargparse.typing import import_object
from lightning_fabric.plugins import TorchCheckpointIO
from torch import nn

CHECKPOINT_SUFFIX = ".ckpt"


class CheckpointReadError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, damaged, or not a PyTorch checkpoint)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a lost mount); the file it was to replace is unchanged."""


class CheckpointMismatchError(ValueError):
    """The checkpoint named on the command line cannot be loaded into the configured model."""


# ------------------------------------------------------------------------------------------------------- reading
def read_error(path: str | Path, error: BaseException) -> CheckpointReadError:
    """The error for checkpoint ``path`` that the loader could not read, naming the file and what to do."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointReadError(
        f"{path}: cannot read this checkpoint ({type(error).__name__}: {reason}). The file is truncated or damaged "
        "(a write or copy that was cut off) or is not a PyTorch checkpoint: copy it again, or use another checkpoint "
        "of the run (the other files in its folder)."
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, read with the safe loader (``weights_only=True``) and memory-mapped, so only the
    tensors looked at are read from disk. ``FileNotFoundError`` or ``CheckpointReadError``, both naming the file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in the legacy (non-zip) format cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever the loader met, the message names the file
        raise read_error(path, error) from error


def find_last_checkpoint(folders: Iterable[str | Path]) -> Path | None:
    """The newest ``last*.ckpt`` (``last.ckpt``, ``last-v1.ckpt``, ...) in ``folders``, as Lightning picks it."""
    found = [path for folder in folders for path in Path(folder).glob(f"last*{CHECKPOINT_SUFFIX}") if path.is_file()]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def checkpoint_step(path: Path) -> int | None:
    """The global step checkpoint ``path`` was written at, or None if it cannot be read."""
    try:
        step = load_checkpoint(path).get("global_step")
    except (OSError, CheckpointReadError):
        return None
    return int(step) if step is not None else None


def newest_checkpoint_before(folders: Iterable[str | Path], step: int) -> tuple[Path, int] | None:
    """The checkpoint in ``folders`` with the highest global step below ``step``, and that step; among files of the
    same step ``last*.ckpt`` first, then the newest. Unreadable files are passed over. None if there is none."""
    candidates = []
    for folder in folders:
        for path in Path(folder).glob(f"*{CHECKPOINT_SUFFIX}"):
            saved = checkpoint_step(path) if path.is_file() else None
            if saved is not None and saved < step:
                candidates.append((saved, path.name.startswith("last"), path.stat().st_mtime, path))
    if not candidates:
        return None
    saved, _, _, path = max(candidates)
    return path, saved


def describe_checkpoint(path: Path | None) -> str:
    """'<path> (global step N)', for messages; says so when there is none or it cannot be read."""
    if path is None:
        return "no checkpoint has been written by this run yet"
    try:
        step = load_checkpoint(path).get("global_step")
    except (OSError, CheckpointReadError) as error:
        return f"{path} (unreadable: {type(error).__name__})"
    return f"{path} (global step {step})"


# ------------------------------------------------------------------------------------------------------- writing
def is_local(path: str | Path) -> bool:
    return fsspec.utils.get_protocol(str(path)) in ("file", "local")


def atomic_save(checkpoint: Any, path: str | Path) -> None:
    """``torch.save`` into a temporary file in ``path``'s folder, then a rename onto ``path``.

    A reader sees the previous file or the complete new one, never a partial one. A write that fails (a full disk)
    removes the temporary file and raises ``CheckpointWriteError`` naming ``path``; the previous file is unchanged.
    The temporary file is in the same folder because only a rename within one file system is atomic (Lightning's own
    save writes to the system temp folder and then moves the file, which on another disk is a copy that a full disk
    cuts off)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"  # hidden, not a *.ckpt
    try:
        with open(temporary, "xb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise CheckpointWriteError(
                f"{path}: the checkpoint could not be written ({error}); the previous file, if any, is unchanged"
            ) from error
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable; not every file system syncs a folder
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic local writes (``atomic_save``) and read errors that name the file.

    Passed to the Trainer as a plugin (the CLI adds it to every run), so every checkpoint a run writes - periodic,
    ``last``, on SIGTERM, ``trainer.save_checkpoint`` - and every restore goes through it. Remote paths (``s3://``)
    keep Lightning's save."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint: storage_options are not supported, got {storage_options!r}"
            )
        atomic_save(checkpoint, fsspec.core.strip_protocol(str(path)))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise  # Lightning's message names the file
        except Exception as error:  # noqa: BLE001 - whatever the loader met, the message names the file
            raise read_error(path, error) from error


# ------------------------------------------------------------------------------- the checkpoint against the model
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
    scheme, optimizer, ...). A file that cannot be read raises ``CheckpointReadError`` naming it."""
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
