"""Helpers for the networks' frozen hyper-parameter dataclasses (``RaMViDUNetConfig``, ``FDMUNetConfig``, ...).

A config holds what changes the network's function, never the clip shape (image size, channels, frames), which the
constructor takes separately. Configs are registered as safe globals so checkpoints holding them load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch


def normalise_sequences(config: Any) -> None:
    """Lists (from YAML / JSON) become tuples so that frozen configs compare and hash by value."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            object.__setattr__(config, field.name, tuple(value))


def check_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")


def check_multipliers(config: Any, name: str) -> None:
    value = getattr(config, name)
    if not value or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in value):
        raise ValueError(f"{name}: must be a non-empty sequence of positive integers, got {value!r}")


def check_dropout(config: Any) -> None:
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout: must lie in [0, 1), got {config.dropout!r}")


def register_safe_config(cls: type) -> type:
    """Class decorator: let ``torch.load(weights_only=True)`` rebuild instances of this config."""
    torch.serialization.add_safe_globals([cls])
    return cls


def check_shape_arguments(**values: int) -> None:
    """The clip-shape arguments of a network constructor (image_size, channels, max_frames) are positive integers."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
