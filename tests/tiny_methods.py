"""Seconds-sized modules of the four methods, with random (not zero-initialised) weights, and batches for them: for the
tests that run every method under another precision or compiled."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from video_diffusion_lab.groups import ClipShape, DiffusionConfig, EMAConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules import FDM, RVD, VDM, RaMViD
from video_diffusion_lab.networks import FDMUNetConfig, RaMViDUNetConfig, RVDNetworkConfig, VDMUNetConfig

METHODS = ("ramvid", "fdm", "vdm", "rvd")
FRAMES, SIZE = 4, 8


def randomise(module: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Random weights everywhere, so that zero-initialised output layers do not make every output 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module


def tiny_module(method: str, seed: int = 0, **network: object):
    """A tiny module of ``method``: 4-frame 8x8 clips, 2-level networks with attention, 2 sampling steps."""
    torch.manual_seed(seed)
    clip = ClipShape(num_frames=FRAMES, image_size=SIZE)
    common = dict(clip=clip, task=TaskConfig(num_given=2), ema=EMAConfig(decay=0.5))
    unet = dict(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,), **network)
    if method == "ramvid":
        module = RaMViD(
            network=RaMViDUNetConfig(num_heads=2, **unet),
            diffusion=DiffusionConfig(steps=50),
            sampling=SamplingConfig(sampler="ddim", steps=2),
            max_given=2,
            **common,
        )
    elif method == "fdm":
        module = FDM(
            network=FDMUNetConfig(num_heads=2, **unet),
            diffusion=DiffusionConfig(steps=50),
            sampling=SamplingConfig(sampler="ddpm", steps=2, gamma=1.0),
            **common,
        )
    elif method == "vdm":
        module = VDM(
            network=VDMUNetConfig(attention_head_dim=4, dropout=0.0, **unet),
            sampling=SamplingConfig(sampler="ddpm", steps=2),
            num_image_frames=1,
            conditioning_method="reconstruction",
            **common,
        )
    elif method == "rvd":
        module = RVD(
            network=RVDNetworkConfig(model_channels=8, channel_mult=(1, 2), predictor_mult=(1, 2), **network),
            diffusion=DiffusionConfig(schedule="cosine", steps=50),
            sampling=SamplingConfig(sampler="ddim", steps=2),
            **{**common, "ema": EMAConfig(decay=0.5, evaluate="raw")},
        )
    else:
        raise ValueError(method)
    randomise(module.network, seed)
    module.ema.copy_from(module.network)
    return module


def tiny_batch(batch: int = 2, frames: int = FRAMES + 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """Clips in [-1, 1] with their frame indices and data set indices (FDM trains on the longer videos)."""
    video = torch.rand(batch, frames, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    frame_indices = torch.arange(frames).expand(batch, frames).clone()
    return {"video": video, "frame_indices": frame_indices, "index": torch.arange(batch)}


def tiny_loader(method: str, batches: int = 2) -> DataLoader:
    """``batches`` batches of 2 clips: whole 6-frame videos for FDM, 4-frame clips for the others."""
    frames = FRAMES + 2 if method == "fdm" else FRAMES
    items = []
    for seed in range(batches):
        b = tiny_batch(2, frames, seed=seed + 1)
        items += [{k: v[i] for k, v in b.items()} for i in range(2)]
    for i, item in enumerate(items):
        item["index"] = torch.tensor(i)
    return DataLoader(items, batch_size=2)
