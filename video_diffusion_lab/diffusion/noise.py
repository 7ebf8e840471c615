"""Where sampling noise comes from: the global RNG, one ``torch.Generator``, or one stream per example.

Evaluation must not depend on how clips are batched or spread over processes. A ``NoiseSource`` holds one generator
per row of the batch, each seeded from (evaluation seed, the clip's data set index, sample number) by ``row_seeds``;
row b of every draw comes from generator b only, so a clip's samples are the same in any batch, in any chunk and on
any rank. Slicing a source (``source[i:j]``) keeps each row's generator (they are shared, not copied), so a caller
that samples a batch in chunks passes ``source[i:j]`` with rows ``i:j``.

Every random draw of the samplers, of the guided denoisers and of ``sample()``'s initial noise goes through
``randn_like(x, generator)``, which accepts any of the three.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers that spreads nearby inputs far apart."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def row_seed(seed: int, index: int, sample: int = 0) -> int:
    """The seed of one (clip, sample) stream: a hash of (evaluation seed, data set index, sample number), in
    [0, 2^63) so ``torch.Generator.manual_seed`` takes it on every device."""
    return _mix(_mix(_mix(seed) ^ (index & _MASK64)) ^ (sample & _MASK64)) >> 1


def row_seeds(seed: int, indices: Tensor | Sequence[int], num_samples: int = 1) -> list[int]:
    """Seeds for the rows of a batch of clips (data set ``indices``, (B,)) with ``num_samples`` samples per clip, in
    the order of ``repeat_interleave``: clip 0 sample 0, clip 0 sample 1, ..., clip 1 sample 0, ..."""
    if num_samples < 1:
        raise ValueError(f"num_samples: must be >= 1, got {num_samples}")
    indices = indices.flatten().tolist() if isinstance(indices, Tensor) else list(indices)
    return [row_seed(seed, int(index), n) for index in indices for n in range(num_samples)]


class NoiseSource:
    """One ``torch.Generator`` per row of a batch; ``randn_like(x)`` draws row b of x from generator b."""

    def __init__(self, generators: Sequence[torch.Generator]):
        generators = list(generators)
        if not generators:
            raise ValueError("NoiseSource: needs at least one generator (one per row of the batch)")
        if len({id(g) for g in generators}) != len(generators):
            raise ValueError(
                "NoiseSource: a generator stands in two rows, so those rows would depend on each other and on the "
                "batching; give every (clip, sample) row its own seed (row_seeds)"
            )
        self.generators = generators

    @classmethod
    def for_examples(cls, seeds: Sequence[int], device: torch.device | str = "cpu") -> NoiseSource:
        """One generator per seed, on ``device`` (draws are made there, then moved to the tensor's device)."""
        return cls([torch.Generator(device).manual_seed(int(seed)) for seed in seeds])

    @classmethod
    def for_clips(
        cls, seed: int, indices: Tensor | Sequence[int], num_samples: int = 1, device: torch.device | str = "cpu"
    ) -> NoiseSource:
        """The rows of ``given.repeat_interleave(num_samples, 0)`` for clips with data set ``indices``."""
        return cls.for_examples(row_seeds(seed, indices, num_samples), device)

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, rows: int | slice | Sequence[int] | Tensor) -> NoiseSource:
        """The streams of some rows (the same generator objects, so they advance together with this source)."""
        if isinstance(rows, slice):
            return NoiseSource(self.generators[rows])
        if isinstance(rows, int):
            return NoiseSource([self.generators[rows]])
        rows = rows.flatten().tolist() if isinstance(rows, Tensor) else list(rows)
        return NoiseSource([self.generators[int(r)] for r in rows])

    def randn_like(self, x: Tensor) -> Tensor:
        if x.ndim == 0 or x.shape[0] != len(self.generators):
            raise ValueError(
                f"generator: this NoiseSource holds {len(self.generators)} row streams but the tensor to draw has "
                f"shape {tuple(x.shape)}; pass the source of exactly the rows being sampled (source[i:j])"
            )
        rows = [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype) for g in self.generators]
        return torch.stack(rows).to(x.device)


NoiseGenerator = torch.Generator | NoiseSource | None


def randn_like(x: Tensor, generator: NoiseGenerator = None) -> Tensor:
    """Standard Gaussian noise of x's shape and dtype on x's device, from the global RNG (None), one generator (which
    may live on another device) or a ``NoiseSource`` (row b from stream b)."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, NoiseSource):
        return generator.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
