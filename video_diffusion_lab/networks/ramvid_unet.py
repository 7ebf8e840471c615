"""RaMViD's network (Höppe et al. 2022): improved-diffusion's U-Net on whole clips, as released
(Tobi-r9/RaMViD, ``diffusion_openai/unet.py`` with ``dims=3``).

- Features are (B, C, T, H, W); every convolution is 3x3x3, including the stride-(1, 2, 2) downsampling and the
  convolution after each nearest-neighbour upsampling, so convolutions mix neighbouring frames at every level.
- GroupNorm statistics are taken over the whole clip (all frames) per group of channels.
- Attention at the attention resolutions and in the middle runs over all T*H*W space-time positions.
- The diffusion time enters every residual block (a scale-shift of its second norm by default).
- Given frames enter clean in their slots, with no extra channel: the network sees the frame mask only through the
  data, so ``mask`` is accepted and ignored.

Departures from the released code: ``scale_time_dim`` other than 0 (downsampling time as well) is not offered; every
released RaMViD model uses 0. Narrow widths that are not multiples of 32 use fewer GroupNorm groups (the released code
cannot build them). ``class_cond`` (ImageNet labels) is not offered; no released video model uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from einops import rearrange
from torch import Tensor, nn

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.networks.blocks import (
    Downsample,
    ResBlock,
    SelfAttention,
    UNetContext,
    Upsample,
    check_heads,
    conv3d,
    group_norm,
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
class RaMViDUNetConfig:
    """RaMViD's U-Net hyper-parameters (the released flags: num_channels, num_res_blocks, attention_resolutions, ...).

    Defaults are the released BAIR / Kinetics-600 models at 64x64 (Kinetics-600 uses ``num_res_blocks=3``).
    ``attention_resolutions`` are resolutions in pixels, as the released ``--attention_resolutions "16,8"`` flag.
    """

    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    num_heads_upsample: int | None = None  # heads of the decoder's attention; None = num_heads (released: -1)
    dropout: float = 0.0
    use_scale_shift_norm: bool = True
    checkpoint_levels: tuple[int, ...] = ()  # U-Net levels with activation checkpointing (0 = finest); () = off

    def __post_init__(self) -> None:
        normalise_sequences(self)
        check_positive(self, "model_channels", "num_res_blocks", "num_heads")
        check_multipliers(self, "channel_mult")
        check_dropout(self)
        if self.num_heads_upsample is not None:
            check_positive(self, "num_heads_upsample")


class RaMViDUNet(UNet):
    def __init__(self, config: RaMViDUNetConfig, *, image_size: int, channels: int = 3):
        check_shape_arguments(image_size=image_size, channels=channels)
        emb = 4 * config.model_channels
        heads_up = config.num_heads_upsample or config.num_heads

        def res_block(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb, cout, conv3d, group_norm, config.dropout, config.use_scale_shift_norm)

        def attention(ch: int, in_decoder: bool) -> SelfAttention:
            heads, field = (heads_up, "num_heads_upsample") if in_decoder else (config.num_heads, "num_heads")
            check_heads(ch, heads, field)
            return SelfAttention(ch, heads, qkv_layout="heads three d")

        blocks = UNetBlocks(
            conv=conv3d,
            norm=group_norm,
            res_block=res_block,
            attention=attention,
            downsample=lambda ch: Downsample(nn.Conv3d(ch, ch, 3, stride=(1, 2, 2), padding=1)),
            upsample=lambda ch: Upsample(conv3d(ch, ch)),
        )
        super().__init__(
            blocks,
            image_size=image_size,
            in_channels=channels,
            out_channels=channels,
            model_channels=config.model_channels,
            channel_mult=config.channel_mult,
            num_res_blocks=config.num_res_blocks,
            attention_resolutions=config.attention_resolutions,
            checkpoint_levels=config.checkpoint_levels,
        )
        self.config, self.channels = config, channels

    def forward(self, z: Tensor, time: Tensor, mask: FrameMask | None = None) -> Tensor:
        """z: (B, T, C, H, W) with given frames clean; time: (B,) network time. Returns eps (or x0 / v) of z's shape."""
        _, _, c, h, w = z.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"image_size: the network was built for {self.image_size}x{self.image_size}, got {h}x{w}")
        if c != self.channels:
            raise ValueError(f"channels: the network takes {self.channels} channels, got {c}")
        ctx = UNetContext(emb=self.time_embed(time))
        out = self.unet_features(rearrange(z, "b t c h w -> b c t h w"), ctx)
        return rearrange(out, "b c t h w -> b t c h w")
