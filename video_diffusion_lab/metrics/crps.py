"""Continuous Ranked Probability Score of sampled video predictions, per pixel.

For a predictive distribution F and an observation y (Gneiting & Raftery 2007):

    CRPS(F, y) = E|X - y| - 1/2 E|X - X'|,   X, X' ~ F independent.

With N samples x_1..x_N per pixel, E|X - y| is estimated by the sample mean, and
sum_{i != j} |x_i - x_j| is computed in O(N log N) from the sorted samples
x_(1) <= ... <= x_(N):  sum_{i<j} (x_(j) - x_(i)) = sum_k (2k - N - 1) x_(k).

Two normalisations of the spread term are offered:
* ``"fair"`` (default): divide by N(N - 1) -- the unbiased estimator of E|X - X'|, so
  the score is an unbiased estimate of the CRPS of F itself (Ferro 2014 "fair CRPS");
  needs N >= 2.
* ``"ensemble"``: divide by N^2 -- the exact CRPS of the empirical distribution of the
  N samples (what ``properscoring.crps_ensemble`` returns); biased upwards for small N.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric

Estimator = Literal["fair", "ensemble"]


def crps_from_samples(samples: Tensor, target: Tensor, estimator: Estimator = "fair") -> Tensor:
    """Pointwise CRPS, float64. ``samples``: (N, *S); ``target``: S. Returns a tensor of shape S."""
    if samples.shape[1:] != target.shape:
        raise ValueError(f"samples {tuple(samples.shape)} must be (N, *target.shape), target {tuple(target.shape)}")
    n = samples.shape[0]
    if estimator == "fair" and n < 2:
        raise ValueError("the fair CRPS estimator needs at least 2 samples")
    if estimator not in ("fair", "ensemble"):
        raise ValueError(f"estimator must be 'fair' or 'ensemble', got {estimator!r}")
    x = samples.to(torch.float64)
    y = target.to(torch.float64)
    skill = (x - y).abs().mean(dim=0)  # E|X - y|
    ordered = x.sort(dim=0).values
    weights = 2.0 * torch.arange(1, n + 1, dtype=torch.float64, device=x.device) - n - 1
    weights = weights.view(n, *([1] * (x.ndim - 1)))
    pair_sum = 2.0 * (weights * ordered).sum(dim=0)  # sum over ordered pairs i != j
    denom = n * (n - 1) if estimator == "fair" else n * n
    spread = pair_sum / denom  # E|X - X'|
    return skill - 0.5 * spread


class CRPS(Metric):
    """Mean per-pixel CRPS of N sampled videos against the ground truth.

    ``update(samples (N, B, T, C, H, W), target (B, T, C, H, W), latent=None)``. Pixel
    values are first mapped from ``value_range`` (the framework's [-1, 1] by default) to
    [0, 1], so scores are in [0, 1]-pixel units like PSNR/SSIM. If a boolean ``latent``
    mask (B, T) is given, only those (predicted) frames count; otherwise every frame does.
    States are a float64 sum and count, sum-reduced, so the DDP result is exact.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    crps_sum: Tensor
    count: Tensor

    def __init__(
        self,
        estimator: Estimator = "fair",
        value_range: tuple[float, float] = (-1.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if estimator not in ("fair", "ensemble"):
            raise ValueError(f"estimator must be 'fair' or 'ensemble', got {estimator!r}")
        lo, hi = value_range
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.estimator: Estimator = estimator
        self.value_range = (float(lo), float(hi))
        self.add_state("crps_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, samples: Tensor, target: Tensor, latent: Tensor | None = None) -> None:
        if samples.ndim != 6 or samples.shape[1:] != target.shape:
            raise ValueError(
                f"expected samples (N, B, T, C, H, W) and target (B, T, C, H, W), got "
                f"{tuple(samples.shape)} and {tuple(target.shape)}"
            )
        lo, hi = self.value_range
        scores = crps_from_samples((samples - lo) / (hi - lo), (target - lo) / (hi - lo), self.estimator)
        if latent is not None:
            if latent.shape != target.shape[:2]:
                raise ValueError(f"latent mask must be (B, T) = {tuple(target.shape[:2])}, got {tuple(latent.shape)}")
            scores = scores[latent.to(device=scores.device, dtype=torch.bool)]  # (K, C, H, W) for the K selected frames
        self.crps_sum += scores.sum()
        self.count += scores.numel()

    def compute(self) -> Tensor:
        return self.crps_sum / self.count
