"""FDM's network (Harvey et al. 2022): improved-diffusion's U-Net run frame by frame over the K frames of a pass.

- Convolutions, normalisations and spatial attention act on each frame alone (features are kept as (B*K, C, 1, H, W)),
  so padding slots cannot leak into real frames through them.
- At the low resolutions (and in the middle) a factorized attention block mixes frames: temporal attention across
  the K frames at each spatial position, then spatial attention within each frame.
- Frame positions enter only as relative positions inside temporal attention: for frames i, j with video indices
  p_i, p_j and d = p_i - p_j, an MLP over f(d) = (log(1 + max(d, 0)), log(1 + max(-d, 0)), [d = 0]) plus the
  diffusion-time embedding gives per-head vectors R(d) added on the query, key and value side (Shaw et al. / iRPE):
      a_ij = (q_i·k_j + q_i·R^K_ij + k_j·R^Q_ji) / sqrt(d_h),   out_i = Σ_j softmax(a)_ij (v_j + R^V_ij).
  No absolute positions: adding a constant to all indices changes nothing, and reordering the frames together with
  their indices reorders the output.
- Padding slots (neither observed nor latent) are masked out of real frames' attention (and attend only to each
  other), so they never change the real frames' output.
- Observed frames enter clean with a 1 in an extra indicator channel; latent frames noisy with a 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from diffusion.masks import FrameMask, default_frame_indices
from networks.blocks import (
    Downsample,
    ResBlock,
    SpatioTemporalAttention,
    TimeEmbedding,
    TimestepBlock,
    Upsample,
    check_image_size,
    group_norm,
    video_conv,
    zero_module,
)


@dataclass
class PassContext:
    """What the frame-mixing blocks need besides the per-frame features."""

    batch: int
    frames: int
    emb: Tensor  # (B*K, E) diffusion-time embedding per frame
    frame_indices: Tensor  # (B, K) long
    real: Tensor  # (B, K) bool, False on padding slots


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
        h = self.embed_distance(relative_distance_features(frame_indices)) + self.embed_time(emb).reshape(b, k, 1, -1)
        return rearrange(self.out(F.silu(h)), "b i j (heads d) -> b i j heads d", heads=self.num_heads)


class TemporalAttention(nn.Module):
    """Self-attention across the frames of a pass at every spatial position, with relative position embeddings."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads: {num_heads} heads do not divide {channels} channels")
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.rpe_q = RelativePositionNet(channels, num_heads, emb_channels)
        self.rpe_k = RelativePositionNet(channels, num_heads, emb_channels)
        self.rpe_v = RelativePositionNet(channels, num_heads, emb_channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: Tensor, ctx: PassContext) -> Tensor:
        bk, c, _, height, width = x.shape
        h = self.norm(x.squeeze(2))  # per-frame statistics
        h = rearrange(h, "(b k) c y x -> b (y x) k c", b=ctx.batch)
        q, k, v = rearrange(self.qkv(h), "b n k (three heads d) -> three b n heads k d", three=3, heads=self.num_heads)
        scale = q.shape[-1] ** -0.5
        r_q, r_k, r_v = (rpe(ctx.frame_indices, ctx.emb) for rpe in (self.rpe_q, self.rpe_k, self.rpe_v))
        logits = (q @ k.transpose(-1, -2)
                  + torch.einsum("bnhid,bijhd->bnhij", q, r_k)
                  + torch.einsum("bnhjd,bjihd->bnhij", k, r_q)) * scale
        # real frames attend to real frames, padding to padding: a padding slot never reaches a real frame
        allowed = ctx.real[:, :, None] == ctx.real[:, None, :]
        logits = logits.masked_fill(~allowed[:, None, None], float("-inf"))
        attn = logits.float().softmax(dim=-1).to(q.dtype)
        out = attn @ v + torch.einsum("bnhij,bijhd->bnhid", attn, r_v)
        out = self.proj_out(rearrange(out, "b n heads k d -> b n k (heads d)"))
        out = rearrange(out, "b (y x) k c -> (b k) c y x", y=height)
        return x + out.unsqueeze(2)


class FactorizedAttention(nn.Module):
    """Temporal attention across frames, then spatial attention within each frame (FDM's attention block)."""

    def __init__(self, channels: int, num_heads: int, emb_channels: int):
        super().__init__()
        self.temporal = TemporalAttention(channels, num_heads, emb_channels)
        self.spatial = SpatioTemporalAttention(channels, num_heads)  # on (B*K, C, 1, H, W): one frame at a time

    def forward(self, x: Tensor, ctx: PassContext) -> Tensor:
        return self.spatial(self.temporal(x, ctx))


class PassSequential(nn.ModuleList):
    """Runs its layers on per-frame features, handing each the time embedding or the pass context it takes."""

    def forward(self, x: Tensor, ctx: PassContext) -> Tensor:
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, ctx.emb)
            elif isinstance(layer, FactorizedAttention):
                x = layer(x, ctx)
            else:
                x = layer(x)
        return x


class FDMUNet(nn.Module):
    def __init__(
        self,
        image_size: int = 128,
        in_channels: int = 3,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 3, 4),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] = (16, 8),
        num_heads: int = 4,
        dropout: float = 0.0,
        max_frames: int = 20,
    ):
        super().__init__()
        check_image_size(image_size, channel_mult)
        self.in_channels, self.max_frames = in_channels, max_frames
        emb = 4 * model_channels
        self.time_embed = TimeEmbedding(model_channels)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb, cout, dropout=dropout, temporal_kernel=1)

        def attention(ch: int) -> FactorizedAttention:
            return FactorizedAttention(ch, num_heads, emb)

        # + 1 input channel: the observed-frame indicator
        self.input_blocks = nn.ModuleList([PassSequential([video_conv(in_channels + 1, model_channels, 1)])])
        skip_channels, ch, resolution = [model_channels], model_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(PassSequential(layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(PassSequential([Downsample(ch)]))
                skip_channels.append(ch)
                resolution //= 2

        self.middle_block = PassSequential([res(ch, ch), attention(ch), res(ch, ch)])

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    resolution *= 2
                self.output_blocks.append(PassSequential(layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_module(video_conv(ch, in_channels, 1)))

    def forward(self, z: Tensor, time: Tensor, mask: FrameMask | None = None) -> Tensor:
        """z: (B, K, C, H, W), observed frames clean; time: (B,) network time; mask: observed / latent / padding
        slots and their frame indices. Returns the output (eps, x0 or v) of z's shape."""
        b, k = z.shape[:2]
        if k > self.max_frames:
            raise ValueError(
                f"frames_per_pass: this network was built for at most num_frames={self.max_frames} frames per pass, "
                f"got {k}"
            )
        if mask is None:
            ones = torch.ones(b, k, dtype=torch.bool, device=z.device)
            mask = FrameMask(~ones, ones, default_frame_indices(b, k, z.device))
        observed = FrameMask.per_frame(mask.observed, z).to(z.dtype).expand(-1, -1, 1, *z.shape[3:])
        ctx = PassContext(
            batch=b,
            frames=k,
            emb=self.time_embed(time).repeat_interleave(k, dim=0),
            frame_indices=mask.frame_indices.to(z.device),
            real=(mask.observed | mask.latent).to(z.device),
        )
        h = rearrange(torch.cat([z, observed], dim=2), "b k c y x -> (b k) c 1 y x")
        skips = []
        for block in self.input_blocks:
            h = block(h, ctx)
            skips.append(h)
        h = self.middle_block(h, ctx)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), ctx)
        return rearrange(self.out(h), "(b k) c 1 y x -> b k c y x", b=b)
