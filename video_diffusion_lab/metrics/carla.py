"""CARLA Town01 metrics of FDM (Harvey et al. 2022, Sec. 5; Harvey's thesis, section "CARLA Town01 dataset"): WD and
OP, from the car's speeds.

The positions p_{i,t} (metres, map x and y) of frame t of video i come from a position regressor, the same one for
the data set's videos and for the generated ones, or, for the data set, from its recorded coordinates. With the frame
rate f (10 fps in CARLA Town01) and a gap of g frames (10, one second):

- speed estimates:  s_{i,t} = ||p_{i,t+g} - p_{i,t}||_2 / (g / f)  for every t = 0 .. T-1-g of every video  (m/s);
- OP, the outlier percentage:  OP = 100 · #{s > v_max} / #{s}  over the generated videos' speeds, v_max = 10 m/s
  (the data set was simulated at no more than 3 m/s: a larger estimate is a "jump" between places in the town);
- WD:  the 1-Wasserstein distance between the empirical distributions of the generated and of the data set's speeds,
  each with its outliers removed:  WD = ∫ |F(x) - G(x)| dx  (m/s), F and G the two empirical CDFs, every speed
  weighing 1/n of its side.

The paper states these in words; the released code (plai-group/flexible-video-diffusion-modeling) has the regressor
and the script that regresses positions (``scripts/video_to_world_coords.py``) but not the metrics, so what neither
says is a choice made here (``docs/carla.md``): every frame t starts a speed estimate (pairs overlap), and outliers
are removed from both sides before WD (the paper mentions the generated side; regressed data-set positions have rare
outliers too, reported as ``data_op``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

FPS = 10  # CARLA Town01 (the data set's frame rate)
GAP = 10  # frames between the two positions of a speed estimate: one second
OUTLIER_SPEED = 10.0  # m/s


def check_speed_settings(fps: float, gap: int, outlier_speed: float = OUTLIER_SPEED) -> None:
    if fps <= 0:
        raise ValueError(f"fps: must be > 0, got {fps}")
    if gap < 1:
        raise ValueError(f"gap: must be >= 1 frame, got {gap}")
    if outlier_speed <= 0:
        raise ValueError(f"outlier_speed: must be > 0 m/s, got {outlier_speed}")


def as_positions(positions: Tensor | np.ndarray, name: str, gap: int) -> Tensor:
    """(N, T, 2) metres, numpy or torch, as a float64 tensor; T must exceed ``gap``."""
    positions = torch.as_tensor(positions).detach().to(torch.float64)
    if positions.ndim != 3 or positions.shape[-1] != 2:
        raise ValueError(f"{name}: expected (videos, frames, 2) positions in metres, got {tuple(positions.shape)}")
    if positions.shape[1] <= gap:
        raise ValueError(f"{name}: {positions.shape[1]} frames give no speed estimate {gap} frames apart")
    if not torch.isfinite(positions).all():
        raise ValueError(f"{name}: positions must be finite")
    return positions


def speed_estimates(positions: Tensor | np.ndarray, fps: float = FPS, gap: int = GAP) -> Tensor:
    """(N, T, 2) positions -> (N, T - gap) speed estimates ||p_{t+gap} - p_t|| / (gap / fps), float64 m/s."""
    check_speed_settings(fps, gap)
    positions = as_positions(positions, "positions", gap)
    return (positions[:, gap:] - positions[:, :-gap]).norm(dim=-1) * (fps / gap)


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


def outlier_percentage(speeds: Tensor, outlier_speed: float = OUTLIER_SPEED) -> float:
    """100 · #{s > outlier_speed} / #{s}; NaN for no speeds."""
    return 100.0 * float((speeds > outlier_speed).sum()) / speeds.numel() if speeds.numel() else float("nan")


