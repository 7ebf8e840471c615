"""CARLA Town01 metrics of FDM (Harvey et al. 2022, Sec. 6.2): WD and PO, from the car's positions.

The positions of a video are the map (x, y) of the car in each frame; for generated videos they come from the
position regressor (``lightning_modules.carla_regressor``), for test videos from ``coords_<i>.npy`` or the same
regressor. The official code never released these two metrics; here they are, exactly:

- distance travelled by a video with positions p_0..p_{T-1}:  D = Σ_{t=1}^{T-1} ||p_t - p_{t-1}||_2.
- WD: the 1-Wasserstein distance between the empirical distributions of D over the test videos {D_i} (n of them)
  and over the sampled videos {D'_j} (m of them):  WD = ∫ |F(x) - G(x)| dx,  F, G their empirical CDFs
  (each video weighs 1/n resp. 1/m) - what ``scipy.stats.wasserstein_distance`` computes.
- PO: the percentage of frames, over all sampled videos and all their frames, whose position lies farther than
  ``threshold`` (map units, metres in Town01) from every position in a reference set (all positions of the training
  videos):  PO = 100 · #{(j, t): min_r ||p'_{j,t} - r||_2 > threshold} / #{(j, t)}.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def distance_travelled(positions: Tensor) -> Tensor:
    """(N, T, 2) positions -> (N,) path lengths Σ_t ||p_t - p_{t-1}||."""
    if positions.ndim != 3 or positions.shape[-1] != 2:
        raise ValueError(f"positions: expected (videos, frames, 2), got {tuple(positions.shape)}")
    return (positions[:, 1:] - positions[:, :-1]).double().norm(dim=-1).sum(dim=1)


def wasserstein_1d(u: Tensor, v: Tensor) -> Tensor:
    """W1 between the empirical distributions of the 1-D samples u (n,) and v (m,): ∫ |F_u - F_v| dx."""
    if u.numel() == 0 or v.numel() == 0:
        raise ValueError("wasserstein_1d: both samples must be non-empty")
    u, v = u.double().flatten().sort().values, v.double().flatten().sort().values
    points = torch.cat([u, v]).sort().values
    widths = points[1:] - points[:-1]
    cdf_u = torch.searchsorted(u, points[:-1], right=True).double() / u.numel()
    cdf_v = torch.searchsorted(v, points[:-1], right=True).double() / v.numel()
    return ((cdf_u - cdf_v).abs() * widths).sum()


def off_road(positions: Tensor, road: Tensor, threshold: float, chunk: int = 4096) -> Tensor:
    """(..., 2) positions, (M, 2) reference positions -> (...) bool: farther than ``threshold`` from all of them."""
    flat = positions.reshape(-1, 2).double()
    road = road.reshape(-1, 2).double().to(flat.device)
    nearest = (
        torch.cat([torch.cdist(part, road).min(dim=1).values for part in flat.split(chunk)])
        if flat.numel()
        else flat[:, 0]
    )
    return (nearest > threshold).reshape(positions.shape[:-1])


class WassersteinDistanceTravelled(Metric):
    """WD between distance travelled in real and in generated videos. ``update(positions, real)`` with (N, T, 2)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("real", default=[], dist_reduce_fx="cat")
        self.add_state("fake", default=[], dist_reduce_fx="cat")

    def update(self, positions: Tensor, real: bool) -> None:
        (self.real if real else self.fake).append(distance_travelled(positions))

    def compute(self) -> Tensor:
        return wasserstein_1d(dim_zero_cat(self.real), dim_zero_cat(self.fake))


class PercentageOffRoad(Metric):
    """PO: percentage of generated frames farther than ``threshold`` from every reference (training) position."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, road_positions: Tensor, threshold: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if threshold <= 0:
            raise ValueError(f"threshold: must be > 0, got {threshold}")
        self.threshold = threshold
        self.register_buffer("road", road_positions.reshape(-1, 2).double(), persistent=False)
        self.add_state("off", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("frames", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, positions: Tensor) -> None:
        flags = off_road(positions, self.road, self.threshold)
        self.off += flags.sum()
        self.frames += flags.numel()

    def compute(self) -> Tensor:
        return 100.0 * self.off.double() / self.frames.clamp(min=1)
