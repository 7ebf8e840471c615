"""RaMViD's network (Höppe et al. 2022): improved-diffusion's U-Net with 3x3x3 convolutions.

Time is never downsampled; attention at the low resolutions runs over all space-time positions; the diffusion time
enters every residual block as a scale-shift of its normalisation. Given frames enter clean, in place of the noisy
ones, with no extra channel: the network sees the frame mask only through the data.
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from diffusion.masks import FrameMask
from networks.blocks import (
    Downsample,
    ResBlock,
    SpatioTemporalAttention,
    TimeEmbedding,
    TimestepSequential,
    Upsample,
    check_image_size,
    group_norm,
    video_conv,
    zero_module,
)


class RaMViDUNet(nn.Module):
    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16, 8),
        num_heads: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_image_size(image_size, channel_mult)
        emb = 4 * model_channels
        self.time_embed = TimeEmbedding(model_channels)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb, cout, dropout=dropout, temporal_kernel=3)

        self.input_blocks = nn.ModuleList([TimestepSequential(video_conv(in_channels, model_channels))])
        skip_channels, ch, resolution = [model_channels], model_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers.append(SpatioTemporalAttention(ch, num_heads))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skip_channels.append(ch)
                resolution //= 2

        self.middle_block = TimestepSequential(res(ch, ch), SpatioTemporalAttention(ch, num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers.append(SpatioTemporalAttention(ch, num_heads))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    resolution *= 2
                self.output_blocks.append(TimestepSequential(*layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_module(video_conv(ch, in_channels)))

    def forward(self, z: Tensor, time: Tensor, mask: FrameMask | None = None) -> Tensor:
        """z: (B, T, C, H, W) with given frames clean; time: (B,) network time. Returns eps (or x0/v) of z's shape."""
        emb = self.time_embed(time)
        h = rearrange(z, "b t c h w -> b c t h w")
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return rearrange(self.out(h), "b c t h w -> b t c h w")
