"""How well a denoiser recovers x0 at each noise level, against predicting the mean.

The samplers start from the denoiser's x0 estimates at low signal-to-noise; a model whose estimate there is worse
than the data mean cannot sample well, however many steps it takes. ``x0_error_by_noise_level`` measures, for fixed
noise levels of the model's schedule, the error of x0_hat = D(alpha_t x0 + sigma_t eps, t) on the generated
(latent) frames next to the error of the mean of those frames (per pixel, over the batch): the diagnostic that found
the FDM / RVD failures of issue #14.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.schedules import NoiseSchedule


@dataclass
class NoiseLevelError:
    time: float  # the schedule's time (a discrete step or a continuous t)
    log_snr: float
    rmse: float  # of x0_hat on latent frames, data units ([-1, 1] frames)
    mean_rmse: float  # of the per-pixel mean of the latent frames

    @staticmethod
    def psnr(rmse: float) -> float:
        """PSNR in dB of frames in [-1, 1] rescaled to [0, 1]."""
        return -20 * math.log10(max(rmse / 2, 1e-12))

    def row(self) -> dict[str, float]:
        return {
            "time": self.time,
            "log_snr": self.log_snr,
            "x0_rmse": self.rmse,
            "x0_psnr": self.psnr(self.rmse),
            "mean_rmse": self.mean_rmse,
            "mean_psnr": self.psnr(self.mean_rmse),
        }


def noise_levels(schedule: NoiseSchedule, count: int) -> Tensor:
    """``count`` times spread over the process, noisiest first (the sampling grid without its clean end)."""
    return schedule.sampling_times(count)[:-1]


@torch.no_grad()
def x0_error_by_noise_level(
    denoiser: Callable[..., Tensor],
    schedule: NoiseSchedule,
    x0: Tensor,
    mask: FrameMask,
    times: Tensor,
    generator: torch.Generator | None = None,
    **cond: Any,
) -> list[NoiseLevelError]:
    """x0_hat error on the latent frames of (B, T, C, H, W) ``x0`` at each of ``times``, one noise draw per level."""
    latent = FrameMask.per_frame(mask.latent, x0).expand_as(x0)
    if not latent.any():
        raise ValueError("x0_error_by_noise_level: the mask has no latent frames to score")
    target = x0[latent].reshape(-1, *x0.shape[2:])  # (N, C, H, W)
    mean_frame = target.mean(dim=0, keepdim=True)
    mean_rmse = float(((target - mean_frame) ** 2).mean().sqrt())
    rows = []
    for t in times:
        t_batch = t.expand(x0.shape[0]).to(x0.device)
        alpha, sigma = (c.reshape(-1, *([1] * (x0.ndim - 1))).to(x0) for c in schedule.alpha_sigma(t_batch))
        eps = torch.randn(x0.shape, generator=generator).to(x0)
        z = mask.keep_observed(alpha * x0 + sigma * eps, x0)
        x0_hat = denoiser(z, t_batch, mask, **cond)
        rmse = float(((x0_hat - x0)[latent] ** 2).mean().sqrt())
        rows.append(NoiseLevelError(float(t), float(schedule.log_snr(t.reshape(1)).item()), rmse, mean_rmse))
    return rows
