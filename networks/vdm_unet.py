"""VDM's network (Ho et al. 2022, "Video Diffusion Models", Sec. 3 and Fig. 1): a space-time factorized 3D U-Net.

- Every 3x3 convolution is 1x3x3 (``ResBlock(temporal_kernel=1)``): convolutions never mix frames.
- At the attention resolutions each block runs spatial attention within each frame, then temporal attention across
  the frames at each spatial position, with a learned relative position bias indexed by the frames' distance in time.
- The noise level (the log-SNR lambda_t) and an optional condition (a class label or a precomputed vector per clip)
  are embedded by a small MLP and added in every residual block.
- Group normalisation is taken per frame (``FrameGroupNorm``), so that temporal attention is the ONLY layer that
  mixes frames. Together with the attention mask below this makes the extra image frames of joint image-video
  training exactly independent of the clip and of each other.

Joint image-video training (Sec. 3.2): the network is told which frame slots belong together by ``segment_ids``, a
(B, T) long tensor passed with the conditioning (``network(z, time, mask, segment_ids=...)``): slots with equal ids
attend to each other in EVERY temporal attention layer, other pairs are masked out. The clip's frames share id 0 and
each extra image frame gets its own id (1..n). Without ``segment_ids`` all slots form one clip. Padding slots of the
frame mask (neither observed nor latent) attend only to themselves and are attended by nobody.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from diffusion.masks import FrameMask, default_frame_indices
from networks.blocks import (
    Downsample,
    ResBlock,
    TimeEmbedding,
    Upsample,
    check_image_size,
    group_norm,
    timestep_embedding,
    video_conv,
    zero_module,
)


# ------------------------------------------------------------------------------------------------------ normalisation
class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame of a (B, C, T, H, W) map (an image model's norm applied frame by frame)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b = x.shape[0]
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        return rearrange(super().forward(frames), "(b t) c h w -> b c t h w", b=b)


def frame_group_norm(channels: int) -> FrameGroupNorm:
    reference = group_norm(channels)
    return FrameGroupNorm(reference.num_groups, channels)


class FactorizedResBlock(ResBlock):
    """``ResBlock`` with 1x3x3 convolutions and per-frame group norms: no mixing across frames at all."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__(channels, emb_channels, out_channels, dropout=dropout, temporal_kernel=1)
        self.in_layers[0] = frame_group_norm(channels)
        self.out_norm = frame_group_norm(out_channels or channels)


# ------------------------------------------------------------------------------------------------------- attention
def temporal_attention_allowed(segment_ids: Tensor, padding: Tensor | None = None) -> Tensor:
    """(B, T, T) bool: query frame i may attend to key frame j.

    Frames attend to the frames of their own segment (``segment_ids`` equal); a padding slot is a segment of its own.
    """
    allowed = segment_ids[:, :, None] == segment_ids[:, None, :]
    if padding is not None:
        eye = torch.eye(segment_ids.shape[1], dtype=torch.bool, device=segment_ids.device)
        pad_pair = padding[:, :, None] | padding[:, None, :]
        allowed = torch.where(pad_pair, eye, allowed)
    return allowed


class RelativePositionBias(nn.Module):
    """A learned bias per head for each relative time offset j - i, clipped to [-max_distance, max_distance]."""

    def __init__(self, num_heads: int, max_distance: int = 32):
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Embedding(2 * max_distance + 1, num_heads)
        nn.init.zeros_(self.table.weight)

    def forward(self, frame_indices: Tensor) -> Tensor:
        """(B, T) absolute frame positions -> (B, heads, T, T) bias."""
        offset = (frame_indices[:, None, :] - frame_indices[:, :, None]).clamp(-self.max_distance, self.max_distance)
        return rearrange(self.table(offset + self.max_distance), "b i j heads -> b heads i j")


