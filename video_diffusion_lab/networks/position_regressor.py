"""CARLA position regressors: one 128x128 frame -> the car's map (x, y) in metres, for FDM's WD and OP (Sec. 5).

Two networks with one interface, ``positions(frames)``: (..., 3, H, W) frames in [-1, 1] -> (..., 2) metres.

- ``CellPositionRegressor``: the architecture of the regressor released with FDM (plai-group/flexible-video-diffusion-
  modeling, ``improved_diffusion/carla_regressor.py``), the one the paper's numbers come from. A ResNet-152 classifies
  the frame into one of 100 cells of a 10x10 grid over the town; the features of a second ResNet-152 go through that
  cell's linear head to (x, y). It sees frames as the released pipeline does: uint8 levels scaled to [0, 1] and
  normalised with the ImageNet mean and standard deviation. ``vdiff-import carla_regressor`` reads its weights.
- ``PositionRegressor``: this project's own, trained from scratch (``lightning_modules.carla_regressor``): stride-2
  3x3 convolutions with GroupNorm and SiLU down to 4x4, global average pooling, an MLP head on normalised
  coordinates; the training set's coordinate mean / std map them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from video_diffusion_lab.networks.blocks import group_norm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------- the released regressor
@dataclass(frozen=True)
class ResNetConfig:
    """A bottleneck ResNet; the defaults are ResNet-152 (He et al. 2016, torchvision's v1.5: stride on the 3x3)."""

    stem_channels: int = 64
    bottleneck_channels: tuple[int, ...] = (64, 128, 256, 512)  # the 3x3 convolutions' width, per stage
    out_channels: tuple[int, ...] = (256, 512, 1024, 2048)  # each block's output, per stage
    blocks: tuple[int, ...] = (3, 8, 36, 3)

    def __post_init__(self) -> None:
        if not len(self.bottleneck_channels) == len(self.out_channels) == len(self.blocks):
            raise ValueError("ResNetConfig: bottleneck_channels, out_channels and blocks need one entry per stage")
        if min(self.blocks) < 1:
            raise ValueError(f"ResNetConfig.blocks: every stage needs >= 1 block, got {self.blocks}")


class ConvNorm(nn.Sequential):
    """A bias-free convolution followed by batch norm."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.norm = nn.BatchNorm2d(cout)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand, added to the input (projected when its shape changes), ReLU."""

    def __init__(self, cin: int, width: int, cout: int, stride: int):
        super().__init__()
        self.reduce = ConvNorm(cin, width, 1)
        self.spatial = ConvNorm(width, width, 3, stride)
        self.expand = ConvNorm(width, cout, 1)
        self.shortcut = ConvNorm(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.reduce(x))
        h = torch.relu(self.spatial(h))
        return torch.relu(self.expand(h) + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """7x7/2 stem, 3x3/2 max pool, the bottleneck stages (the first at stride 1, the others halving), global average
    pooling: (N, 3, H, W) -> (N, out_channels[-1]) features."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.stem = ConvNorm(3, config.stem_channels, 7, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, cin = [], config.stem_channels
        for i, (width, cout, count) in enumerate(zip(config.bottleneck_channels, config.out_channels, config.blocks)):
            blocks = []
            for j in range(count):
                blocks.append(Bottleneck(cin, width, cout, stride=2 if i > 0 and j == 0 else 1))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.pool(torch.relu(self.stem(x)))).mean(dim=(2, 3))


class CellPositionRegressor(nn.Module):
    """FDM's released CARLA regressor: a grid-cell classifier and a regressor with one linear head per cell."""

    def __init__(self, config: ResNetConfig = ResNetConfig(), cells: int = 100):
        super().__init__()
        self.config, self.cells = config, cells
        features = config.out_channels[-1]
        self.classifier = ResNetTrunk(config)
        self.cell_logits = nn.Linear(features, cells)
        self.regressor = ResNetTrunk(config)
        self.head_weight = nn.Parameter(torch.zeros(cells, 2, features))  # (x, y) = W[cell] @ features + b[cell]
        self.head_bias = nn.Parameter(torch.zeros(cells, 2))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def normalise(self, frames: Tensor) -> Tensor:
        """[-1, 1] -> the released input: rounded to uint8 levels, / 255, ImageNet mean and std."""
        levels = ((frames.float() + 1) * 127.5).round().clamp(0, 255)
        return (levels / 255 - self.mean) / self.std

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W) normalised frames -> ((N, cells) cell logits, (N, 2) positions from the most likely cell)."""
        logits = self.cell_logits(self.classifier(x))
        cells = logits.argmax(dim=1)
        features = self.regressor(x)
        positions = torch.einsum("nof,nf->no", self.head_weight[cells], features) + self.head_bias[cells]
        return logits, positions

    def positions(self, frames: Tensor) -> Tensor:
        """(..., 3, H, W) frames in [-1, 1] -> (..., 2) map coordinates in metres."""
        lead = frames.shape[:-3]
        _, out = self(self.normalise(frames.reshape(-1, *frames.shape[-3:])))
        return out.reshape(*lead, 2)


# ------------------------------------------------------------------------------------------ the project's regressor
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
        """(..., C, H, W) frames in [-1, 1] -> (..., 2) map coordinates."""
        lead = frames.shape[:-3]
        out = self(frames.reshape(-1, *frames.shape[-3:])) * self.coord_std + self.coord_mean
        return out.reshape(*lead, 2)
