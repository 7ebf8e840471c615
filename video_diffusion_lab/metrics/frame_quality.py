"""Per-frame PSNR / SSIM of sampled video predictions: mean over samples and best-of-N.

Stochastic predictors are compared (RaMViD, RVD, and the SVG/SRVP line before them)
by drawing N samples per test video and reporting both the average score and the
score of the best sample, the latter chosen separately for each metric. For one test
video and sample, the score is the per-frame PSNR/SSIM averaged over its predicted
(latent) frames; frames given as context do not count.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def to_unit_range(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped so data_range=1 is honoured for out-of-range samples."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def frame_psnr(preds: Tensor, target: Tensor) -> Tensor:
    """PSNR (dB) of each (C, H, W) frame in (K, C, H, W) tensors in [0, 1]; identical frames give inf."""
    return peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none", dim=(1, 2, 3))


def frame_ssim(preds: Tensor, target: Tensor) -> Tensor:
    """SSIM of each frame (torchmetrics defaults: 11x11 Gaussian window, sigma 1.5)."""
    return structural_similarity_index_measure(preds, target, data_range=1.0, reduction="none")


def per_video_scores(samples: Tensor, target: Tensor, latent: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PSNR and SSIM averaged over each video's latent frames.

    samples (N, B, T, C, H, W), target (B, T, C, H, W) in [-1, 1], latent (B, T) bool.
    Returns psnr (N, B'), ssim (N, B') for the B' videos with at least one latent frame,
    and the boolean (B,) selector of those videos.
    """
    n = samples.shape[0]
    mask = latent.to(device=samples.device, dtype=torch.bool)
    target = target.to(samples.device)
    frames_per_video = mask.sum(dim=1)  # (B,)
    video_of_frame = mask.nonzero()[:, 0]  # (K,) index of the video each selected frame belongs to
    fake = to_unit_range(samples[:, mask].to(torch.float32)).flatten(0, 1)  # (N*K, C, H, W)
    real = to_unit_range(target[mask].to(torch.float32))
    real = real.unsqueeze(0).expand(n, *real.shape).flatten(0, 1)
    k = video_of_frame.numel()
    psnr = frame_psnr(fake, real).to(torch.float64).view(n, k)
    ssim = frame_ssim(fake, real).to(torch.float64).view(n, k)
    b = target.shape[0]

    def frame_mean(values: Tensor) -> Tensor:
        sums = values.new_zeros(n, b).index_add_(1, video_of_frame, values)
        return sums / frames_per_video.clamp(min=1).to(values.dtype)

    has_frames = frames_per_video > 0
    return frame_mean(psnr)[:, has_frames], frame_mean(ssim)[:, has_frames], has_frames


class FrameQuality(Metric):
    """PSNR/SSIM on predicted frames, as mean over N samples and best-of-N.

    ``update(samples (N, B, T, C, H, W), target (B, T, C, H, W), latent (B, T) bool)`` with
    videos in [-1, 1] (scaled to [0, 1], data_range 1.0). ``compute()`` returns
    ``{"psnr_mean", "psnr_best", "ssim_mean", "ssim_best"}``, each averaged over test
    videos. Float64 sum/count states, sum-reduced: exact under DDP.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    psnr_mean_sum: Tensor
    psnr_best_sum: Tensor
    ssim_mean_sum: Tensor
    ssim_best_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("psnr_mean_sum", "psnr_best_sum", "ssim_mean_sum", "ssim_best_sum", "count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, samples: Tensor, target: Tensor, latent: Tensor) -> None:
        if samples.ndim != 6 or samples.shape[1:] != target.shape:
            raise ValueError(
                f"expected samples (N, B, T, C, H, W) and target (B, T, C, H, W), got "
                f"{tuple(samples.shape)} and {tuple(target.shape)}"
            )
        if latent.shape != target.shape[:2]:
            raise ValueError(f"latent mask must be (B, T) = {tuple(target.shape[:2])}, got {tuple(latent.shape)}")
        if not bool(latent.any()):
            return
        # Scores must not depend on the trainer's precision setting: no autocast here.
        with torch.autocast(device_type=samples.device.type, enabled=False):
            psnr, ssim, _ = per_video_scores(samples, target, latent)
        self.psnr_mean_sum += psnr.mean(dim=0).sum()
        self.psnr_best_sum += psnr.max(dim=0).values.sum()
        self.ssim_mean_sum += ssim.mean(dim=0).sum()
        self.ssim_best_sum += ssim.max(dim=0).values.sum()
        self.count += psnr.shape[1]

    def compute(self) -> dict[str, Tensor]:
        return {
            "psnr_mean": self.psnr_mean_sum / self.count,
            "psnr_best": self.psnr_best_sum / self.count,
            "ssim_mean": self.ssim_mean_sum / self.count,
            "ssim_best": self.ssim_best_sum / self.count,
        }
