"""RVD's networks (Yang, Srivastava, Mandt 2022, "Diffusion Probabilistic Modeling for Video Generation").

Three per-frame 2D networks, all built from the named blocks below:

- ``FramePredictor``: an encoder-decoder with a ``ConvGRUCell`` at each encoder level. Fed x_{<t} one frame at a
  time, it outputs the deterministic next-frame estimate mu_t, clamped to the data range [-1, 1].
- ``ContextEncoder``: an encoder with a ``ConvGRUCell`` per level; its per-level states are the context c_t that
  conditions the denoiser (same widths as the denoiser's levels).
- ``ResidualUNet``: the denoiser of the residual y_t = (x_t - mu_t) / sigma. At each encoder level the context
  features of that level are concatenated to the U-Net's features; the noise level enters every residual block.

``RVDNetwork`` holds the three. Its ``forward`` is the framework's network call ``network(z, time, mask, context=...)``
on (B, T, C, H, W) clips: ``z`` holds noisy residuals and ``context`` is a list with one (B, T, C_l, H_l, W_l) tensor
per level, where frame slot t carries c_t. Frames are independent given their context, so only the latent frames of
``mask`` are run (as a batch of single frames); observed and padding slots get a zero output, which the core's loss
and samplers never read. The recurrent part is exposed as ``observe`` (one step, for the autoregressive rollout) and
``teacher_forcing`` (a whole clip of ground-truth frames, for training). RNN state is an explicit value: ``None``
starts a new video, so nothing is carried from one video to the next.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from diffusion.masks import FrameMask
from networks.blocks import check_image_size, timestep_embedding

Hidden = list[Tensor | None]  # one ConvGRU state per level; None = zeros (a new video)
RecurrentState = tuple[Hidden, Hidden]  # (predictor, context encoder)


def frame_group_norm(channels: int, groups: int = 8) -> nn.GroupNorm:
    """The released code's GroupNorm(8), with fewer groups where a small width is not divisible by 8."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def level_widths(in_channels: int, base: int, mults: Sequence[int]) -> list[tuple[int, int]]:
    """(input, output) widths of each U-Net level: channels -> base*m_0 -> base*m_1 -> ..."""
    widths = [in_channels, *(base * m for m in mults)]
    return list(zip(widths[:-1], widths[1:]))


# ------------------------------------------------------------------------------------------------------ named blocks
class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al. 2016):
    [r, u] = sigmoid(W_g * [x, h]),  h~ = tanh(W_c * [x, r h]),  h' = (1 - u) h + u h~.
    ``h = None`` is the zero state of a new sequence."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        joint, pad = in_channels + hidden_channels, kernel_size // 2
        self.gates = nn.Conv2d(joint, 2 * hidden_channels, kernel_size, padding=pad)  # reset and update gates
        self.candidate = nn.Conv2d(joint, hidden_channels, kernel_size, padding=pad)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        reset, update = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return (1 - update) * h + update * candidate


class ConvNormAct(nn.Module):
    """3x3 convolution, GroupNorm, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = frame_group_norm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class FrameResBlock(nn.Module):
    """Two ConvNormAct layers with a skip; the noise-level embedding (if any) is added between them."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int | None = None):
        super().__init__()
        self.block1 = ConvNormAct(in_channels, out_channels)
        self.emb = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(emb_channels, out_channels)) if emb_channels else None
        self.block2 = ConvNormAct(out_channels, out_channels)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.block1(x)
        if self.emb is not None:
            if emb is None:
                raise ValueError("FrameResBlock: this block is conditioned on the noise level; pass its embedding")
            h = h + self.emb(emb)[:, :, None, None]
        return self.block2(h) + self.skip(x)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gain + self.bias


class LinearAttention(nn.Module):
    """Pre-norm residual linear attention over the pixels of a frame (Shen et al. 2021): softmax over keys'
    positions and queries' channels, cost linear in H*W."""

    def __init__(self, channels: int, heads: int = 4, head_channels: int = 16):
        super().__init__()
        self.heads, self.scale = heads, head_channels**-0.5
        hidden = heads * head_channels
        self.norm = ChannelLayerNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * hidden, 1, bias=False)
        self.out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        q, k, v = (
            rearrange(part, "b (heads d) h w -> b heads d (h w)", heads=self.heads)
            for part in self.qkv(self.norm(x)).chunk(3, dim=1)
        )
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        summary = torch.einsum("bhdn,bhen->bhde", k, v)  # (d x e) per head: keys pooled over positions
        out = torch.einsum("bhde,bhdn->bhen", summary, q)
        return x + self.out(rearrange(out, "b heads e (h w) -> b (heads e) h w", h=h, w=w))


