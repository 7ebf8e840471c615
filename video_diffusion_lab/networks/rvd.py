"""RVD's networks (Yang, Srivastava, Mandt 2022, "Diffusion Probabilistic Modeling for Video Generation"), as released
(buggyyang/RVD: ``modules/unet.py``, ``temporal_models.py``, ``network_components.py``, resnet backbone).

Three per-frame 2D networks, built from the named blocks below:

- ``FramePredictor`` (the release's ``HistoryNet``, "transform_fn"): per level a ResBlock, a ConvGRU and a stride-2
  downsampling; the decoder starts from the coarsest GRU state and, level by level, upsamples and merges the next
  finer GRU state (the finest is never merged, as released); a 3x3 convolution gives mu_t, clamped to [-1, 1].
- ``ContextEncoder`` (``CondNet``, "history_fn"): per level a ResBlock and a ConvGRU, downsampling between levels;
  the GRU states of every level are the context c_t that conditions the denoiser.
- ``ResidualUNet`` (``Unet``, "denoise_fn"): the denoiser of the residual y_t = (x_t - mu_t) / sigma. Per encoder
  level a ResBlock, a ResBlock over [features, c^l], linear attention; a middle of ResBlock-attention-ResBlock; the
  decoder merges the encoder output of every level but the finest. The noise level enters every ResBlock.

``RVDNetwork`` holds the three. Its ``forward`` is the framework's network call ``network(z, time, mask, context=...)``
on (B, T, C, H, W) clips: ``z`` holds noisy residuals and ``context`` is a list with one (B, T, C_l, H_l, W_l) tensor
per level, where frame slot t carries c_t. Frames are independent given their context, so only the latent frames of
``mask`` are run (as a batch of single frames); observed and padding slots get a zero output, which the core's loss
and samplers never read. The recurrent part is exposed as ``observe`` (one step, for the autoregressive rollout) and
``teacher_forcing`` (a whole clip of ground-truth frames, for training). RNN state is an explicit value: ``None``
starts a new video, so nothing is carried from one video to the next.

The release's linear attention (Shen et al.) is not a softmax attention over q.k (softmax over the keys' positions
only, q linear), so it cannot go through ``scaled_dot_product_attention``.

Time: the released denoiser embeds the raw diffusion step n in 0..N-1, while the framework's discrete schedules hand
networks n * 1000 / N; the network multiplies its time input by ``time_scale`` = N / 1000 (1.6 for the released
N = 1600) so that it sees the released step.

Departures from the released code: narrow widths that are not multiples of 8 use fewer GroupNorm groups (the released
code cannot build them); ``attention=False`` (no linear attention) is a project option, off by default; the
"convnext" backbone and the transform modes other than "residual" are not offered (the released models use neither).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.networks.blocks import check_image_size
from video_diffusion_lab.networks.config import (
    check_multipliers,
    check_positive,
    check_shape_arguments,
    normalise_sequences,
    register_safe_config,
)

Hidden = list[Tensor | None]  # one ConvGRU state per level; None = zeros (a new video)
RecurrentState = tuple[Hidden, Hidden]  # (predictor, context encoder)


@register_safe_config
@dataclass(frozen=True)
class RVDNetworkConfig:
    """RVD's hyper-parameters, named after the release's ``config.py``: ``model_channels`` = embed_dim,
    ``channel_mult`` = dim_mults (denoiser and context encoder), ``predictor_mult`` = transform_dim_mults,
    ``context_dim_factor`` / ``predictor_dim_factor`` = context_dim_factor / transform_dim_factor.
    Defaults: the released 64x64 models (37.6M parameters)."""

    model_channels: int = 48
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    predictor_mult: tuple[int, ...] = (1, 2, 2, 4)
    context_dim_factor: float = 1.0
    predictor_dim_factor: float = 1.0
    attention: bool = True
    time_scale: float = 1.6

    def __post_init__(self) -> None:
        normalise_sequences(self)
        check_positive(self, "model_channels")
        check_multipliers(self, "channel_mult")
        check_multipliers(self, "predictor_mult")
        if self.model_channels % 2 or self.model_channels < 4:
            raise ValueError(f"model_channels: the time embedding needs an even width >= 4, got {self.model_channels}")
        for name in ("context_dim_factor", "predictor_dim_factor", "time_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        base = self.model_channels
        if int(self.context_dim_factor * base) < 1 or int(self.predictor_dim_factor * base) < 1:
            raise ValueError("context_dim_factor, predictor_dim_factor: the scaled widths must be at least 1 channel")
        for m in self.channel_mult:
            if int(self.context_dim_factor * base) * m != int(base * m * self.context_dim_factor):
                raise ValueError(
                    f"context_dim_factor: {self.context_dim_factor} gives context widths int(factor * "
                    f"model_channels) * mult that differ from the denoiser's int(model_channels * mult * factor)"
                )

    @property
    def context_channels(self) -> int:
        return int(self.context_dim_factor * self.model_channels)

    @property
    def predictor_channels(self) -> int:
        return int(self.predictor_dim_factor * self.model_channels)


def norm_groups(channels: int, groups: int = 8) -> nn.GroupNorm:
    """The release's GroupNorm(8), with fewer groups where a small width is not divisible by 8."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def level_widths(in_channels: int, base: int, mults: Sequence[int]) -> list[tuple[int, int]]:
    """(input, output) widths of each level: channels -> base*m_0 -> base*m_1 -> ..."""
    widths = [in_channels, *(base * m for m in mults)]
    return list(zip(widths[:-1], widths[1:]))


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """The release's ``SinusoidalPosEmb``: [sin(t f_i), cos(t f_i)], f_i = 10000^(-i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


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
    """3x3 convolution, GroupNorm, LeakyReLU(0.2) (the release's ``Block``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = norm_groups(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class FrameResBlock(nn.Module):
    """Two ConvNormAct layers with a skip; the noise-level embedding (if any) is added between them."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int | None = None):
        super().__init__()
        self.block1 = ConvNormAct(in_channels, out_channels)
        self.emb_proj = nn.Linear(emb_channels, out_channels) if emb_channels else None
        self.block2 = ConvNormAct(out_channels, out_channels)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        h = self.block1(x)
        if self.emb_proj is not None:
            if emb is None:
                raise ValueError("FrameResBlock: this block is conditioned on the noise level; pass its embedding")
            h = h + self.emb_proj(F.leaky_relu(emb, 0.2))[:, :, None, None]
        return self.block2(h) + self.skip(x)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel (the release's ``LayerNorm``)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        # Half-precision inputs (mixed precision) are normalised in float32, as GroupNorm32 does.
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mean = torch.var_mean(xf, dim=1, unbiased=False, keepdim=True)
        return ((xf - mean) / (var + self.eps).sqrt() * self.weight + self.bias).type(x.dtype)


class LinearAttention(nn.Module):
    """Pre-norm residual linear attention over the pixels of a frame (Shen et al. 2021), as released: keys are
    softmax-normalised over positions, queries only scaled; cost linear in H*W. Not expressible with SDPA."""

    def __init__(self, channels: int, heads: int = 4, head_channels: int = 16):
        super().__init__()
        self.heads, self.scale = heads, head_channels**-0.5
        hidden = heads * head_channels
        self.norm = ChannelLayerNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * hidden, 1, bias=False)
        self.proj_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        q, k, v = (
            rearrange(part, "b (heads d) y x -> b heads d (y x)", heads=self.heads)
            for part in self.qkv(self.norm(x)).chunk(3, dim=1)
        )
        summary = torch.einsum("bhdn,bhen->bhde", k.softmax(dim=-1), v)  # (d x e) per head: keys pooled over pixels
        out = torch.einsum("bhde,bhdn->bhen", summary, q * self.scale)
        return x + self.proj_out(rearrange(out, "b heads e (y x) -> b (heads e) y x", y=h, x=w))


def downsample(channels: int) -> nn.Conv2d:
    """Stride-2 3x3 convolution: halves height and width."""
    return nn.Conv2d(channels, channels, 3, stride=2, padding=1)


def upsample(channels: int) -> nn.ConvTranspose2d:
    """Stride-2 4x4 transposed convolution: doubles height and width."""
    return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)


class NoiseLevelEmbedding(nn.Module):
    """The release's time MLP: sinusoidal features of the step, Linear-GELU-Linear back to the base width."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.linear_1 = nn.Linear(channels, 4 * channels)
        self.linear_2 = nn.Linear(4 * channels, channels)

    def forward(self, time: Tensor) -> Tensor:
        features = sinusoidal_embedding(time, self.channels).to(self.linear_1.weight.dtype)
        return self.linear_2(F.gelu(self.linear_1(features)))


class RecurrentLevel(nn.Module):
    """One encoder level of the recurrent networks: ResBlock, ConvGRU, then (but at the coarsest level) downsampling."""

    def __init__(self, in_channels: int, out_channels: int, last: bool):
        super().__init__()
        self.res_block = FrameResBlock(in_channels, out_channels)
        self.gru = ConvGRUCell(out_channels, out_channels)
        self.downsample = nn.Identity() if last else downsample(out_channels)

    def forward(self, x: Tensor, hidden: Tensor | None) -> tuple[Tensor, Tensor]:
        """Returns (the GRU state of this level, the input of the next level)."""
        state = self.gru(self.res_block(x), hidden)
        return state, self.downsample(state)


def recurrent_levels(channels: int, base: int, mults: Sequence[int]) -> nn.ModuleList:
    widths = level_widths(channels, base, mults)
    return nn.ModuleList(RecurrentLevel(cin, cout, i == len(widths) - 1) for i, (cin, cout) in enumerate(widths))


# ---------------------------------------------------------------------------------------------- recurrent networks
class FramePredictor(nn.Module):
    """mu_t = f(x_{<t}), the release's ``HistoryNet`` in "residual" mode."""

    def __init__(self, channels: int, base: int, mults: Sequence[int]):
        super().__init__()
        widths = level_widths(channels, base, mults)
        self.levels = recurrent_levels(channels, base, mults)
        # Decoder stage for level l = L-1 .. 1: [features (+ GRU state of level l)] -> ResBlock -> width of l-1 -> up.
        self.up_levels = nn.ModuleList()
        for level in range(len(widths) - 1, 0, -1):
            width, finer = widths[level][1], widths[level - 1][1]
            merged = width if level == len(widths) - 1 else 2 * width
            stage = {"res_block": FrameResBlock(merged, finer), "upsample": upsample(finer)}
            self.up_levels.append(nn.ModuleDict(stage))
        self.to_frame = nn.Conv2d(widths[0][1], channels, 3, padding=1)

    def forward(self, frame: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """Consume frame x_{t-1} (B, C, H, W); return mu_t and the new GRU states."""
        hidden = hidden or [None] * len(self.levels)
        states, x = [], frame
        for level, block in enumerate(self.levels):
            state, x = block(x, hidden[level])
            states.append(state)
        for i, up in enumerate(self.up_levels):
            if i > 0:
                x = torch.cat([x, states[len(states) - 1 - i]], dim=1)
            x = up["upsample"](up["res_block"](x))
        return self.to_frame(x).clamp(-1, 1), states


class ContextEncoder(nn.Module):
    """c_t = g(x_{<t}), the release's ``CondNet``: the GRU states of every level are the context."""

    def __init__(self, channels: int, base: int, mults: Sequence[int]):
        super().__init__()
        self.levels = recurrent_levels(channels, base, mults)

    def forward(self, frame: Tensor, hidden: Hidden | None = None) -> tuple[list[Tensor], Hidden]:
        hidden = hidden or [None] * len(self.levels)
        states, x = [], frame
        for level, block in enumerate(self.levels):
            state, x = block(x, hidden[level])
            states.append(state)
        return states, states


# ----------------------------------------------------------------------------------------------------- the denoiser
class DenoiserDownLevel(nn.Module):
    def __init__(self, cin: int, cout: int, context_width: int, emb: int, attention: bool, last: bool):
        super().__init__()
        self.res_block = FrameResBlock(cin, cout, emb)
        self.context_res_block = FrameResBlock(cout + context_width, cout, emb)
        self.attention = LinearAttention(cout) if attention else nn.Identity()
        self.downsample = nn.Identity() if last else downsample(cout)


class DenoiserUpLevel(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, attention: bool):
        super().__init__()
        self.res_block = FrameResBlock(cin, cout, emb)
        self.res_block2 = FrameResBlock(cout, cout, emb)
        self.attention = LinearAttention(cout) if attention else nn.Identity()
        self.upsample = upsample(cout)


class DenoiserHead(nn.Module):
    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.block = ConvNormAct(channels, channels)
        self.conv = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.block(x))


class ResidualUNet(nn.Module):
    """eps_theta(y_n, n, c) on single frames (the release's ``Unet``)."""

    def __init__(self, channels: int, config: RVDNetworkConfig):
        super().__init__()
        base, mults = config.model_channels, config.channel_mult
        widths = level_widths(channels, base, mults)
        self.time_scale = config.time_scale
        self.time_embed = NoiseLevelEmbedding(base)
        self.down_levels = nn.ModuleList(
            DenoiserDownLevel(
                cin, cout, int(cout * config.context_dim_factor), base, config.attention, last=i == len(widths) - 1
            )
            for i, (cin, cout) in enumerate(widths)
        )
        mid = widths[-1][1]
        self.mid_block1 = FrameResBlock(mid, mid, base)
        self.mid_attention = LinearAttention(mid) if config.attention else nn.Identity()
        self.mid_block2 = FrameResBlock(mid, mid, base)
        self.up_levels = nn.ModuleList(
            DenoiserUpLevel(2 * widths[level][1], widths[level - 1][1], base, config.attention)
            for level in range(len(widths) - 1, 0, -1)
        )
        self.out = DenoiserHead(widths[0][1], channels)

    def forward(self, y: Tensor, time: Tensor, context: Sequence[Tensor]) -> Tensor:
        """y (N, C, H, W) noisy residuals, time (N,) network time, context[l] (N, C_l, H_l, W_l)."""
        if len(context) != len(self.down_levels):
            raise ValueError(f"context: expected {len(self.down_levels)} levels of features, got {len(context)}")
        emb = self.time_embed(time * self.time_scale)
        skips, x = [], y
        for level, c in zip(self.down_levels, context):
            x = level.res_block(x, emb)
            x = level.attention(level.context_res_block(torch.cat([x, c], dim=1), emb))
            skips.append(x)
            x = level.downsample(x)
        x = self.mid_block2(self.mid_attention(self.mid_block1(x, emb)), emb)
        for level in self.up_levels:
            x = level.res_block(torch.cat([x, skips.pop()], dim=1), emb)
            x = level.upsample(level.attention(level.res_block2(x, emb)))
        return self.out(x)


# ----------------------------------------------------------------------------------------------------- the assembly
class RVDNetwork(nn.Module):
    """Predictor, context encoder and residual denoiser, behind the framework's network call."""

    def __init__(self, config: RVDNetworkConfig, *, image_size: int, channels: int = 3):
        super().__init__()
        check_shape_arguments(image_size=image_size, channels=channels)
        check_image_size(image_size, config.channel_mult)
        try:
            check_image_size(image_size, config.predictor_mult)
        except ValueError as error:
            raise ValueError(str(error).replace("channel_mult", "predictor_mult")) from None
        self.config, self.image_size, self.channels = config, image_size, channels
        self.predictor = FramePredictor(channels, config.predictor_channels, config.predictor_mult)
        self.context_encoder = ContextEncoder(channels, config.context_channels, config.channel_mult)
        self.denoiser = ResidualUNet(channels, config)

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
        context = (
            [torch.stack([torch.zeros_like(per_step[0]), *per_step], dim=1) for per_step in zip(*contexts)]
            if contexts
            else []
        )
        return mu, context

    # ---- the denoiser, as the framework calls it
    def forward(self, z: Tensor, time: Tensor, mask: FrameMask | None = None, *, context: Sequence[Tensor]) -> Tensor:
        """eps_hat for the latent frames of (B, T, C, H, W) noisy residuals ``z``; zero elsewhere."""
        batch, frames, c, h, w = z.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"image_size: the network was built for {self.image_size}x{self.image_size}, got {h}x{w}")
        if c != self.channels:
            raise ValueError(f"channels: the network takes {self.channels} channels, got {c}")
        selected = (
            mask.latent.to(z.device)
            if mask is not None
            else torch.ones(batch, frames, dtype=torch.bool, device=z.device)
        )
        out = torch.zeros_like(z)
        if not selected.any():
            return out
        frame_time = time.reshape(batch, 1).expand(batch, frames)[selected]
        # .to: under mixed precision the denoiser's output is half precision and z is not.
        out[selected] = self.denoiser(z[selected], frame_time, [c[selected] for c in context]).to(out.dtype)
        return out
