"""The exponential moving average of a network's weights, saved in and restored from every checkpoint."""

from __future__ import annotations

import copy

import torch
from torch import nn

from video_diffusion_lab.groups import EMAConfig


class EMA(nn.Module):
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, every ``every_n_steps`` optimiser steps; a copy of theta
    before ``start_step``. Buffers (e.g. normalisation statistics) are copied. ``num_updates`` counts the optimiser
    steps seen, so a resumed run continues the same schedule."""

    def __init__(self, network: nn.Module, config: EMAConfig):
        super().__init__()
        self.config = config
        self.module = copy.deepcopy(network).requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Called once after every optimiser step. Steps are counted from 0, as in the released trainers."""
        step = int(self.num_updates)
        self.num_updates += 1
        if step % self.config.every_n_steps:
            return
        if step < self.config.start_step:
            self.copy_from(network)
            return
        ema_params = list(self.module.parameters())
        params = [p.detach().to(e.dtype) for p, e in zip(network.parameters(), ema_params)]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.config.decay)
        for ema_buffer, buffer in zip(self.module.buffers(), network.buffers()):
            ema_buffer.copy_(buffer)

    @torch.no_grad()
    def copy_from(self, network: nn.Module) -> None:
        for ema_tensor, tensor in zip(self.module.state_dict().values(), network.state_dict().values()):
            ema_tensor.copy_(tensor)