def speed_metrics(
    data_speeds: Tensor, generated_speeds: Tensor, *, outlier_speed: float = OUTLIER_SPEED, bins: int = 100
) -> dict[str, Any]:
    """WD and OP from speed estimates (any shapes, m/s), and their histograms over [0, outlier_speed] (``bins`` bins).

    WD is NaN when every speed of a side is an outlier (nothing left to compare)."""
    if bins < 1:
        raise ValueError(f"bins: must be >= 1, got {bins}")
    data, generated = data_speeds.double().flatten(), generated_speeds.double().flatten()
    if data.numel() == 0 or generated.numel() == 0:
        raise ValueError(
            f"speed metrics need speeds on both sides, got {data.numel()} (data), {generated.numel()} (generated)"
        )
    data_kept, generated_kept = data[data <= outlier_speed], generated[generated <= outlier_speed]
    wd = (
        float(wasserstein_1d(data_kept, generated_kept))
        if data_kept.numel() and generated_kept.numel()
        else float("nan")
    )
    edges = torch.linspace(0.0, outlier_speed, bins + 1, dtype=torch.float64)
    return {
        "wd": wd,
        "op": outlier_percentage(generated, outlier_speed),
        "data_op": outlier_percentage(data, outlier_speed),
        "data_speeds": data.numel(),
        "generated_speeds": generated.numel(),
        "histogram": {
            "edges": edges.tolist(),
            "data": torch.histc(data_kept, bins, 0.0, outlier_speed).long().tolist(),
            "generated": torch.histc(generated_kept, bins, 0.0, outlier_speed).long().tolist(),
        },
    }


def carla_speed_metrics(
    real_positions: Tensor | np.ndarray,
    generated_positions: Tensor | np.ndarray,
    *,
    fps: float = FPS,
    gap: int = GAP,
    outlier_speed: float = OUTLIER_SPEED,
    bins: int = 100,
) -> dict[str, Any]:
    """FDM's CARLA Town01 WD (m/s) and OP (percent) between data-set and generated videos.

    ``real_positions`` (N, T, 2) and ``generated_positions`` (M, T', 2), metres, numpy or torch. Returns ``wd``,
    ``op`` (generated speeds above ``outlier_speed``), ``data_op`` (the same for the data set), the numbers of speed
    estimates and ``histogram`` (``edges``, ``data`` and ``generated`` counts of the speeds kept for WD).
    """
    check_speed_settings(fps, gap, outlier_speed)
    data = speed_estimates(as_positions(real_positions, "real_positions", gap), fps, gap)
    generated = speed_estimates(as_positions(generated_positions, "generated_positions", gap), fps, gap)
    return {
        **speed_metrics(data, generated, outlier_speed=outlier_speed, bins=bins),
        "fps": fps,
        "gap": gap,
        "outlier_speed": outlier_speed,
    }


def concatenated(state: list[Tensor] | Tensor) -> Tensor:
    """A "cat" state: a list of tensors on one process, one tensor after the DDP sync."""
    return dim_zero_cat(state) if isinstance(state, Tensor) or state else torch.zeros(0, dtype=torch.float64)


class CARLASpeedMetrics(Metric):
    """``carla_speed_metrics`` over batches and processes: ``update(positions, generated)`` with (N, T, 2) positions
    of data-set (``generated=False``) or generated videos; ``compute()`` returns the mapping."""

    full_state_update = False
    higher_is_better = False

    def __init__(
        self, fps: float = FPS, gap: int = GAP, outlier_speed: float = OUTLIER_SPEED, bins: int = 100, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_speed_settings(fps, gap, outlier_speed)
        self.fps, self.gap, self.outlier_speed, self.bins = fps, gap, outlier_speed, bins
        self.add_state("data", default=[], dist_reduce_fx="cat")
        self.add_state("generated", default=[], dist_reduce_fx="cat")

    def update(self, positions: Tensor, generated: bool) -> None:
        (self.generated if generated else self.data).append(speed_estimates(positions, self.fps, self.gap).flatten())

    def compute(self) -> dict[str, Any]:
        data, generated = concatenated(self.data), concatenated(self.generated)
        metrics = speed_metrics(data, generated, outlier_speed=self.outlier_speed, bins=self.bins)
        return {**metrics, "fps": self.fps, "gap": self.gap, "outlier_speed": self.outlier_speed}
