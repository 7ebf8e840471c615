"""Fréchet distance between Gaussians, computed from streamed feature sums.

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})

tr((S1 S2)^{1/2}) equals tr((S1^{1/2} S2 S1^{1/2})^{1/2}) (the two products are
similar matrices), and the latter is the square root of a symmetric PSD matrix,
so it can be taken with `eigh` and real arithmetic only. This is the route of
tf-gan's `trace_sqrt_product`, which the original FVD and VideoGPT/TATS use; it
avoids `scipy.linalg.sqrtm` on the non-symmetric product, which can return
complex values and is unstable for the rank-deficient covariances that
small evaluation sets give.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _as_f64(x: ArrayLike | float | int) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64)
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _symmetrize(mat: Tensor) -> Tensor:
    # Round-off makes computed covariances slightly non-symmetric; eigh assumes symmetry.
    return 0.5 * (mat + mat.transpose(-1, -2))


def _drop_noise(evals: Tensor) -> Tensor:
    """Zero the eigenvalues that are round-off, not signal.

    eigh's absolute eigenvalue error is about dim * eps * max|eval|; below that an
    eigenvalue's sign and size are noise (negative ones are impossible for PSD input),
    and their square roots -- each ~sqrt(noise) -- would add up to a visible bias for
    the rank-deficient covariances of small feature sets.
    """
    tol = evals.shape[-1] * torch.finfo(evals.dtype).eps * evals.abs().max()
    return torch.where(evals > tol, evals, torch.zeros_like(evals))


def sqrtm_psd(mat: ArrayLike) -> Tensor:
    """Square root of a symmetric PSD matrix (float64) via eigh; round-off eigenvalues -> 0."""
    evals, evecs = torch.linalg.eigh(_symmetrize(_as_f64(mat)))
    root = _drop_noise(evals).sqrt()
    return (evecs * root) @ evecs.transpose(-1, -2)


def trace_sqrt_product(sigma1: ArrayLike, sigma2: ArrayLike) -> float:
    """tr((sigma1 sigma2)^{1/2}) for PSD sigma1, sigma2, via sqrt(sigma1) sigma2 sqrt(sigma1)."""
    root1 = sqrtm_psd(sigma1)
    inner = _symmetrize(root1 @ _as_f64(sigma2) @ root1)
    evals = torch.linalg.eigvalsh(inner)
    return float(_drop_noise(evals).sqrt().sum())


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = _as_f64(mu1), _as_f64(mu2)
    sigma1, sigma2 = _as_f64(sigma1), _as_f64(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"shape mismatch: mu {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}"
        )
    mean_term = float(((mu1 - mu2) ** 2).sum())
    trace_term = float(torch.trace(sigma1) + torch.trace(sigma2))
    return mean_term + trace_term - 2.0 * trace_sqrt_product(sigma1, sigma2)


def gaussian_from_sums(
    n: ArrayLike | int | float, feature_sum: ArrayLike, outer_sum: ArrayLike, ddof: int = 1
) -> tuple[Tensor, Tensor]:
    """Mean and covariance from n, sum_i x_i and sum_i x_i x_i^T (all float64).

    sigma = (sum_i x_i x_i^T - n mu mu^T) / (n - ddof). ddof=1 gives the unbiased
    estimate of numpy.cov / tf-gan / VideoGPT-TATS; ddof=0 the maximum-likelihood one
    that StyleGAN-V's FeatureStats.get_mean_cov uses.
    """
    count = float(_as_f64(n))
    if count - ddof <= 0:
        raise ValueError(f"need more than {ddof} feature vectors to estimate a covariance, got {count:g}")
    total, outer = _as_f64(feature_sum), _as_f64(outer_sum)
    mu = total / count
    sigma = (outer - count * torch.outer(mu, mu)) / (count - ddof)
    return mu, _symmetrize(sigma)
