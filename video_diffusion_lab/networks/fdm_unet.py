"""FDM's network (Harvey et al. 2022), as released (plai-group/flexible-video-diffusion-modeling,
``improved_diffusion/unet.py`` and ``rpe.py``): improved-diffusion's 2D U-Net run on the K frames of a pass.

- Features are per frame, (B*K, C, H, W): convolutions, the residual blocks' GroupNorms and the output head act on
  each frame alone.
- At the attention resolutions and in the middle, ``FactorizedAttention`` mixes frames: temporal attention across the
  K frames at each pixel, then spatial attention within each frame. As in the released ``RPEAttention``:
  * each attention normalises its input with GroupNorm and adds its output to the NORMALISED input,
    out = norm(x) + attn(norm(x)) (not x + attn(norm(x)));
  * the temporal attention's GroupNorm takes its statistics at each pixel over the group's channels and all K
    frames of the pass (``temporal_norm="official"``): padding slots take part in them;
  * frame positions enter only as relative positions: for query frame i and key frame j, d = p_i - p_j and an MLP of
    f(d) = (log(1 + max(d, 0)), log(1 + max(-d, 0)), [d = 0]) plus the diffusion-time embedding gives per-head
    vectors R(d) on the key, query and value side (iRPE):
        a_ij = (q_i.k_j + q_i.R^K_ij + k_j.R^Q_ji) / sqrt(d_h),   out_i = sum_j softmax(a)_ij (v_j + R^V_ij);
  * real frames attend to real frames and padding slots to padding slots.
- Observed frames enter clean with a 1 in an extra indicator channel, latent frames noisy with a 0. (The released
  forward puts the clean frames into the observed slots itself; here the caller does, as for every network of the
  framework: samplers and the loss hand networks z with the given frames in place.)

The released norm is a defect for padded passes: padding slots change the statistics, so what the sampler puts in
a padding slot changes the real frames' output. ``temporal_norm="exclude_padding"`` takes the statistics over the
real frames only (and applies them to every slot); then padding never reaches a real frame. It is a different
function from the released one wherever a pass has padding (identical without padding), so a released checkpoint
should be run with the default.

The temporal attention computes its softmax explicitly rather than through ``scaled_dot_product_attention``: the
value-side term sum_j a_ij R^V_ij needs the attention weights a_ij, which SDPA does not return, and the key/query
terms make the logits a full per-pixel tensor anyway. The spatial attention goes through SDPA.

Departures from the released code: narrow widths that are not multiples of 32 use fewer GroupNorm groups (the released
code cannot build them); ``use_rpe_net=False`` (a lookup table that the released code cannot build) is not offered.
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
    check_heads,
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

TEMPORAL_NORMS = ("official", "exclude_padding")


@register_safe_config
@dataclass(frozen=True)
class FDMUNetConfig:
    """FDM's U-Net hyper-parameters. Defaults: the released CARLA Town01 model at 128x128 (80.4M parameters).

    ``attention_resolutions`` are resolutions in pixels, as the released ``--attention_resolutions "16,8"`` flag.
    ``temporal_norm``: "official" (GroupNorm statistics over all K slots, padding included, as released) or
    "exclude_padding" (statistics over the real frames only; padding can then never change a real frame).
    """

    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 3, 4)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    num_heads_upsample: int | None = None  # heads of the decoder's attention; None = num_heads (released: -1)
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    temporal_norm: str = "official"
    checkpoint_levels: tuple[int, ...] = ()  # U-Net levels with activation checkpointing (0 = finest); () = off

    def __post_init__(self) -> None:
        normalise_sequences(self)
        check_positive(self, "model_channels", "num_res_blocks", "num_heads")
        check_multipliers(self, "channel_mult")
        check_dropout(self)
        if self.num_heads_upsample is not None:
            check_positive(self, "num_heads_upsample")
        if self.temporal_norm not in TEMPORAL_NORMS:
            raise ValueError(f"temporal_norm: choose one of {TEMPORAL_NORMS}, got {self.temporal_norm!r}")


# --------------------------------------------------------------------------------------- relative position encoding
def relative_distance_features(frame_indices: Tensor) -> Tensor:
    """(B, K) indices -> (B, K, K, 3): f(d) for d = p_i - p_j."""
    d = (frame_indices[:, :, None] - frame_indices[:, None, :]).float()
    return torch.stack([torch.log1p(d.clamp(min=0)), torch.log1p((-d).clamp(min=0)), (d == 0).float()], dim=-1)


class RelativePositionNet(nn.Module):
    """R_ij = W_out SiLU(W_d f(p_i - p_j) + W_t emb_i): (B, K, K, heads, head_dim), zero at initialisation."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int):
        super().__init__()
        self.num_heads = num_heads
        self.embed_distance = nn.Linear(3, channels)
        self.embed_time = nn.Linear(emb_channels, channels)
        self.out = zero_module(nn.Linear(channels, channels))

    def forward(self, frame_indices: Tensor, emb: Tensor) -> Tensor:
        b, k = frame_indices.shape
        distances = self.embed_distance(relative_distance_features(frame_indices).to(emb.dtype))
        h = distances + self.embed_time(emb).reshape(b, k, 1, -1)  # emb: (B*K, E), row i of example b = frame i
        return rearrange(self.out(F.silu(h)), "b i j (heads d) -> b i j heads d", heads=self.num_heads)


