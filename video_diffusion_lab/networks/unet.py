"""The improved-diffusion U-Net skeleton, once, for RaMViD, FDM and VDM.

Each paper's network is this skeleton assembled from its own blocks (``UNetBlocks``): its convolution (3x3x3 on
clips for RaMViD, 3x3 per frame for FDM and VDM), its norm (GroupNorm over each item of its feature batch: a whole
clip for RaMViD, one frame for FDM and VDM), its residual and attention blocks and its resamplers. The skeleton lays
the blocks out exactly as improved-diffusion does, so a released checkpoint's ``input_blocks.<i>.<j>`` /
``middle_block.<j>`` / ``output_blocks.<i>.<j>`` indices are ours too and an official layout is one table of renames
inside the blocks (``networks.official``):

    input_blocks[0]           input convolution
    input_blocks[...]         per level: num_res_blocks x (ResBlock [+ attention]), then a Downsample (not after
                              the last level)
    middle_block              ResBlock, attention, ResBlock
    output_blocks[...]        per level, coarsest first: (num_res_blocks + 1) x (ResBlock on [h, skip] [+ attention]),
                              the last of each level but the finest followed by an Upsample
    out                       GroupNorm, SiLU, convolution

Attention sits at the levels whose resolution (image_size / 2^level) is in ``attention_resolutions``, and always in the
middle.

Activation checkpointing (``checkpoint_levels``, a project option, off by default): the blocks of the listed levels
(0 = the finest; a level's encoder blocks with its Downsample, its decoder blocks with their Upsample; the middle
block belongs to the coarsest level) keep only their inputs in the forward pass and recompute their activations in
the backward pass. The function, the gradients and the state dict are unchanged; a checkpointed level costs one more
forward pass of its blocks per training step. For networks whose activations do not fit (VDM's 1.17B Kinetics model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from video_diffusion_lab.networks.blocks import (
    BlockSequence,
    ConvFactory,
    NormFactory,
    OutputHead,
    TimeEmbedding,
    UNetContext,
    check_image_size,
)


@dataclass(frozen=True)
class UNetBlocks:
    """What a paper supplies to the skeleton."""

    conv: ConvFactory  # (in, out, kernel_size=3): the input and output convolutions
    norm: NormFactory  # channels -> the output head's norm
    res_block: Callable[[int, int], nn.Module]  # (in, out) -> a ContextBlock
    attention: Callable[[int, bool], nn.Module]  # (channels, in_decoder) -> an attention block
    downsample: Callable[[int], nn.Module]
    upsample: Callable[[int], nn.Module]


def level_resolutions(image_size: int, channel_mult: tuple[int, ...]) -> list[int]:
    return [image_size // 2**level for level in range(len(channel_mult))]


def check_checkpoint_levels(channel_mult: tuple[int, ...], checkpoint_levels: tuple[int, ...]) -> None:
    levels = range(len(channel_mult))
    unknown = [level for level in checkpoint_levels if level not in levels]
    if unknown:
        raise ValueError(
            f"checkpoint_levels: {unknown} are not levels of this U-Net (its levels are {list(levels)} for "
            f"channel_mult={tuple(channel_mult)}; 0 is the finest)"
        )


def check_attention_resolutions(
    image_size: int, channel_mult: tuple[int, ...], attention_resolutions: tuple[int, ...]
) -> None:
    levels = level_resolutions(image_size, channel_mult)
    unknown = [r for r in attention_resolutions if r not in levels]
    if unknown:
        raise ValueError(
            f"attention_resolutions: {unknown} are not resolutions of this U-Net (its levels are {levels} for "
            f"image_size={image_size}, channel_mult={tuple(channel_mult)})"
        )


class UNet(nn.Module):
    """The skeleton; a paper's network subclasses it, passing its blocks, and runs ``unet_features`` in forward."""

    def __init__(
        self,
        blocks: UNetBlocks,
        *,
        image_size: int,
        in_channels: int,
        out_channels: int,
        model_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        attention_resolutions: tuple[int, ...],
        checkpoint_levels: tuple[int, ...] = (),
        emb_channels: int | None = None,
    ):
        super().__init__()
        check_image_size(image_size, channel_mult)
        check_attention_resolutions(image_size, channel_mult, attention_resolutions)
        check_checkpoint_levels(channel_mult, checkpoint_levels)
        self.image_size = image_size
        self.time_embed = TimeEmbedding(model_channels, emb_channels)  # default width: 4 x model_channels

        def block(level: int, *layers: nn.Module) -> BlockSequence:
            sequence = BlockSequence(*layers)
            sequence.activation_checkpointing = level in checkpoint_levels
            return sequence

        self.input_blocks = nn.ModuleList([block(0, blocks.conv(in_channels, model_channels))])
        skip_channels, ch, resolution = [model_channels], model_channels, image_size
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [blocks.res_block(ch, mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers.append(blocks.attention(ch, False))
                self.input_blocks.append(block(level, *layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(block(level, blocks.downsample(ch)))
                skip_channels.append(ch)
                resolution //= 2

        coarsest = len(channel_mult) - 1
        self.middle_block = block(
            coarsest, blocks.res_block(ch, ch), blocks.attention(ch, False), blocks.res_block(ch, ch)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [blocks.res_block(ch + skip_channels.pop(), mult * model_channels)]
                ch = mult * model_channels
                if resolution in attention_resolutions:
                    layers.append(blocks.attention(ch, True))
                if level and i == num_res_blocks:
                    layers.append(blocks.upsample(ch))
                    resolution *= 2
                self.output_blocks.append(block(level, *layers))

        self.out = OutputHead(ch, out_channels, blocks.conv, blocks.norm)

    def unet_features(self, h: Tensor, ctx: UNetContext) -> Tensor:
        """Input features -> output of the last convolution, in the paper's feature layout."""
        skips = []
        for block in self.input_blocks:
            h = block(h, ctx)
            skips.append(h)
        h = self.middle_block(h, ctx)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), ctx)
        return self.out(h)