def downsample(channels: int) -> nn.Conv2d:
    """Stride-2 3x3 convolution: halves height and width."""
    return nn.Conv2d(channels, channels, 3, stride=2, padding=1)


def upsample(channels: int) -> nn.ConvTranspose2d:
    """Stride-2 4x4 transposed convolution: doubles height and width."""
    return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features of the network time, then Linear-GELU-Linear back to the base width."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def forward(self, time: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(time, self.channels))


# ---------------------------------------------------------------------------------------------- recurrent networks
class FramePredictor(nn.Module):
    """mu_t = f(x_{<t}): encoder levels (ResBlock -> ConvGRU -> downsample); the decoder starts from the coarsest
    GRU state and, level by level, upsamples and merges the next finer GRU state (the finest is not merged, as in
    the released code); a 3x3 convolution gives the frame, clamped to [-1, 1]."""

    def __init__(self, channels: int = 3, base: int = 48, mults: Sequence[int] = (1, 2, 2, 4)):
        super().__init__()
        levels = level_widths(channels, base, mults)
        self.encoder = nn.ModuleList(FrameResBlock(cin, cout) for cin, cout in levels)
        self.grus = nn.ModuleList(ConvGRUCell(cout, cout) for _, cout in levels)
        self.downs = nn.ModuleList(downsample(cout) for _, cout in levels[:-1])
        # Decoder stage for level l = L-1 .. 1: [features (+ GRU state of level l)] -> ResBlock -> width of l-1 -> up.
        self.decoder = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level in range(len(levels) - 1, 0, -1):
            width, finer = levels[level][1], levels[level - 1][1]
            merged = width if level == len(levels) - 1 else 2 * width
            self.decoder.append(FrameResBlock(merged, finer))
            self.ups.append(upsample(finer))
        self.to_frame = nn.Conv2d(levels[0][1], channels, 3, padding=1)

    def forward(self, frame: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """Consume frame x_{t-1} (B, C, H, W); return mu_t and the new GRU states."""
        hidden = hidden or [None] * len(self.grus)
        states, x = [], frame
        for level, (block, gru) in enumerate(zip(self.encoder, self.grus)):
            x = gru(block(x), hidden[level])
            states.append(x)
            if level < len(self.downs):
                x = self.downs[level](x)
        for i, (block, up) in enumerate(zip(self.decoder, self.ups)):
            level = len(states) - 1 - i
            if i > 0:
                x = torch.cat([x, states[level]], dim=1)
            x = up(block(x))
        return self.to_frame(x).clamp(-1, 1), states


class ContextEncoder(nn.Module):
    """c_t = g(x_{<t}): one (ResBlock -> ConvGRU) per level, downsampling between levels; the GRU states of every
    level are the context."""

    def __init__(self, channels: int = 3, base: int = 48, mults: Sequence[int] = (1, 2, 4, 8)):
        super().__init__()
        levels = level_widths(channels, base, mults)
        self.blocks = nn.ModuleList(FrameResBlock(cin, cout) for cin, cout in levels)
        self.grus = nn.ModuleList(ConvGRUCell(cout, cout) for _, cout in levels)
        self.downs = nn.ModuleList(downsample(cout) for _, cout in levels[:-1])

    def forward(self, frame: Tensor, hidden: Hidden | None = None) -> tuple[list[Tensor], Hidden]:
        hidden = hidden or [None] * len(self.grus)
        states, x = [], frame
        for level, (block, gru) in enumerate(zip(self.blocks, self.grus)):
            x = gru(block(x), hidden[level])
            states.append(x)
            if level < len(self.downs):
                x = self.downs[level](x)
        return states, states


# ----------------------------------------------------------------------------------------------------- the denoiser
class ResidualUNet(nn.Module):
    """eps_theta(y_n, n, c) on single frames. Level l of the encoder: ResBlock, then ResBlock over
    [features, c^l], then linear attention; a middle of ResBlock-attention-ResBlock; the decoder merges the encoder
    output of each level but the finest, as in the released code."""

    def __init__(
        self, channels: int = 3, base: int = 48, mults: Sequence[int] = (1, 2, 4, 8), attention: bool = True
    ):
        super().__init__()
        levels = level_widths(channels, base, mults)
        self.embed = NoiseLevelEmbedding(base)

        def attn(width: int) -> nn.Module:
            return LinearAttention(width) if attention else nn.Identity()

        self.down_blocks = nn.ModuleList()
        for level, (cin, cout) in enumerate(levels):
            self.down_blocks.append(
                nn.ModuleList(
                    [
                        FrameResBlock(cin, cout, base),
                        FrameResBlock(2 * cout, cout, base),  # + context of this level (same width)
                        attn(cout),
                        downsample(cout) if level < len(levels) - 1 else nn.Identity(),
                    ]
                )
            )
        mid = levels[-1][1]
        self.mid_block1 = FrameResBlock(mid, mid, base)
        self.mid_attn = attn(mid)
        self.mid_block2 = FrameResBlock(mid, mid, base)
        self.up_blocks = nn.ModuleList()
        for level in range(len(levels) - 1, 0, -1):
            width, finer = levels[level][1], levels[level - 1][1]
            self.up_blocks.append(
                nn.ModuleList(
                    [
                        FrameResBlock(2 * width, finer, base),  # + the encoder output of this level
                        FrameResBlock(finer, finer, base),
                        attn(finer),
                        upsample(finer),
                    ]
                )
            )
        self.out = nn.Sequential(ConvNormAct(base * mults[0], base * mults[0]), nn.Conv2d(base * mults[0], channels, 1))

    def forward(self, y: Tensor, time: Tensor, context: Sequence[Tensor]) -> Tensor:
        """y (N, C, H, W) noisy residuals, time (N,) network time, context[l] (N, C_l, H_l, W_l)."""
        if len(context) != len(self.down_blocks):
            raise ValueError(f"context: expected {len(self.down_blocks)} levels of features, got {len(context)}")
        emb = self.embed(time)
        skips, x = [], y
        for (block1, block2, attn, down), c in zip(self.down_blocks, context):
            x = block1(x, emb)
            x = attn(block2(torch.cat([x, c], dim=1), emb))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, emb)), emb)
        for block1, block2, attn, up in self.up_blocks:
            x = block1(torch.cat([x, skips.pop()], dim=1), emb)
            x = up(attn(block2(x, emb)))
        return self.out(x)