# -------------------------------------------------------------------------------------------------------- attention
def masked_group_norm(norm: nn.GroupNorm, x: Tensor, valid: Tensor) -> Tensor:
    """GroupNorm of (N, C, L) with statistics over the valid positions (N, L) only, applied to every position."""
    n, c, length = x.shape
    xf = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(n, norm.num_groups, c // norm.num_groups, length)
    weight = valid.to(xf.dtype)[:, None, None, :]
    count = (weight.sum(dim=-1, keepdim=True) * xf.shape[2]).clamp(min=1)  # valid elements per group
    mean = (xf * weight).sum(dim=(2, 3), keepdim=True) / count
    var = ((xf - mean).square() * weight).sum(dim=(2, 3), keepdim=True) / count
    normed = ((xf - mean) * torch.rsqrt(var + norm.eps)).reshape(n, c, length)
    return (normed * norm.weight.to(normed.dtype)[:, None] + norm.bias.to(normed.dtype)[:, None]).type(x.dtype)


class TemporalAttention(ContextBlock):
    """Self-attention across the K frames at each pixel, with relative position encodings on q, k and v.

    Explicit softmax, not SDPA: the value-side term sum_j a_ij R^V_ij needs the attention weights (see module doc).
    """

    def __init__(self, channels: int, num_heads: int, emb_channels: int, temporal_norm: str = "official"):
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads, self.temporal_norm = num_heads, temporal_norm
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.rpe_q = RelativePositionNet(channels, num_heads, emb_channels)
        self.rpe_k = RelativePositionNet(channels, num_heads, emb_channels)
        self.rpe_v = RelativePositionNet(channels, num_heads, emb_channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def normalise(self, x: Tensor, ctx: UNetContext) -> Tensor:
        """(B*K, C, H, W) -> (B, H*W, K, C) normalised with statistics over frames at each pixel."""
        height, width = x.shape[-2:]
        per_pixel = rearrange(x, "(b k) c y x -> (b y x) c k", b=ctx.batch)
        if self.temporal_norm == "official":
            h = self.norm(per_pixel)
        else:
            h = masked_group_norm(self.norm, per_pixel, ctx.real.repeat_interleave(height * width, dim=0))
        return rearrange(h, "(b n) c k -> b n k c", b=ctx.batch)

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:
        height = x.shape[-2]
        h = self.normalise(x, ctx)
        q, k, v = rearrange(self.qkv(h), "b n t (three heads d) -> three b n heads t d", three=3, heads=self.num_heads)
        scale = q.shape[-1] ** -0.5
        r_q, r_k, r_v = (rpe(ctx.frame_indices, ctx.emb) for rpe in (self.rpe_q, self.rpe_k, self.rpe_v))
        logits = (
            q @ k.transpose(-1, -2)
            + torch.einsum("bnhid,bijhd->bnhij", q, r_k)
            + torch.einsum("bnhjd,bjihd->bnhij", k, r_q)
        ) * scale
        logits = logits.masked_fill(~ctx.attn_mask[:, None, None], float("-inf"))
        attn = logits.float().softmax(dim=-1).type(logits.dtype)
        out = attn @ v + torch.einsum("bnhij,bijhd->bnhid", attn, r_v)
        out = h + self.proj_out(rearrange(out, "b n heads t d -> b n t (heads d)"))
        return rearrange(out, "b (y x) k c -> (b k) c y x", y=height)


class SpatialAttention(nn.Module):
    """Self-attention over the H*W pixels of each frame (through SDPA); the output is added to the normalised input."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        check_heads(channels, num_heads)
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        height = x.shape[-2]
        h = rearrange(self.norm(x), "n c y x -> n (y x) c")
        q, k, v = rearrange(self.qkv(h), "n p (three heads d) -> three n heads p d", three=3, heads=self.num_heads)
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads p d -> n p (heads d)")
        return rearrange(h + self.proj_out(out), "n (y x) c -> n c y x", y=height)


class FactorizedAttention(ContextBlock):
    """Temporal attention across frames, then spatial attention within each frame (FDM's attention block)."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int, temporal_norm: str = "official"):
        super().__init__()
        self.temporal_attention = TemporalAttention(channels, num_heads, emb_channels, temporal_norm)
        self.spatial_attention = SpatialAttention(channels, num_heads)

    def forward(self, x: Tensor, ctx: UNetContext) -> Tensor:
        return self.spatial_attention(self.temporal_attention(x, ctx))


# ---------------------------------------------------------------------------------------------------------- network
class FDMUNet(UNet):
    def __init__(self, config: FDMUNetConfig, *, image_size: int, channels: int = 3, max_frames: int = 20):
        check_shape_arguments(image_size=image_size, channels=channels, max_frames=max_frames)
        emb = 4 * config.model_channels
        heads_up = config.num_heads_upsample or config.num_heads

        def res_block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb, cout, conv2d, group_norm, config.dropout, config.use_scale_shift_norm)

        def attention(ch: int, in_decoder: bool) -> FactorizedAttention:
            heads, field = (heads_up, "num_heads_upsample") if in_decoder else (config.num_heads, "num_heads")
            check_heads(ch, heads, field)
            return FactorizedAttention(ch, heads, emb, config.temporal_norm)

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
            in_channels=channels + 1,  # + the observed-frame indicator
            out_channels=channels,
            model_channels=config.model_channels,
            channel_mult=config.channel_mult,
            num_res_blocks=config.num_res_blocks,
            attention_resolutions=config.attention_resolutions,
            checkpoint_levels=config.checkpoint_levels,
        )
        self.config, self.channels, self.max_frames = config, channels, max_frames

    def forward(self, z: Tensor, time: Tensor, mask: FrameMask | None = None) -> Tensor:
        """z: (B, K, C, H, W), observed frames clean; time: (B,) network time; mask: observed / latent / padding
        slots and their frame indices. Returns the output (eps, x0 or v) of z's shape."""
        b, k, c, h, w = z.shape
        if k > self.max_frames:
            raise ValueError(
                f"frames_per_pass: this network was built for at most max_frames={self.max_frames} frames per pass, "
                f"got {k}"
            )
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"image_size: the network was built for {self.image_size}x{self.image_size}, got {h}x{w}")
        if c != self.channels:
            raise ValueError(f"channels: the network takes {self.channels} channels, got {c}")
        if mask is None:
            latent = torch.ones(b, k, dtype=torch.bool, device=z.device)
            mask = FrameMask(~latent, latent, default_frame_indices(b, k, z.device))
        mask = mask.to(z.device)
        real = mask.observed | mask.latent
        ctx = UNetContext(
            emb=self.time_embed(time).repeat_interleave(k, dim=0),
            batch=b,
            frame_indices=mask.frame_indices,
            attn_mask=real[:, :, None] == real[:, None, :],  # real frames attend to real ones, padding to padding
            real=real,
        )
        indicator = FrameMask.per_frame(mask.observed, z).to(z.dtype).expand(-1, -1, 1, h, w)
        features = rearrange(torch.cat([z, indicator], dim=2), "b k c y x -> (b k) c y x")
        return rearrange(self.unet_features(features, ctx), "(b k) c y x -> b k c y x", b=b)
