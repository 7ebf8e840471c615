"""What sampling a clip costs: network evaluations and seconds per sampled clip, measured while testing.

Evaluations are counted by forward hooks on the networks a denoiser can run (raw and EMA weights), as the number of
examples they were given: a guided sampler that runs the network on a doubled batch (classifier-free guidance) costs
two evaluations per step, RVD's per-frame passes one per frame and step, an FDM scheme one per stage and step. So the
numbers compare samplers, schemes and methods as they actually ran, whatever the batching.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn


class SamplingCost:
    def __init__(self, networks: list[nn.Module]):
        self.evaluations = 0
        self.seconds = 0.0
        self.clips = 0
        self._counting = False
        self._hooks = [network.register_forward_hook(self._count) for network in networks]

    def _count(self, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if self._counting and inputs and isinstance(inputs[0], Tensor):
            self.evaluations += inputs[0].shape[0]

    @contextmanager
    def measure(self, num_clips: int) -> Iterator[None]:
        """Count the evaluations and time of sampling ``num_clips`` clips (all samples of a batch)."""
        self._counting = True
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            self._counting = False
        self.clips += num_clips

    def compute(self, all_gather: Callable[[Tensor], Tensor], device: torch.device) -> dict[str, float]:
        """Totals over every DDP rank (``all_gather`` of the LightningModule: a collective, call it on all ranks)."""
        local = torch.tensor([self.evaluations, self.seconds, self.clips], dtype=torch.float64, device=device)
        per_rank = all_gather(local).reshape(-1, 3)
        ranks = per_rank.shape[0]
        evaluations, seconds, clips = per_rank.sum(0).tolist()
        clips = max(clips, 1.0)
        return {
            "network_evaluations_per_clip": evaluations / clips,
            # wall time of one rank (ranks sample side by side): the seconds a researcher waits per clip on one device
            "seconds_per_clip": seconds / clips * ranks,
        }

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
