"""Frame masks: which frames of a clip are given, which are generated, and where each frame sits in its video.

A ``FrameMask`` is made once (by a method's training distribution, or from the task chosen for sampling) and travels
unchanged to the loss, to the network and to the sampler. Nothing downstream re-derives it from "the first k frames".

Per example and frame slot:
- ``observed``: the frame is given (clean, kept exactly by samplers, excluded from the loss);
- ``latent``: the frame is generated (noised in training, counted by the loss, produced by samplers);
- neither: a padding slot (FDM fills fewer than K slots); networks must ignore it;
- ``frame_indices``: the slot's absolute position in the video (FDM's relative attention, long-video schemes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

TASKS = ("prediction", "infilling", "upsampling", "unconditional")


@dataclass(frozen=True)
class FrameMask:
    observed: Tensor  # (B, T) bool
    latent: Tensor  # (B, T) bool
    frame_indices: Tensor  # (B, T) long

    def __post_init__(self) -> None:
        if self.observed.shape != self.latent.shape or self.observed.shape != self.frame_indices.shape:
            raise ValueError(
                f"FrameMask: observed {tuple(self.observed.shape)}, latent {tuple(self.latent.shape)} and "
                f"frame_indices {tuple(self.frame_indices.shape)} must all be (batch, frames)"
            )
        if self.observed.dtype != torch.bool or self.latent.dtype != torch.bool:
            raise TypeError("FrameMask: observed and latent must be bool tensors")
        if (self.observed & self.latent).any():
            raise ValueError("FrameMask: a frame cannot be both observed and latent")

    @property
    def padding(self) -> Tensor:
        return ~(self.observed | self.latent)

    @property
    def shape(self) -> torch.Size:
        return self.observed.shape

    def to(self, device: torch.device | str) -> FrameMask:
        return FrameMask(self.observed.to(device), self.latent.to(device), self.frame_indices.to(device))

    def __getitem__(self, index) -> FrameMask:
        """Select examples (the batch dimension)."""
        return FrameMask(self.observed[index], self.latent[index], self.frame_indices[index])

    def repeat(self, n: int) -> FrameMask:
        """Each example repeated n times in a row (for N samples per video)."""
        return FrameMask(
            self.observed.repeat_interleave(n, 0),
            self.latent.repeat_interleave(n, 0),
            self.frame_indices.repeat_interleave(n, 0),
        )

    @staticmethod
    def per_frame(flags: Tensor, video: Tensor) -> Tensor:
        """Broadcast (B, T) flags over a (B, T, C, H, W) video."""
        return flags.reshape(*flags.shape, *([1] * (video.ndim - 2)))

    def keep_observed(self, video: Tensor, given: Tensor) -> Tensor:
        """``video`` with its observed frames replaced by the given frames, exactly."""
        return torch.where(self.per_frame(self.observed, video), given, video)

    @classmethod
    def from_observed(cls, observed: Tensor, frame_indices: Tensor | None = None) -> FrameMask:
        """Every frame that is not observed is latent (no padding)."""
        if frame_indices is None:
            frame_indices = default_frame_indices(*observed.shape, device=observed.device)
        return cls(observed.bool(), ~observed.bool(), frame_indices.long())


def default_frame_indices(batch_size: int, num_frames: int, device: torch.device | str | None = None) -> Tensor:
    return torch.arange(num_frames, device=device).expand(batch_size, num_frames).clone()


def observed_for_task(task: str, num_frames: int, num_given: int) -> Tensor:
    """The (T,) observed flags of a sampling task.

    - prediction: the first ``num_given`` frames are given;
    - infilling: the first ceil(num_given / 2) and the last floor(num_given / 2) frames are given;
    - upsampling: every ``num_given``-th frame is given (num_given = 2: frames 0, 2, 4, ...), i.e. frame-rate
      upsampling by that factor;
    - unconditional: nothing is given (num_given is ignored).
    """
    if task not in TASKS:
        raise ValueError(f"task: unknown task {task!r}; choose one of {TASKS}")
    observed = torch.zeros(num_frames, dtype=torch.bool)
    if task == "unconditional":
        return observed
    if task == "upsampling":
        if not 2 <= num_given <= num_frames:
            raise ValueError(f"num_given: upsampling needs a factor in [2, {num_frames}], got {num_given}")
        observed[::num_given] = True
        return observed
    if not 1 <= num_given < num_frames:
        raise ValueError(f"num_given: {task} needs 1 <= num_given < num_frames ({num_frames}), got {num_given}")
    if task == "prediction":
        observed[:num_given] = True
    else:  # infilling
        head = (num_given + 1) // 2
        observed[:head] = True
        observed[num_frames - (num_given - head) :] = True
    return observed


def task_mask(
    task: str, batch_size: int, num_frames: int, num_given: int, frame_indices: Tensor | None = None
) -> FrameMask:
    observed = observed_for_task(task, num_frames, num_given).expand(batch_size, num_frames)
    device = frame_indices.device if frame_indices is not None else None
    return FrameMask.from_observed(observed.to(device), frame_indices)


class RandomFrameMasks:
    """RaMViD's training masks (Höppe et al. 2022, Sec. 3): with probability ``p_uncond`` nothing is given;
    otherwise r ~ U{1, ..., max_given} frames at uniformly random positions are given.

    ``max_given`` defaults to T - 1 so that every example keeps a frame to learn from; the released code uses 4.
    """

    def __init__(self, p_uncond: float = 0.25, max_given: int | None = None):
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"p_uncond must be in [0, 1], got {p_uncond}")
        if max_given is not None and max_given < 1:
            raise ValueError(f"max_given must be >= 1, got {max_given}")
        self.p_uncond = p_uncond
        self.max_given = max_given

    def __call__(self, frame_indices: Tensor, generator: torch.Generator | None = None) -> FrameMask:
        batch_size, num_frames = frame_indices.shape
        device = frame_indices.device
        max_given = min(self.max_given or num_frames - 1, num_frames - 1)
        if max_given < 1:  # single-frame clips (images) can only be generated unconditionally
            return FrameMask.from_observed(torch.zeros_like(frame_indices, dtype=torch.bool), frame_indices)
        # r ~ U{1..max_given}, then the r positions with the smallest random keys are given.
        r = torch.randint(1, max_given + 1, (batch_size, 1), generator=generator).to(device)
        keys = torch.rand(batch_size, num_frames, generator=generator).to(device)
        ranks = keys.argsort(dim=1).argsort(dim=1)
        observed = ranks < r
        unconditional = torch.rand(batch_size, 1, generator=generator).to(device) < self.p_uncond
        observed = observed & ~unconditional
        return FrameMask.from_observed(observed, frame_indices)
