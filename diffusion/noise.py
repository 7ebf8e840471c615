"""TEMPORARY minimal per-example noise streams (the samplers helper replaces this file)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


class NoiseSource:
    def __init__(self, generators: Sequence[torch.Generator]):
        self.generators = list(generators)

    @classmethod
    def for_clips(cls, seed: int, rows: Sequence[tuple[int, int]], device=None) -> "NoiseSource":
        gens = []
        for index, sample in rows:
            g = torch.Generator("cpu")
            g.manual_seed((seed * 1_000_003 + index) * 10_007 + sample)
            gens.append(g)
        return cls(gens)

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, index: slice) -> "NoiseSource":
        return NoiseSource(self.generators[index])

    def randn_like(self, x: Tensor) -> Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"NoiseSource: {len(self.generators)} streams for a batch of {x.shape[0]}")
        rows = [torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in self.generators]
        return torch.stack(rows).to(x.device)
