"""The shared diffusion core: schedules, parameterizations, frame masks, the denoiser, samplers and schemes.

Every method in the framework calls this package; none carries its own copy of the diffusion math.
"""

from diffusion.denoiser import Denoiser
from diffusion.masks import TASKS, FrameMask, RandomFrameMasks, default_frame_indices, observed_for_task, task_mask
from diffusion.samplers import SAMPLERS, get_sampler, sample, sample_ddim, sample_ddpm
from diffusion.schedules import (
    SCHEDULES,
    CosineLogSNRSchedule,
    DiscreteSchedule,
    NoiseSchedule,
    build_schedule,
)
from diffusion.schemes import SCHEMES, Stage, autoregressive, get_scheme, run_stages

__all__ = [
    "Denoiser",
    "TASKS",
    "FrameMask",
    "RandomFrameMasks",
    "default_frame_indices",
    "observed_for_task",
    "task_mask",
    "SAMPLERS",
    "get_sampler",
    "sample",
    "sample_ddim",
    "sample_ddpm",
    "SCHEDULES",
    "CosineLogSNRSchedule",
    "DiscreteSchedule",
    "NoiseSchedule",
    "build_schedule",
    "SCHEMES",
    "Stage",
    "autoregressive",
    "get_scheme",
    "run_stages",
]
