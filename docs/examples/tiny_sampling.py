"""Sampling without Lightning (docs/tutorial_new_method.md): the tutorial's network with the EMA weights of a
checkpoint, a ``Denoiser`` and a ``VideoSampler`` continue the first frames of moving-shapes videos to longer videos.

    PYTHONPATH=docs/examples python docs/examples/tiny_sampling.py runs/tiny_method/checkpoints/last.ckpt --frames 24
"""

from __future__ import annotations

# --8<-- [start:sampling]
import argparse
from typing import Any

import torch
from tiny_method import TinyVideoNet
from torch import Tensor

from video_diffusion_lab.datamodules import MovingShapesDataset
from video_diffusion_lab.diffusion import Denoiser, NoiseSource, VideoSampler, build_schedule, task_mask, unguided
from video_diffusion_lab.groups import RolloutConfig, SamplingConfig

SHAPES = ("image_size", "channels", "num_objects", "size_range", "speed_range", "seed", "motion", "offscreen")


def load_network(checkpoint: str) -> tuple[TinyVideoNet, dict[str, Any], dict[str, Any]]:
    """The EMA weights of a ``TinyPredictor`` checkpoint in a plain ``TinyVideoNet``, the model's settings and the
    data's (a checkpoint written by ``vdiff fit`` holds both as plain values)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model, data = saved["hyper_parameters"], saved["datamodule_hyper_parameters"]
    network = TinyVideoNet(model["clip"]["channels"], model["width"], model["num_blocks"])
    ema = {k.removeprefix("ema.module."): v for k, v in saved["state_dict"].items() if k.startswith("ema.module.")}
    network.load_state_dict(ema)
    return network.eval(), model, data


def continue_videos(checkpoint: str, frames: int, clips: int = 2, sampler: str = "dpmpp_2m", steps: int = 10) -> Tensor:
    """``clips`` test videos of ``frames`` frames: the run's given frames, the rest generated pass by pass."""
    network, model, data = load_network(checkpoint)
    test_videos = MovingShapesDataset("test", clips, num_frames=frames, **{k: data[k] for k in SHAPES})
    given = torch.stack([test_videos[i]["video"] for i in range(clips)])  # (B, T, C, H, W) in [-1, 1]

    diffusion = model["diffusion"]
    denoiser = Denoiser(network, build_schedule(diffusion["schedule"], diffusion["steps"]), diffusion["prediction"])
    video_sampler = VideoSampler(
        unguided(denoiser),
        SamplingConfig(sampler=sampler, steps=steps),
        RolloutConfig(scheme="autoreg"),
        frames_per_pass=model["clip"]["num_frames"],
        contiguous_frames_only=True,
    )
    noise = NoiseSource.for_clips(seed=0, indices=range(clips))  # one noise stream per clip
    with torch.no_grad():
        mask = task_mask("prediction", clips, frames, model["task"]["num_given"])  # the run's given frames
        return video_sampler.sample(given, mask, generator=noise)


# --8<-- [end:sampling]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a checkpoint of the tutorial's method (runs/tiny_method/checkpoints/...)")
    parser.add_argument("--frames", type=int, default=24, help="frames of each video, given ones included")
    args = parser.parse_args(argv)
    video = continue_videos(args.checkpoint, args.frames)
    print("sampled", tuple(video.shape), "in", f"[{video.min():.2f}, {video.max():.2f}]")


if __name__ == "__main__":
    main()
