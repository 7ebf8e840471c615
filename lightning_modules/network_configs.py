"""TEMPORARY: network hyper-parameter groups over the current network constructors, until networks/ provides its
own config dataclasses (issue #13 rework). Same names and call form as the coming ``networks`` API:
``RaMViDUNet(config, image_size=..., channels=...)``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from networks import fdm_unet, ramvid_unet, rvd, vdm_unet


@dataclass(frozen=True)
class RaMViDUNetConfig:
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    dropout: float = 0.0


@dataclass(frozen=True)
class FDMUNetConfig:
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 3, 4)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    dropout: float = 0.0


@dataclass(frozen=True)
class VDMUNetConfig:
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    attention_head_dim: int = 64
    dropout: float = 0.1
    max_relative_distance: int = 32
    num_classes: int | None = None
    cond_dim: int | None = None
    frame_conditioning: bool = False


@dataclass(frozen=True)
class RVDNetworkConfig:
    model_channels: int = 48
    channel_mult: tuple[int, ...] = (1, 2, 4, 8)
    predictor_mult: tuple[int, ...] = (1, 2, 2, 4)
    attention: bool = True


torch.serialization.add_safe_globals([RaMViDUNetConfig, FDMUNetConfig, VDMUNetConfig, RVDNetworkConfig])


def RaMViDUNet(config: RaMViDUNetConfig, *, image_size: int, channels: int):
    return ramvid_unet.RaMViDUNet(image_size=image_size, in_channels=channels, **asdict(config))


def FDMUNet(config: FDMUNetConfig, *, image_size: int, channels: int, max_frames: int):
    return fdm_unet.FDMUNet(image_size=image_size, in_channels=channels, max_frames=max_frames, **asdict(config))


def VDMUNet(config: VDMUNetConfig, *, image_size: int, channels: int):
    return vdm_unet.VDMUNet(image_size=image_size, in_channels=channels, **asdict(config))


def RVDNetwork(config: RVDNetworkConfig, *, image_size: int, channels: int):
    return rvd.RVDNetwork(image_size=image_size, channels=channels, **asdict(config))
