"""Trivial predictors that every method must beat."""

from __future__ import annotations

import torch
from torch import Tensor

from video_diffusion_lab.diffusion.masks import FrameMask


def copy_last_observed(video: Tensor, mask: FrameMask) -> Tensor:
    """Each latent frame replaced by the latest observed frame at or before its position in the video.

    Latent frames before the first observed frame take the earliest observed one; with nothing observed
    (unconditional generation) they are mid-grey. Observed frames are returned unchanged.
    """
    fi = mask.frame_indices
    observed = mask.observed
    earlier = observed[:, None, :] & (fi[:, None, :] <= fi[:, :, None])  # (B, t, s): s observed, not after t
    neg_inf = torch.finfo(torch.float32).min
    latest_before = torch.where(earlier, fi[:, None, :].float(), neg_inf).argmax(dim=2)
    earliest = torch.where(observed, -fi.float(), neg_inf).argmax(dim=1, keepdim=True).expand_as(fi)
    source = torch.where(earlier.any(dim=2), latest_before, earliest)  # (B, T)
    copied = torch.gather(video, 1, source.reshape(*source.shape, 1, 1, 1).expand_as(video))
    copied = torch.where(FrameMask.per_frame(observed.any(dim=1, keepdim=True), video), copied, torch.zeros_like(video))
    return mask.keep_observed(copied, video)
