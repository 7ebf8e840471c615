"""Named building blocks of improved-diffusion style video U-Nets, on (B, C, T, H, W) feature maps.

``temporal_kernel`` chooses the convolution over time: 3 for RaMViD's 3x3x3 convolutions, 1 for per-frame (1x3x3)
convolutions (FDM, VDM), whose time mixing happens in temporal attention instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer sinusoidal embedding of a (B,) float time, as in DDPM / improved-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups where the width allows it (small CPU models have fewer channels)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero-initialised output layers make every residual block start as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def video_conv(in_channels: int, out_channels: int, temporal_kernel: int = 3, spatial_kernel: int = 3) -> nn.Conv3d:
    return nn.Conv3d(
        in_channels,
        out_channels,
        (temporal_kernel, spatial_kernel, spatial_kernel),
        padding=(temporal_kernel // 2, spatial_kernel // 2, spatial_kernel // 2),
    )


class TimestepBlock(nn.Module):
    """A block that also takes the (B, D) time embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TimestepSequential(nn.Sequential, TimestepBlock):
    """Passes the time embedding to the children that take it."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class ResBlock(TimestepBlock):
    """improved-diffusion's residual block: norm-act-conv, time embedding as scale-shift of the second norm."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        temporal_kernel: int = 3,
        use_scale_shift_norm: bool = True,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), video_conv(channels, out_channels, temporal_kernel)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), zero_module(video_conv(out_channels, out_channels, temporal_kernel))
        )
        self.skip = nn.Identity() if out_channels == channels else nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        emb = self.emb_layers(emb)[:, :, None, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + emb)
        return self.skip(x) + self.out_layers(h)


class SpatioTemporalAttention(nn.Module):
    """Multi-head self-attention over all T*H*W positions of a clip (RaMViD's attention at low resolutions)."""

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads: {num_heads} heads do not divide {channels} channels")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, -1))
        q, k, v = rearrange(qkv, "b (three heads d) n -> three b heads n d", three=3, heads=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b heads n d -> b (heads d) n")
        return x + self.proj_out(out).reshape(b, c, t, h, w)


class Downsample(nn.Module):
    """Halves height and width, never time (RaMViD and VDM keep every frame at every level)."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv3d(channels, out_channels or channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Doubles height and width (nearest), then a per-frame 3x3 convolution."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = video_conv(channels, out_channels or channels, temporal_kernel=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the network time followed by a two-layer MLP (width 4x the base width)."""

    def __init__(self, model_channels: int):
        super().__init__()
        self.model_channels = model_channels
        self.mlp = nn.Sequential(
            nn.Linear(model_channels, 4 * model_channels), nn.SiLU(), nn.Linear(4 * model_channels, 4 * model_channels)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.model_channels))


def check_image_size(image_size: int, channel_mult: tuple[int, ...] | list[int]) -> None:
    factor = 2 ** (len(channel_mult) - 1)
    if image_size % factor:
        raise ValueError(
            f"image_size: {image_size} is not divisible by {factor}, the U-Net's downsampling factor for "
            f"channel_mult={tuple(channel_mult)} ({len(channel_mult) - 1} halvings)"
        )