# ----------------------------------------------------------------------------------------------------- the assembly
class RVDNetwork(nn.Module):
    """Predictor, context encoder and residual denoiser, behind the framework's network call."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        model_channels: int = 48,
        channel_mult: Sequence[int] = (1, 2, 4, 8),
        predictor_mult: Sequence[int] = (1, 2, 2, 4),
        attention: bool = True,
    ):
        super().__init__()
        check_image_size(image_size, channel_mult)
        try:
            check_image_size(image_size, predictor_mult)
        except ValueError as error:
            raise ValueError(str(error).replace("channel_mult", "predictor_mult")) from None
        self.predictor = FramePredictor(channels, model_channels, predictor_mult)
        self.context_encoder = ContextEncoder(channels, model_channels, channel_mult)
        self.denoiser = ResidualUNet(channels, model_channels, channel_mult, attention)

    # ---- recurrent part
    def observe(
        self, frame: Tensor, state: RecurrentState | None = None
    ) -> tuple[Tensor, list[Tensor], RecurrentState]:
        """Feed frame x_{t-1} (B, C, H, W) to both RNNs; return (mu_t, context c_t per level, new state).
        ``state=None`` resets the RNNs (the first frame of a video)."""
        predictor_hidden, context_hidden = state if state is not None else (None, None)
        mu, predictor_hidden = self.predictor(frame, predictor_hidden)
        context, context_hidden = self.context_encoder(frame, context_hidden)
        return mu, context, (predictor_hidden, context_hidden)

    def teacher_forcing(self, video: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Run both RNNs from a reset state over the ground-truth frames of (B, T, C, H, W) ``video``.

        Returns mu (B, T, C, H, W) and the context, one (B, T, C_l, H_l, W_l) tensor per level, where slot t holds
        the estimates made from frames 0..t-1. Slot 0 (no past) is zero.
        """
        state, mus, contexts = None, [], []
        for t in range(video.shape[1] - 1):
            mu, context, state = self.observe(video[:, t], state)
            mus.append(mu)
            contexts.append(context)
        mu = torch.stack([torch.zeros_like(video[:, 0]), *mus], dim=1)
        context = [
            torch.stack([torch.zeros_like(per_step[0]), *per_step], dim=1) for per_step in zip(*contexts)
        ] if contexts else []
        return mu, context

    # ---- the denoiser, as the framework calls it
    def forward(self, z: Tensor, time: Tensor, mask: FrameMask | None = None, *, context: Sequence[Tensor]) -> Tensor:
        """eps_hat for the latent frames of (B, T, C, H, W) noisy residuals ``z``; zero elsewhere."""
        batch, frames = z.shape[:2]
        selected = mask.latent if mask is not None else torch.ones(batch, frames, dtype=torch.bool, device=z.device)
        out = torch.zeros_like(z)
        if not selected.any():
            return out
        frame_time = time.reshape(batch, 1).expand(batch, frames)[selected]
        out[selected] = self.denoiser(z[selected], frame_time, [c[selected] for c in context])
        return out
