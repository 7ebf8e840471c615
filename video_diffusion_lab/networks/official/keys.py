"""Mapping a released checkpoint's weights onto our network's names, with errors that name every misfit."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

Renames = Sequence[tuple[str, str]]  # (regex on the official key, replacement), applied in order


class OfficialCheckpointError(ValueError):
    """The official checkpoint does not fit the network rebuilt from its arguments (or cannot be read)."""


def rename(key: str, renames: Renames) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def expected_shapes(build: Callable[[], nn.Module]) -> dict[str, torch.Size]:
    """Our network's weight names and shapes, built on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        network = build()
    return {name: value.shape for name, value in network.state_dict().items()}


def map_weights(
    official: Mapping[str, Tensor], renames: Renames, expected: Mapping[str, torch.Size], source: str
) -> dict[str, Tensor]:
    """Rename every official weight; every one must land on one of ours with the same shape, and every one of ours
    must be filled. Anything else is an ``OfficialCheckpointError`` listing the weights concerned."""
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in official.items():
        ours = rename(key, renames)
        if ours in mapped:
            raise OfficialCheckpointError(
                f"{source}: official weights {origin[ours]!r} and {key!r} both map to {ours!r}"
            )
        mapped[ours], origin[ours] = value, key
    leftover = [f"{origin[k]} (as {k})" if origin[k] != k else k for k in mapped if k not in expected]
    missing = [k for k in expected if k not in mapped]
    wrong = [
        f"{origin[k]}: {tuple(mapped[k].shape)} in the checkpoint, {tuple(expected[k])} in ours"
        for k in mapped
        if k in expected and mapped[k].shape != expected[k]
    ]
    problems = []
    if leftover:
        problems.append(f"{len(leftover)} official weights have no place in the network: " + ", ".join(leftover))
    if missing:
        problems.append(
            f"{len(missing)} of the network's weights are missing from the checkpoint: " + ", ".join(missing)
        )
    if wrong:
        problems.append(f"{len(wrong)} weights differ in shape: " + "; ".join(wrong))
    if problems:
        raise OfficialCheckpointError(
            f"{source} does not fit the network rebuilt from its official arguments (check them): "
            + " | ".join(problems)
        )
    return {k: mapped[k].detach().clone().float() if mapped[k].is_floating_point() else mapped[k] for k in expected}


def load_checkpoint(path) -> object:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - UnpicklingError for foreign globals, RuntimeError / EOFError for broken files
        raise OfficialCheckpointError(
            f"{path}: cannot be read as a checkpoint with weights_only=True ({error})"
        ) from None