def num_heads_for(channels: int, head_dim: int) -> int:
    if channels % head_dim and head_dim % channels:
        raise ValueError(f"attention_head_dim: {head_dim} does not divide the attention width {channels}")
    return max(1, channels // head_dim)


class SpatialAttention(nn.Module):
    """Self-attention over the H*W positions of each frame separately."""

    def __init__(self, channels: int, head_dim: int = 64):
        super().__init__()
        self.num_heads = num_heads_for(channels, head_dim)
        self.norm = frame_group_norm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv3d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        q, k, v = rearrange(qkv, "b (three heads d) t h w -> three b t heads (h w) d", three=3, heads=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b t heads (h w) d -> b (heads d) t h w", h=h, w=w)
        return x + self.proj_out(out)


class TemporalAttention(nn.Module):
    """Self-attention across the frames at each spatial position, with relative time positions and a frame mask."""

    def __init__(self, channels: int, head_dim: int = 64, max_distance: int = 32):
        super().__init__()
        self.num_heads = num_heads_for(channels, head_dim)
        self.norm = frame_group_norm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.relative_position = RelativePositionBias(self.num_heads, max_distance)
        self.proj_out = zero_module(nn.Conv3d(channels, channels, 1))

    def forward(self, x: Tensor, frame_indices: Tensor, allowed: Tensor) -> Tensor:
        """x: (B, C, T, H, W); frame_indices (B, T) long; allowed (B, T, T) bool from ``temporal_attention_allowed``."""
        b, c, t, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        q, k, v = rearrange(qkv, "b (three heads d) t h w -> three b (h w) heads t d", three=3, heads=self.num_heads)
        bias = self.relative_position(frame_indices).to(q.dtype)  # (B, heads, T, T)
        bias = bias.masked_fill(~allowed[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None])  # broadcast over positions
        out = rearrange(out, "b (h w) heads t d -> b (heads d) t h w", h=h, w=w)
        return x + self.proj_out(out)


class VDMBlock(nn.Module):
    """Residual block, then (at attention resolutions) spatial attention, then temporal attention; or a resampler."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, emb: Tensor, frame_indices: Tensor, allowed: Tensor) -> Tensor:
        for layer in self.layers:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, TemporalAttention):
                x = layer(x, frame_indices, allowed)
            else:
                x = layer(x)
        return x


# -------------------------------------------------------------------------------------------------------- condition
class ConditionEmbedding(nn.Module):
    """A class label (``num_classes``) or a precomputed vector (``cond_dim``) mapped to the block embedding width.

    Classifier-free guidance needs an "unconditional" input: a learned null class (index ``num_classes``) or a learned
    null vector, used wherever ``drop_cond`` is True (and when no condition is passed at all).
    """

    def __init__(self, emb_channels: int, num_classes: int | None = None, cond_dim: int | None = None):
        super().__init__()
        if num_classes is not None and cond_dim is not None:
            raise ValueError("num_classes, cond_dim: condition on a class label or on a vector, not both")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: must be >= 1, got {num_classes}")
        if cond_dim is not None and cond_dim < 1:
            raise ValueError(f"cond_dim: must be >= 1, got {cond_dim}")
        self.num_classes, self.cond_dim = num_classes, cond_dim
        if num_classes is not None:
            self.label_embed = nn.Embedding(num_classes + 1, emb_channels)
        if cond_dim is not None:
            self.null_vector = nn.Parameter(torch.zeros(cond_dim))
            self.vector_embed = nn.Sequential(
                nn.Linear(cond_dim, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
            )

    @property
    def enabled(self) -> bool:
        return self.num_classes is not None or self.cond_dim is not None

    def forward(
        self, batch: int, device: torch.device, label: Tensor | None, cond_vector: Tensor | None, drop_cond: Tensor | None
    ) -> Tensor | None:
        if label is not None and self.num_classes is None:
            raise ValueError("num_classes: the batch carries class labels but the model has no classes (num_classes)")
        if cond_vector is not None and self.cond_dim is None:
            raise ValueError("cond_dim: a condition vector was passed but the model has no vector input (cond_dim)")
        if not self.enabled:
            return None
        drop = torch.zeros(batch, dtype=torch.bool, device=device) if drop_cond is None else drop_cond.bool()
        if self.num_classes is not None:
            null = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
            if label is None:
                return self.label_embed(null)
            if ((label < 0) | (label >= self.num_classes)).any():
                raise ValueError(f"num_classes: labels must lie in [0, {self.num_classes}), got {label.tolist()}")
            return self.label_embed(torch.where(drop, null, label.long()))
        null_vec = self.null_vector.expand(batch, -1)
        vector = null_vec if cond_vector is None else torch.where(drop[:, None], null_vec, cond_vector.to(null_vec))
        return self.vector_embed(vector)


# ---------------------------------------------------------------------------------------------------------- network
class VDMUNet(nn.Module):
    """The factorized space-time U-Net. ``forward(z, log_snr, mask, segment_ids=, label=, cond_vector=, drop_cond=)``.

    ``frame_conditioning=True`` adds one input channel holding the frame mask's observed flags (a model trained to be
    conditioned on clean given frames); such a model must not be sampled with replacement / reconstruction guidance.
    """

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 3,
        attention_resolutions: Sequence[int] = (32, 16, 8),
        attention_head_dim: int = 64,
        dropout: float = 0.1,
        max_relative_distance: int = 32,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        frame_conditioning: bool = False,
    ):
        super().__init__()
        check_image_size(image_size, channel_mult)
        self.image_size, self.in_channels = image_size, in_channels
        self.channel_mult = tuple(channel_mult)
        self.frame_conditioning = frame_conditioning
        emb = 4 * model_channels
        self.time_embed = TimeEmbedding(model_channels)  # sinusoidal features of lambda_t, then a 2-layer MLP
        self.cond_embed = ConditionEmbedding(emb, num_classes, cond_dim)

        def res(cin: int, cout: int) -> FactorizedResBlock:
            return FactorizedResBlock(cin, emb, cout, dropout=dropout)

        def attention(ch: int) -> list[nn.Module]:
            return [SpatialAttention(ch, attention_head_dim), TemporalAttention(ch, attention_head_dim, max_relative_distance)]

        first_in = in_channels + (1 if frame_conditioning else 0)
        self.input_blocks = nn.ModuleList([VDMBlock(video_conv(first_in, model_channels, temporal_kernel=1))])
        skip_channels, ch, resolution = [model_channels], model_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers += attention(ch)
                self.input_blocks.append(VDMBlock(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(VDMBlock(Downsample(ch)))
                skip_channels.append(ch)
                resolution //= 2

        self.middle_block = VDMBlock(res(ch, ch), *attention(ch), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers += attention(ch)
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    resolution *= 2
                self.output_blocks.append(VDMBlock(*layers))

        self.out = nn.Sequential(frame_group_norm(ch), nn.SiLU(), zero_module(video_conv(ch, in_channels, 1)))

    @property
    def temporal_attention_layers(self) -> list[TemporalAttention]:
        return [m for m in self.modules() if isinstance(m, TemporalAttention)]

    def forward(
        self,
        z: Tensor,
        time: Tensor,
        mask: FrameMask | None = None,
        *,
        segment_ids: Tensor | None = None,
        label: Tensor | None = None,
        cond_vector: Tensor | None = None,
        drop_cond: Tensor | None = None,
    ) -> Tensor:
        """z: (B, T, C, H, W); time: (B,) log-SNR. Returns the eps / v / x0 output of z's shape."""
        b, t, c, h, w = z.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"image_size: the network was built for {self.image_size}x{self.image_size}, got {h}x{w}")
        if c != self.in_channels:
            raise ValueError(f"channels: the network takes {self.in_channels} channels, got {c}")
        frame_indices = mask.frame_indices if mask is not None else default_frame_indices(b, t, z.device)
        segments = torch.zeros(b, t, dtype=torch.long, device=z.device) if segment_ids is None else segment_ids.long()
        allowed = temporal_attention_allowed(segments, mask.padding if mask is not None else None)

        # sinusoidal features of lambda_t (computed in float32), then the MLP in the network's dtype
        emb = self.time_embed.mlp(timestep_embedding(time, self.time_embed.model_channels).to(z.dtype))
        cond = self.cond_embed(b, z.device, label, cond_vector, drop_cond)
        if cond is not None:
            emb = emb + cond

        x = z
        if self.frame_conditioning:
            observed = mask.observed if mask is not None else torch.zeros(b, t, dtype=torch.bool, device=z.device)
            x = torch.cat([z, FrameMask.per_frame(observed, z).to(z.dtype).expand(b, t, 1, h, w)], dim=2)
        h_ = rearrange(x, "b t c h w -> b c t h w")
        skips = []
        for block in self.input_blocks:
            h_ = block(h_, emb, frame_indices, allowed)
            skips.append(h_)
        h_ = self.middle_block(h_, emb, frame_indices, allowed)
        for block in self.output_blocks:
            h_ = block(torch.cat([h_, skips.pop()], dim=1), emb, frame_indices, allowed)
        return rearrange(self.out(h_), "b c t h w -> b t c h w")
