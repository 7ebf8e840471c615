"""Named building blocks shared by the improved-diffusion style U-Nets (RaMViD, FDM, VDM).

Every block is dimension-agnostic: it is handed the convolution it should use, so one ``ResBlock`` serves RaMViD's
(B, C, T, H, W) clips with 3x3x3 convolutions and FDM's / VDM's per-frame (B*T, C, H, W) features with 3x3
convolutions. Blocks that need more than their input (the time embedding, frame positions, an attention mask) are
``ContextBlock``s and receive the ``UNetContext`` of the forward pass; ``BlockSequence`` hands it to them.

Names follow what each piece is; ``networks.official`` maps the released checkpoints' key names onto them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

ConvFactory = Callable[..., nn.Module]  # (in_channels, out_channels, kernel_size=3) -> a same-padded convolution
NormFactory = Callable[[int], nn.Module]  # channels -> a normalisation layer


# ---------------------------------------------------------------------------------------------------- small pieces
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """improved-diffusion's sinusoidal features of a (N,) float time: [cos(t f_i), sin(t f_i)], f_i = P^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in at least float32 precision (improved-diffusion's ``GroupNorm32``): half-precision inputs
    are normalised in float32 and cast back."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype not in (torch.float16, torch.bfloat16):
            return super().forward(x)
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def group_norm(channels: int, groups: int = 32) -> GroupNorm32:
    """32 groups as in the released code, or the largest divisor of ``channels`` below that for narrow test models
    (the released code cannot build those at all, so no released network is affected)."""
    return GroupNorm32(math.gcd(groups, channels), channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero-initialised output layers make every residual block start as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def conv2d(in_channels: int, out_channels: int, kernel_size: int = 3, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, **kwargs)


def conv3d(in_channels: int, out_channels: int, kernel_size: int = 3, **kwargs) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, **kwargs)


def check_image_size(image_size: int, channel_mult: tuple[int, ...] | list[int]) -> None:
    factor = 2 ** (len(channel_mult) - 1)
    if image_size % factor:
        raise ValueError(
            f"image_size: {image_size} is not divisible by {factor}, the U-Net's downsampling factor for "
            f"channel_mult={tuple(channel_mult)} ({len(channel_mult) - 1} halvings)"
        )


def check_heads(channels: int, num_heads: int, field: str = "num_heads") -> None:
    if num_heads < 1 or channels % num_heads:
        raise ValueError(f"{field}: {num_heads} heads do not divide the attention width {channels}")


# ------------------------------------------------------------------------------------------- context and sequences
@dataclass
class UNetContext:
    """What the blocks of one forward pass may ask for besides their input features."""

    emb: Tensor  # (N, E) time (and condition) embedding, one row per item of the feature batch
    batch: int = 1  # B (per-frame layouts keep features as (B*T, C, H, W))
    frame_indices: Tensor | None = None  # (B, T) positions of the frame slots in the video
    attn_mask: Tensor | None = None  # (B, T, T) bool: query frame i may attend to key frame j
    real: Tensor | None = None  # (B, T) bool: False on padding slots


class ContextBlock(nn.Module):
    """A block whose forward takes the pass's ``UNetContext`` as a second argument."""

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class BlockSequence(nn.Sequential, ContextBlock):
    """Runs its layers in order, handing the context to the ``ContextBlock``s among them.

    With ``activation_checkpointing`` set (a plain attribute, not part of the state dict) and gradients enabled, the
    block keeps only its input for the backward pass and runs its layers again there (``torch.utils.checkpoint``,
    non-reentrant, with the random state of the forward pass restored, so dropout draws the same mask): the same
    values and gradients for less activation memory and one more forward pass of the block.
    """

    activation_checkpointing: bool = False

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.run_layers, x, ctx, use_reentrant=False)
        return self.run_layers(x, ctx)

    def run_layers(self, x: Tensor, ctx: UNetContext) -> Tensor:
        for layer in self:
            x = layer(x, ctx) if isinstance(layer, ContextBlock) else layer(x)
        return x


# -------------------------------------------------------------------------------------------------- named blocks
class TimeEmbedding(nn.Module):
    """Sinusoidal features of the network time, then Linear-SiLU-Linear to ``emb_channels`` (improved-diffusion: 4x
    the base width)."""

    def __init__(self, model_channels: int, emb_channels: int | None = None):
        super().__init__()
        self.model_channels = model_channels
        emb_channels = emb_channels or 4 * model_channels
        self.linear_1 = nn.Linear(model_channels, emb_channels)
        self.linear_2 = nn.Linear(emb_channels, emb_channels)

    def forward(self, t: Tensor) -> Tensor:
        features = timestep_embedding(t, self.model_channels).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(features)))


def broadcast_embedding(emb: Tensor, like: Tensor) -> Tensor:
    """(N, C) -> (N, C, 1, ...) against a (N, C, ...) feature map."""
    return emb.reshape(*emb.shape, *([1] * (like.ndim - 2)))


class ResBlock(ContextBlock):
    """improved-diffusion's residual block: norm-SiLU-conv, the time embedding as a scale-shift of the second norm
    (or added before it), norm-SiLU-dropout-conv, and a 1x1 convolution on the skip where the width changes."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        conv: ConvFactory,
        norm: NormFactory = group_norm,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
    ):
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_norm = norm(channels)
        self.in_conv = conv(channels, out_channels)
        self.emb_proj = nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        self.out_norm = norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero_module(conv(out_channels, out_channels))
        self.skip = nn.Identity() if out_channels == channels else conv(channels, out_channels, 1)

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:
        h = self.in_conv(F.silu(self.in_norm(x)))
        emb = broadcast_embedding(self.emb_proj(F.silu(ctx.emb)).type(h.dtype), h)
        if self.use_scale_shift_norm:
            scale, shift = emb.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + emb)
        return self.skip(x) + self.out_conv(self.dropout(F.silu(h)))


class Downsample(nn.Module):
    """A stride-2 convolution over height and width (never over time in any of the three papers' networks)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour doubling of height and width (time kept), then a 3x3 (or 3x3x3) convolution."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        scale = (1.0, 2.0, 2.0) if x.ndim == 5 else 2.0
        return self.conv(F.interpolate(x, scale_factor=scale, mode="nearest"))


class SelfAttention(nn.Module):
    """improved-diffusion's attention block: every position of the feature map attends to every other one (for a
    (B, C, T, H, W) clip, all T*H*W space-time positions), with a residual connection around it.

    ``qkv_layout`` says how the released weights order the 3*C output channels of the qkv projection: the
    improved-diffusion code that RaMViD forked splits heads first, ``"heads three d"``.
    """

    def __init__(self, channels: int, num_heads: int, qkv_layout: str = "heads three d"):
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads, self.qkv_layout = num_heads, qkv_layout
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        pattern = f"b ({self.qkv_layout}) n -> three b heads n d"
        # One copy to make the head dimension contiguous: SDPA's fused CPU kernel needs it (strided q/k/v fall back
        # to the math path, which materialises the N x N weights); the values are the same.
        q, k, v = rearrange(self.qkv(self.norm(flat)), pattern, three=3, heads=self.num_heads).contiguous()
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj_out(rearrange(out, "b heads n d -> b (heads d) n"))
        return (flat + out).reshape(b, c, *spatial)


class OutputHead(nn.Module):
    """Norm, SiLU and a zero-initialised convolution to the output channels."""

    def __init__(self, channels: int, out_channels: int, conv: ConvFactory, norm: NormFactory = group_norm):
        super().__init__()
        self.norm = norm(channels)
        self.conv = zero_module(conv(channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.silu(self.norm(x)))
