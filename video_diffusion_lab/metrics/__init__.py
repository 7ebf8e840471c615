"""Evaluation metrics: FVD, CRPS, LPIPS and per-frame PSNR/SSIM, all DDP-exact torchmetrics.

FVD comes with its protocol record (``FrechetVideoDistance.describe``, ``protocol.VideoEvaluation.fvd_record``) and
a disk cache of real clips' features (``fvd_cache``).

Pretrained networks (I3D, AlexNet/LPIPS) are read from local files only; see
`metrics.weights` for where they are looked up and how to obtain them.
"""

from .baselines import copy_last_observed
from .carla import CARLASpeedMetrics, carla_speed_metrics, speed_estimates, wasserstein_1d
from .crps import CRPS, crps_from_samples
from .frame_quality import FrameQuality, frame_psnr, frame_ssim, per_video_scores
from .frechet import frechet_distance, gaussian_from_sums, sqrtm_psd, trace_sqrt_product
from .fvd import FrechetVideoDistance, preprocess_styleganv, preprocess_tats
from .fvd_cache import RealFeatureCache, clip_digests
from .i3d import InceptionI3d, load_i3d_state_dict
from .lpips import LPIPS, LearnedPerceptualVideoSimilarity
from .weights import (
    CACHE_ENV_VAR,
    I3D_STATE_DICT,
    I3D_TORCHSCRIPT,
    LPIPS_LINEAR,
    TORCHVISION_ALEXNET,
    WeightSpec,
    default_cache_dir,
    describe_weights_file,
    file_sha256,
    resolve_spec,
    resolve_weights,
)

__all__ = [
    "CACHE_ENV_VAR",
    "CRPS",
    "FrameQuality",
    "FrechetVideoDistance",
    "I3D_STATE_DICT",
    "I3D_TORCHSCRIPT",
    "InceptionI3d",
    "LPIPS",
    "LPIPS_LINEAR",
    "LearnedPerceptualVideoSimilarity",
    "RealFeatureCache",
    "TORCHVISION_ALEXNET",
    "WeightSpec",
    "copy_last_observed",
    "CARLASpeedMetrics",
    "carla_speed_metrics",
    "speed_estimates",
    "wasserstein_1d",
    "clip_digests",
    "crps_from_samples",
    "default_cache_dir",
    "describe_weights_file",
    "file_sha256",
    "frame_psnr",
    "frame_ssim",
    "frechet_distance",
    "gaussian_from_sums",
    "load_i3d_state_dict",
    "per_video_scores",
    "preprocess_styleganv",
    "preprocess_tats",
    "resolve_spec",
    "resolve_weights",
    "sqrtm_psd",
    "trace_sqrt_product",
]
