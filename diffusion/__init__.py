"""The shared diffusion core: schedules, parameterizations, frame masks, the denoiser, samplers and schemes.

Every method in the framework calls this package; none carries its own copy of the diffusion math.
"""

from diffusion.denoiser import Denoiser
from diffusion.masks import TASKS, FrameMask, RandomFrameMasks, default_frame_indices, observed_for_task, task_mask
from diffusion.samplers import SAMPLERS, get_sampler, sample, sample_ddim, sample_ddpm, sample_predictor_corrector
from diffusion.schedules import (
    SCHEDULES,
    CosineLogSNRSchedule,
    DiscreteSchedule,
    NoiseSchedule,
    build_schedule,
)
from diffusion.schemes import (
    CONTIGUOUS_SCHEMES,
    SCHEMES,
    Stage,
    autoregressive,
    build_stages,
    check_scheme_supported,
    get_scheme,
    hierarchy_2,
    hierarchy_3,
    long_range,
    run_stages,
)

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
    "sample_predictor_corrector",
    "SCHEDULES",
    "CosineLogSNRSchedule",
    "DiscreteSchedule",
    "NoiseSchedule",
    "build_schedule",
    "CONTIGUOUS_SCHEMES",
    "SCHEMES",
    "build_stages",
    "check_scheme_supported",
    "hierarchy_2",
    "hierarchy_3",
    "long_range",
    "Stage",
    "autoregressive",
    "get_scheme",
    "run_stages",
]
