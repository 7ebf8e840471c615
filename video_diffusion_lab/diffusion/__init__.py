"""The shared diffusion core: schedules, parameterizations, frame masks, the denoiser, samplers, schemes and the
video sampler that runs them (one pass, a long video, N samples per clip).

Every method in the framework calls this package; none carries its own copy of the diffusion math.
"""

from video_diffusion_lab.diffusion.denoiser import Denoiser, MaskedDenoiser
from video_diffusion_lab.diffusion.masks import (
    TASKS,
    FrameMask,
    RandomFrameMasks,
    default_frame_indices,
    observed_for_task,
    task_mask,
)
from video_diffusion_lab.diffusion.noise import NoiseSource, randn_like, row_seeds
from video_diffusion_lab.diffusion.samplers import (
    SAMPLERS,
    get_sampler,
    network_calls,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_3m,
    sample_dpmpp_3m_sde,
    sample_heun,
    sample_predictor_corrector,
    sampling_options,
)
from video_diffusion_lab.diffusion.schedules import (
    GRIDS,
    SCHEDULES,
    CosineLogSNRSchedule,
    DiscreteSchedule,
    NoiseSchedule,
    build_schedule,
    get_grid,
)
from video_diffusion_lab.diffusion.schemes import (
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
from video_diffusion_lab.diffusion.video_sampler import DenoiserFactory, VideoSampler, unguided

__all__ = [
    "Denoiser",
    "MaskedDenoiser",
    "NoiseSource",
    "randn_like",
    "row_seeds",
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
    "sample_heun",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_dpmpp_3m",
    "sample_dpmpp_3m_sde",
    "network_calls",
    "sampling_options",
    "GRIDS",
    "get_grid",
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
    "DenoiserFactory",
    "VideoSampler",
    "unguided",
]
