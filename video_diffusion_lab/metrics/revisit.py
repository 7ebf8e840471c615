"""Long-range memory scores of generated videos of a known world, without a learned regressor.

When the world is known (the maze world: ``datamodules.maze``), every frame comes with a map of which wall each pixel
shows (``wall_map`` (B, T, H, W), a wall id per pixel, negative where no wall is seen), so memory can be scored
directly: a wall that comes back into view must come back with the colour it had.

Definitions, per video, for every frame t and every wall w that is visible at t (``min_pixels`` pixels or more):
- the lag of (t, w) is t - s, where s is the latest frame before t in which w was visible; a wall never seen before
  t has no lag and is never scored (nothing to remember);
- (t, w) is a *given revisit* when every earlier sighting of w is in a given (observed) frame: the colour must have
  been kept from the given frames across all the generated frames in between;
- its colour error is |mean colour of w's pixels in the generated frame - the same in the true frame|, averaged over
  channels, in 0..255 units; the mean over a wall's pixels forgives small misplacements of its edges, not a wrong
  colour. Errors are averaged over (t, w) pairs weighted by the wall's pixel count, over generated frames only.

``RevisitColourError`` reports this by lag bins and beyond a lag K (frames the model cannot hold in one pass), for
all revisits and for given revisits; ``LateFrameQuality`` reports PSNR and CRPS over the last frames of the videos
(with ``metrics.frame_quality`` and ``metrics.crps``). Both keep one row per video, so that a benchmark can
bootstrap them (``per_video``); under DDP the rows of every process are gathered (cat states).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from video_diffusion_lab.metrics.crps import Estimator, crps_from_samples
from video_diffusion_lab.metrics.frame_quality import to_unit_range

DEFAULT_LAG_EDGES = (1, 10, 20, 40, 80, 160)
GROUPS = ("revisit", "given")


# -------------------------------------------------------------------------------------------------- ground truth
def wall_pixels(wall_map: Tensor, num_walls: int) -> Tensor:
    """Pixels of each wall in each frame: (B, T, num_walls) counts from a (B, T, H, W) map of wall ids."""
    ids = wall_map.long().flatten(2)
    seen = ids >= 0
    counts = torch.zeros(*ids.shape[:2], num_walls + 1, dtype=torch.long, device=ids.device)
    counts.scatter_add_(2, torch.where(seen, ids, num_walls), seen.long())
    return counts[..., :num_walls]


def last_sighting(visible: Tensor) -> Tensor:
    """For (B, T, N) visibility, the latest frame s < t in which each wall was visible (B, T, N); -1 if none."""
    frames = torch.arange(visible.shape[1], device=visible.device).view(1, -1, 1)
    latest = torch.where(visible, frames, -1).cummax(dim=1).values  # latest sighting at or before t
    return torch.cat([torch.full_like(latest[:, :1], -1), latest[:, :-1]], dim=1)


def revisit_lags(visible: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    """Lags of the walls in view, from (B, T, N) visibility and the (B, T) given frames.

    Returns ``lag`` (B, T, N): t - (latest earlier frame showing the wall) for walls visible at t and seen before,
    -1 otherwise (not in view, or never seen before: not a revisit); and ``given_only`` (B, T, N): revisits whose
    every earlier sighting is in a given frame."""
    frames = torch.arange(visible.shape[1], device=visible.device).view(1, -1, 1)
    last = last_sighting(visible)
    revisit = visible & (last >= 0)
    last_generated = last_sighting(visible & ~observed.to(visible.device, torch.bool)[..., None])
    return torch.where(revisit, frames - last, -1), revisit & (last_generated < 0)


def wall_colour_means(video: Tensor, wall_map: Tensor, num_walls: int) -> Tensor:
    """Mean colour of each wall's pixels per frame: (B, T, num_walls, C) from (B, T, C, H, W) frames (zero where the
    wall is not in view)."""
    ids = wall_map.long().flatten(2)  # (B, T, P)
    seen = ids >= 0
    index = torch.where(seen, ids, num_walls)
    pixels = video.flatten(3).transpose(2, 3) * seen[..., None]  # (B, T, P, C)
    sums = torch.zeros(*ids.shape[:2], num_walls + 1, video.shape[2], dtype=pixels.dtype, device=video.device)
    sums.scatter_add_(2, index[..., None].expand_as(pixels), pixels)
    counts = wall_pixels(wall_map, num_walls)
    return sums[..., :num_walls, :] / counts.clamp(min=1)[..., None]


def signed_range(video: Tensor) -> Tensor:
    """Frames as float in [-1, 1]: uint8 frames (the maze world's) are converted, float frames are kept."""
    return video.float() / 127.5 - 1 if video.dtype == torch.uint8 else video.float()


def lag_bin_names(edges: Sequence[int]) -> list[str]:
    """'1-9', '10-19', ..., '160+' for edges (1, 10, ..., 160): bins [edge_i, edge_{i+1}), the last one open."""
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)] + [f"{edges[-1]}+"]


