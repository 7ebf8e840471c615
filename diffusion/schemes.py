"""Long-video sampling schemes: which frames each sampling pass generates, given which.

A scheme is a pure function of (video length T, frames per pass K, frames generated per stage, indices given at the
start) returning the ordered stages, each a ``Stage(observed, latent)`` of absolute frame indices with at most K
frames in all. ``run_stages`` drives any masked sampler through them, writing each stage's frames into the video,
which stays where it is (off the accelerator); only a stage's frames are moved to the model's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from diffusion.masks import FrameMask


@dataclass(frozen=True)
class Stage:
    observed: tuple[int, ...]
    latent: tuple[int, ...]

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(sorted(self.observed + self.latent))


def check_scheme_arguments(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> None:
    if frames_per_stage < 1 or frames_per_stage >= frames_per_pass:
        raise ValueError(
            f"frames_per_stage: must be in [1, frames_per_pass) = [1, {frames_per_pass}), got {frames_per_stage}"
        )
    if not 0 <= num_given < video_length:
        raise ValueError(f"num_given: must be in [0, video_length) = [0, {video_length}), got {num_given}")


def autoregressive(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> list[Stage]:
    """Autoreg: each stage generates the next ``frames_per_stage`` frames given the most recent known ones."""
    check_scheme_arguments(video_length, frames_per_pass, frames_per_stage, num_given)
    stages, known = [], num_given
    while known < video_length:
        latent = tuple(range(known, min(known + frames_per_stage, video_length)))
        context = frames_per_pass - len(latent)
        observed = tuple(range(max(0, known - context), known))
        stages.append(Stage(observed, latent))
        known = latent[-1] + 1
    return stages


SCHEMES: dict[str, Callable[[int, int, int, int], list[Stage]]] = {"autoreg": autoregressive}

# Schemes whose every stage is a contiguous window of frames; networks that assume evenly spaced, contiguous
# frames (3D convolutions over time) can run only these.
CONTIGUOUS_SCHEMES = {"autoreg"}


def get_scheme(name: str) -> Callable[[int, int, int, int], list[Stage]]:
    if name not in SCHEMES:
        raise ValueError(f"scheme: unknown sampling scheme {name!r}; choose one of {tuple(SCHEMES)}")
    return SCHEMES[name]


SampleFn = Callable[[Tensor, FrameMask], Tensor]


def run_stages(
    video: Tensor,
    stages: Sequence[Stage],
    sample_fn: SampleFn,
    frames_per_pass: int,
    device: torch.device | str,
    contiguous_only: bool = False,
) -> Tensor:
    """Fill ``video`` (B, T, C, H, W, on any device) stage by stage and return it.

    ``sample_fn(given, mask)`` samples one pass of at most ``frames_per_pass`` frames on ``device``. Stages are padded
    to ``frames_per_pass`` slots only when a network needs a fixed K: here each pass holds exactly the stage's frames.
    """
    batch = video.shape[0]
    for stage in stages:
        indices = stage.indices
        if len(indices) > frames_per_pass:
            raise ValueError(f"a stage holds {len(indices)} frames, more than frames_per_pass={frames_per_pass}")
        if contiguous_only and indices != tuple(range(indices[0], indices[0] + len(indices))):
            raise ValueError("scheme: this model runs only schemes whose stages are contiguous windows (autoreg)")
        index_tensor = torch.tensor(indices)
        observed = torch.tensor([i in stage.observed for i in indices]).expand(batch, -1)
        frame_indices = index_tensor.expand(batch, -1)
        mask = FrameMask.from_observed(observed, frame_indices).to(device)
        given = video[:, index_tensor].to(device)
        window = sample_fn(given, mask)
        video[:, index_tensor] = window.to(video.device, video.dtype)
    return video
