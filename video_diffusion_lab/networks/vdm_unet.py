"""VDM's network (Ho et al. 2022, "Video Diffusion Models", Sec. 3 and Fig. 1): a space-time factorized 3D U-Net.
VDM released no code; this is the paper's description on the shared improved-diffusion skeleton (``networks.unet``).

- Features are per frame, (B*T, C, H, W): every 3x3 convolution is a 1x3x3 space-only convolution and every
  GroupNorm takes its statistics per frame, so that temporal attention is the ONLY layer that mixes frames. Together
  with the attention mask below this makes the extra image frames of joint image-video training exactly independent
  of the clip and of each other.
- At the attention resolutions (and in the middle) each block runs spatial attention within each frame, then temporal
  attention across the frames at each spatial position, with a learned relative position bias indexed by the frames'
  distance in time. Both go through ``scaled_dot_product_attention``; the bias and the frame mask enter as its
  ``attn_mask``.
- The noise level (the log-SNR lambda_t) and an optional condition (a class label or a precomputed vector per clip)
  are embedded by a small MLP and added in every residual block.

Joint image-video training (Sec. 3.2): the network is told which frame slots belong together by ``segment_ids``, a
(B, T) long tensor passed with the conditioning (``network(z, time, mask, segment_ids=...)``): slots with equal ids
attend to each other in EVERY temporal attention layer, other pairs are masked out. The clip's frames share id 0 and
each extra image frame gets its own id (1..n). Without ``segment_ids`` all slots form one clip. Padding slots of the
frame mask (neither observed nor latent) attend only to themselves and are attended by nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from video_diffusion_lab.diffusion.masks import FrameMask, default_frame_indices
from video_diffusion_lab.networks.blocks import (
    ContextBlock,
    Downsample,
    ResBlock,
    UNetContext,
    Upsample,
    conv2d,
    group_norm,
    zero_module,
)
from video_diffusion_lab.networks.config import (
    check_dropout,
    check_multipliers,
    check_positive,
    check_shape_arguments,
    normalise_sequences,
    register_safe_config,
)
from video_diffusion_lab.networks.unet import UNet, UNetBlocks


@register_safe_config
@dataclass(frozen=True)
class VDMUNetConfig:
    """VDM's U-Net hyper-parameters (the paper's 64x64 model by default)."""

    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    attention_head_dim: int = 64
    dropout: float = 0.1
    use_scale_shift_norm: bool = True
    max_relative_distance: int = 32
    num_classes: int | None = None
    cond_dim: int | None = None
    frame_conditioning: bool = False
    emb_channels: int | None = None  # width of the time / condition embedding; None = 4 x model_channels
    checkpoint_levels: tuple[int, ...] = ()  # U-Net levels with activation checkpointing (0 = finest); () = off

    def __post_init__(self) -> None:
        normalise_sequences(self)
        check_positive(self, "model_channels", "num_res_blocks", "attention_head_dim", "max_relative_distance")
        if self.emb_channels is not None:
            check_positive(self, "emb_channels")
        check_multipliers(self, "channel_mult")
        check_dropout(self)
        if self.num_classes is not None and self.cond_dim is not None:
            raise ValueError("num_classes, cond_dim: condition on a class label or on a vector, not both")
        if self.num_classes is not None:
            check_positive(self, "num_classes")
        if self.cond_dim is not None:
            check_positive(self, "cond_dim")


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
    """Self-attention over the H*W positions of each frame separately, residual on the input."""

    def __init__(self, channels: int, head_dim: int = 64):
        super().__init__()
        self.num_heads = num_heads_for(channels, head_dim)
        self.norm = group_norm(channels)
        self.qkv = conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_module(conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        height = x.shape[-2]
        q, k, v = rearrange(
            self.qkv(self.norm(x)), "n (three heads d) y x -> three n heads (y x) d", three=3, heads=self.num_heads
        ).contiguous()  # contiguous heads: SDPA's fused CPU kernel
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads (y x) d -> n (heads d) y x", y=height)
        return x + self.proj_out(out)


class TemporalAttention(ContextBlock):
    """Self-attention across the frames at each spatial position, with relative time positions and the frame mask."""

    def __init__(self, channels: int, head_dim: int = 64, max_distance: int = 32):
        super().__init__()
        self.num_heads = num_heads_for(channels, head_dim)
        self.norm = group_norm(channels)
        self.qkv = conv2d(channels, 3 * channels, 1)
        self.relative_position = RelativePositionBias(self.num_heads, max_distance)
        self.proj_out = zero_module(conv2d(channels, channels, 1))

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:
        """x: (B*T, C, H, W); ctx.frame_indices (B, T); ctx.attn_mask (B, T, T) from ``temporal_attention_allowed``."""
        height = x.shape[-2]
        qkv = self.qkv(self.norm(x))
        q, k, v = rearrange(
            qkv, "(b t) (three heads d) y x -> three b (y x) heads t d", b=ctx.batch, three=3, heads=self.num_heads
        )
        bias = self.relative_position(ctx.frame_indices).to(q.dtype)  # (B, heads, T, T)
        bias = bias.masked_fill(~ctx.attn_mask[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, None])  # broadcast over positions
        out = rearrange(out, "b (y x) heads t d -> (b t) (heads d) y x", y=height)
        return x + self.proj_out(out)


class SpaceTimeAttention(ContextBlock):
    """Spatial attention within each frame, then temporal attention across frames (VDM's attention block)."""

    def __init__(self, channels: int, head_dim: int, max_distance: int):
        super().__init__()
        self.spatial = SpatialAttention(channels, head_dim)
        self.temporal = TemporalAttention(channels, head_dim, max_distance)

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:
        return self.temporal(self.spatial(x), ctx)


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
        self,
        batch: int,
        device: torch.device,
        label: Tensor | None,
        cond_vector: Tensor | None,
        drop_cond: Tensor | None,
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
class VDMUNet(UNet):
    """The factorized space-time U-Net. ``forward(z, log_snr, mask, segment_ids=, label=, cond_vector=, drop_cond=)``.

    ``frame_conditioning=True`` adds one input channel holding the frame mask's observed flags (a model trained to be
    conditioned on clean given frames); such a model must not be sampled with replacement / reconstruction guidance.
    """

    def __init__(self, config: VDMUNetConfig, *, image_size: int, channels: int = 3):
        check_shape_arguments(image_size=image_size, channels=channels)
        emb = config.emb_channels or 4 * config.model_channels
        for mult in config.channel_mult:
            num_heads_for(mult * config.model_channels, config.attention_head_dim)

        def res_block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb, cout, conv2d, group_norm, config.dropout, config.use_scale_shift_norm)

        def attention(ch: int, in_decoder: bool) -> SpaceTimeAttention:
            return SpaceTimeAttention(ch, config.attention_head_dim, config.max_relative_distance)

        blocks = UNetBlocks(
            conv=conv2d,
            norm=group_norm,
            res_block=res_block,
            attention=attention,
            downsample=lambda ch: Downsample(conv2d(ch, ch, stride=2)),
            upsample=lambda ch: Upsample(conv2d(ch, ch)),
        )
        super().__init__(
            blocks,
            image_size=image_size,
            in_channels=channels + (1 if config.frame_conditioning else 0),
            out_channels=channels,
            model_channels=config.model_channels,
            channel_mult=config.channel_mult,
            num_res_blocks=config.num_res_blocks,
            attention_resolutions=config.attention_resolutions,
            checkpoint_levels=config.checkpoint_levels,
            emb_channels=emb,
        )
        self.config, self.channels = config, channels
        self.frame_conditioning = config.frame_conditioning
        self.cond_embed = ConditionEmbedding(emb, config.num_classes, config.cond_dim)

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
        if c != self.channels:
            raise ValueError(f"channels: the network takes {self.channels} channels, got {c}")
        frame_indices = mask.frame_indices.to(z.device) if mask is not None else default_frame_indices(b, t, z.device)
        segments = torch.zeros(b, t, dtype=torch.long, device=z.device) if segment_ids is None else segment_ids.long()
        padding = mask.padding.to(z.device) if mask is not None else None

        emb = self.time_embed(time)
        cond = self.cond_embed(b, z.device, label, cond_vector, drop_cond)
        if cond is not None:
            emb = emb + cond
        ctx = UNetContext(
            emb=emb.repeat_interleave(t, dim=0),
            batch=b,
            frame_indices=frame_indices,
            attn_mask=temporal_attention_allowed(segments, padding),
        )

        x = z
        if self.frame_conditioning:
            observed = mask.observed if mask is not None else torch.zeros(b, t, dtype=torch.bool, device=z.device)
            x = torch.cat([z, FrameMask.per_frame(observed.to(z.device), z).to(z.dtype).expand(b, t, 1, h, w)], dim=2)
        out = self.unet_features(rearrange(x, "b t c y x -> (b t) c y x"), ctx)
        return rearrange(out, "(b t) c y x -> b t c y x", b=b)
