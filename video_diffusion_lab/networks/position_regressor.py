"""The CARLA position regressor: one 128x128 frame -> the car's map (x, y) (FDM's WD / PO evaluation, Sec. 6.2).

A plain CNN: stride-2 3x3 convolutions with GroupNorm and SiLU halve the frame to 4x4, global average pooling, an
MLP head. It predicts normalised coordinates; ``PositionRegressor`` holds the training set's mean / std to map back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from video_diffusion_lab.networks.blocks import group_norm


class ConvDown(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=2, padding=1),
            group_norm(cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
            group_norm(cout),
            nn.SiLU(),
        )


class PositionRegressor(nn.Module):
    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 128, 256, 256), hidden: int = 256):
        super().__init__()
        layers, cin = [], in_channels
        for width in widths:
            layers.append(ConvDown(cin, width))
            cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin, hidden), nn.SiLU(), nn.Linear(hidden, 2))
        self.register_buffer("coord_mean", torch.zeros(2))
        self.register_buffer("coord_std", torch.ones(2))

    def forward(self, frames: Tensor) -> Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, 2) normalised coordinates."""
        return self.head(self.features(frames).mean(dim=(2, 3)))

    def positions(self, frames: Tensor) -> Tensor:
        """(..., C, H, W) frames -> (..., 2) map coordinates."""
        lead = frames.shape[:-3]
        out = self(frames.reshape(-1, *frames.shape[-3:])) * self.coord_std + self.coord_mean
        return out.reshape(*lead, 2)