# ------------------------------------------------------------------------------------------------------ the metrics
class RevisitColourError(Metric):
    """Colour error (0..255) of walls that come back into view in generated frames, by lag.

    ``update(samples (N, B, T, C, H, W), target (B, T, C, H, W), wall_map (B, T, H, W), latent (B, T) bool)``, videos in
    [-1, 1] (or uint8 targets), ``latent`` the generated frames (the others are given). Sums over the N samples; every
    video keeps one row per group ("revisit": all revisits, "given": walls seen only in given frames) of
    ``len(lag_edges) + 1`` columns: one per lag bin and one for lags above ``beyond``.

    ``compute()``: ``{"<group>_lag_<bin>": error, "<group>_beyond_<beyond>": error, "<group>_pixels": pixels scored
    (summed over samples)}``, errors NaN where nothing was scored. ``per_video()``: ``(error_sums, pixel_counts)``,
    each (videos, 2 groups, bins + 1), for bootstraps.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    error_sums: list[Tensor]
    pixel_counts: list[Tensor]

    def __init__(
        self,
        num_walls: int,
        beyond: int,
        lag_edges: Sequence[int] = DEFAULT_LAG_EDGES,
        min_pixels: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_walls < 1:
            raise ValueError(f"num_walls: must be >= 1, got {num_walls}")
        if beyond < 0:
            raise ValueError(f"beyond: a lag, must be >= 0, got {beyond}")
        if not lag_edges or lag_edges[0] < 1 or any(b <= a for a, b in zip(lag_edges, lag_edges[1:], strict=False)):
            raise ValueError(f"lag_edges: must be increasing lags >= 1, got {tuple(lag_edges)}")
        if min_pixels < 1:
            raise ValueError(f"min_pixels: must be >= 1, got {min_pixels}")
        self.num_walls, self.beyond, self.min_pixels = num_walls, beyond, min_pixels
        self.lag_edges = tuple(int(e) for e in lag_edges)
        self.columns = [*lag_bin_names(self.lag_edges), f"beyond_{beyond}"]
        self.add_state("error_sums", [], dist_reduce_fx="cat")
        self.add_state("pixel_counts", [], dist_reduce_fx="cat")

    def update(self, samples: Tensor, target: Tensor, wall_map: Tensor, latent: Tensor) -> None:
        if samples.ndim != 6 or samples.shape[1:] != target.shape:
            raise ValueError(
                f"expected samples (N, B, T, C, H, W) and target (B, T, C, H, W), got "
                f"{tuple(samples.shape)} and {tuple(target.shape)}"
            )
        b, t, _, h, w = target.shape
        if wall_map.shape != (b, t, h, w):
            raise ValueError(f"wall_map must be (B, T, H, W) = {(b, t, h, w)}, got {tuple(wall_map.shape)}")
        if latent.shape != (b, t):
            raise ValueError(f"latent mask must be (B, T) = {(b, t)}, got {tuple(latent.shape)}")
        if int(wall_map.max()) >= self.num_walls:
            raise ValueError(f"wall_map: wall id {int(wall_map.max())} >= num_walls={self.num_walls}")
        device = samples.device
        wall_map, latent = wall_map.to(device), latent.to(device, torch.bool)
        target = to_unit_range(signed_range(target))
        counts = wall_pixels(wall_map, self.num_walls)  # (B, T, W)
        visible = counts >= self.min_pixels
        lag, given_only = revisit_lags(visible, ~latent)
        scored = (lag > 0) & latent[..., None]
        true_colour = wall_colour_means(target.to(device), wall_map, self.num_walls)
        errors = torch.zeros(b, t, self.num_walls, dtype=torch.float64, device=device)
        for sample in samples:  # one sample at a time: (B, T, W, C) colour means, not (N, B, T, W, C)
            colour = wall_colour_means(to_unit_range(sample.float()), wall_map, self.num_walls)
            errors += (colour - true_colour).abs().mean(dim=-1).to(torch.float64) * 255
        weight = counts.to(torch.float64) * samples.shape[0]  # pixels, once per sample
        weighted = errors * counts
        edges = torch.tensor(self.lag_edges, device=device)
        column = torch.bucketize(lag, edges, right=True) - 1  # bin of each lag (lags >= 1 fall in a bin)
        sums = torch.zeros(b, len(GROUPS), len(self.columns), dtype=torch.float64, device=device)
        pixels = torch.zeros_like(sums)
        for g, members in enumerate((scored, scored & given_only)):
            for c in range(len(self.lag_edges)):
                chosen = members & (column == c)
                sums[:, g, c] = (weighted * chosen).sum(dim=(1, 2))
                pixels[:, g, c] = (weight * chosen).sum(dim=(1, 2))
            chosen = members & (lag > self.beyond)
            sums[:, g, -1] = (weighted * chosen).sum(dim=(1, 2))
            pixels[:, g, -1] = (weight * chosen).sum(dim=(1, 2))
        self.error_sums.append(sums)
        self.pixel_counts.append(pixels)

    def per_video(self) -> tuple[Tensor, Tensor]:
        """Per-video error sums and pixel counts, (videos, 2 groups, bins + 1); error = sum / count."""
        if not self.error_sums:
            empty = torch.zeros(0, len(GROUPS), len(self.columns), dtype=torch.float64)
            return empty, empty.clone()
        return dim_zero_cat(self.error_sums), dim_zero_cat(self.pixel_counts)

    def compute(self) -> dict[str, Tensor]:
        sums, pixels = (x.sum(dim=0) for x in self.per_video())
        errors = sums / pixels  # NaN where nothing was scored
        out = {}
        for g, group in enumerate(GROUPS):
            for c, column in enumerate(self.columns):
                name = f"{group}_{column}" if column.startswith("beyond") else f"{group}_lag_{column}"
                out[name] = errors[g, c]
            out[f"{group}_pixels"] = pixels[g, :-1].sum()
        return out


def late_frames(latent: Tensor, late: int) -> Tensor:
    """The (B, T) mask of the generated frames among the last ``late`` frames of the videos."""
    if late < 1:
        raise ValueError(f"late: must be >= 1 frames, got {late}")
    last = torch.arange(latent.shape[1], device=latent.device) >= latent.shape[1] - late
    return latent.to(torch.bool) & last


class LateFrameQuality(Metric):
    """PSNR (dB, of each video's mean squared error over its late generated frames, mean over samples) and CRPS (per
    pixel, [0, 1] units) of the generated frames among the last ``late`` frames of every video: how good frames are
    long after the given ones.

    ``update(samples (N, B, T, C, H, W), target (B, T, C, H, W), latent (B, T))``, videos in [-1, 1]. CRPS needs N >= 2
    with the default ``"fair"`` estimator (``metrics.crps``). ``compute()``: ``{"late_psnr", "late_crps"}``;
    ``per_video()``: ``{"late_psnr": (videos,), "late_crps": (videos,)}``."""

    is_differentiable = False
    full_state_update = False

    psnr: list[Tensor]
    crps: list[Tensor]

    def __init__(self, late: int, crps_estimator: Estimator = "fair", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if late < 1:
            raise ValueError(f"late: must be >= 1 frames, got {late}")
        self.late, self.crps_estimator = late, crps_estimator
        self.add_state("psnr", [], dist_reduce_fx="cat")
        self.add_state("crps", [], dist_reduce_fx="cat")

    def update(self, samples: Tensor, target: Tensor, latent: Tensor) -> None:
        if samples.ndim != 6 or samples.shape[1:] != target.shape:
            raise ValueError(
                f"expected samples (N, B, T, C, H, W) and target (B, T, C, H, W), got "
                f"{tuple(samples.shape)} and {tuple(target.shape)}"
            )
        # Only the last frames are scored: cut the videos to them before the per-pixel work.
        samples, target = samples[:, :, -self.late :], signed_range(target[:, -self.late :]).to(samples.device)
        mask = late_frames(latent, self.late)[:, -self.late :].to(samples.device)
        if not bool(mask.any(dim=1).all()):
            raise ValueError(f"latent: every video needs generated frames among its last {self.late} frames")
        # PSNR of each video's mean squared error over its late frames, not the mean of per-frame PSNRs: the maze
        # tour repeats, so a frozen frame can match one late frame exactly, and one infinite frame would make the
        # whole video's PSNR infinite.
        squared = (to_unit_range(samples) - to_unit_range(target)).square().flatten(3).mean(dim=3)  # (N, B, T)
        mse = (squared * mask).sum(dim=2) / mask.sum(dim=1)  # (N, B)
        self.psnr.append((-10 * torch.log10(mse.to(torch.float64))).mean(dim=0))
        pointwise = crps_from_samples(to_unit_range(samples), to_unit_range(target), self.crps_estimator)
        per_frame = pointwise.flatten(2).mean(dim=2)  # (B, T)
        self.crps.append((per_frame * mask).sum(dim=1) / mask.sum(dim=1))

    def per_video(self) -> dict[str, Tensor]:
        return {"late_psnr": dim_zero_cat(self.psnr), "late_crps": dim_zero_cat(self.crps)}

    def compute(self) -> dict[str, Tensor]:
        return {name: values.mean() for name, values in self.per_video().items()}
