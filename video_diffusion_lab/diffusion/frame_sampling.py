"""FDM's training distribution over which frames a pass holds (Harvey et al. 2022, Sec. 4 and Appendix C).

Per example, K slots are filled with groups of frames of a video of length T:
- a group has s ~ U{1..min(K, T)} evenly spaced frames, spacing Δ ~ log-uniform on [1, T / (s - 0.999)] (about
  T/(s-1)) and a start uniform over the positions that keep the whole group inside the video;
- the first group is latent; each later group is observed or latent with probability 1/2;
- indices already taken are dropped from a new group; the first group whose remaining frames no longer fit the free
  slots ends the example (it is discarded).
The slots left over are padding. One model trained this way serves every sampling scheme (Autoreg, Long-range,
Hierarchy-N, Adaptive) because any (observed, latent) split of at most K frames is in the support.

Windows (``TrainingWindows``, a departure, off by default): the released code draws the groups over the whole
video. Over T = 300 frames and K = 10, a latent frame then has an observed frame within 5 frames in about 2% of its
draws (``benchmarks/results/fdm_training_windows.md``), so a short fit learns the world's look but not to copy from
neighbouring given frames. With windows, a share ``probability`` of the examples first draws a window, length
log-uniform on [``shortest``, ``longest``] and start uniform, and draws the groups inside it; the other examples keep
the released draw. Every spacing of the released distribution stays in the support; short spacings become more
frequent.

What fills the padding slots (``fdm_training_slots``):
- ``"random_frames"`` (the released code's default, ``pad_with_random_frames=True``): frames of ANOTHER video at
  random positions. They are noised and count in the loss like latent frames, but the network sees them as padding
  (its attention mask is observed | latent). Their observed / latent flags are read from the example's own mask at
  those random positions, as the released ``prepare_training_batch`` does, so now and then a padding slot is flagged
  observed (it then enters clean and stays out of the loss) or latent. The loss is averaged over all K slots.
  Departure: the released trainer takes the padding frames from a second batch of the loader; here they come from
  the next video of the same batch (no second batch is loaded), which for batch size 1 is the video itself.
- ``"masked"``: the slots hold a copy of the last real frame, are neither observed nor latent, take no part in the
  loss and are hidden from the real frames by the network; the loss is averaged over each example's latent frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from video_diffusion_lab.diffusion.masks import FrameMask


@dataclass(frozen=True)
class FrameGroup:
    indices: tuple[int, ...]  # frame positions in the video, duplicates with earlier groups removed
    observed: bool
    size: int  # s, the group size drawn (before removing taken indices)


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def sample_group_indices(video_length: int, max_frames: int, generator: torch.Generator | None = None) -> list[int]:
    """One group: s ~ U{1..min(K, T)} frames, log-uniform spacing in [1, T/(s - 0.999)], uniform start; all in
    [0, T)."""
    max_size = min(max_frames, video_length)
    size = int(torch.randint(1, max_size + 1, (), generator=generator))
    max_spacing = video_length / (size - 0.999)
    while True:
        spacing = math.exp(_uniform(generator) * math.log(max_spacing))  # log Δ ~ U[0, log Δ_max]
        start = _uniform(generator) * (video_length - spacing * (size - 1))
        indices = [int(start + i * spacing) for i in range(size)]
        if all(0 <= i < video_length for i in indices) and len(set(indices)) == size:
            return indices


def sample_frame_groups(
    video_length: int, max_frames: int, generator: torch.Generator | None = None
) -> list[FrameGroup]:
    """The groups of one example, in the order drawn; their frames together number at most ``max_frames``."""
    if video_length < 1:
        raise ValueError(f"video_length: must be >= 1, got {video_length}")
    if max_frames < 1:
        raise ValueError(f"num_frames: frames per pass must be >= 1, got {max_frames}")
    first = sample_group_indices(video_length, max_frames, generator)
    groups = [FrameGroup(tuple(first), observed=False, size=len(first))]
    taken = set(first)
    while len(taken) < min(max_frames, video_length):
        observed = _uniform(generator) < 0.5
        drawn = sample_group_indices(video_length, max_frames, generator)
        new = [i for i in drawn if i not in taken]
        if len(new) > max_frames - len(taken):
            return groups
        if new:
            groups.append(FrameGroup(tuple(new), observed=observed, size=len(drawn)))
            taken.update(new)
    return groups


def sample_frame_indices(
    video_length: int, max_frames: int, generator: torch.Generator | None = None
) -> tuple[list[int], list[bool]]:
    """Sorted frame indices of one example and their observed flags (at most ``max_frames``, at least one latent)."""
    flags: dict[int, bool] = {}
    for group in sample_frame_groups(video_length, max_frames, generator):
        flags.update(dict.fromkeys(group.indices, group.observed))
    indices = sorted(flags)
    return indices, [flags[i] for i in indices]


@dataclass(frozen=True)
class TrainingWindows:
    """Which FDM training examples are drawn inside a window of the video, and how long the windows are.

    probability: the share of examples drawn inside a window; the others use the whole video (the released draw);
    shortest / longest: window length, log-uniform on [shortest, longest] (longest null: the whole video's length).
    """

    probability: float = 1.0
    shortest: int = 10
    longest: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.probability <= 1.0:
            raise ValueError(f"windows.probability: must be in (0, 1], got {self.probability}")
        if self.shortest < 1:
            raise ValueError(f"windows.shortest: must be >= 1 frame, got {self.shortest}")
        if self.longest is not None and self.longest < self.shortest:
            raise ValueError(f"windows.longest: must be >= windows.shortest = {self.shortest}, got {self.longest}")


# Checkpoints of modules built outside the CLI keep the group in their hyper-parameters (weights_only=True loading).
torch.serialization.add_safe_globals([TrainingWindows])


def sample_window(
    video_length: int, windows: TrainingWindows, generator: torch.Generator | None = None
) -> tuple[int, int]:
    """(start, length) of the part of the video one example is drawn from: with probability ``windows.probability``
    a window of log-uniform length (both ends capped at T) at a uniform start, else the whole video."""
    if windows.probability < 1.0 and _uniform(generator) >= windows.probability:
        return 0, video_length
    shortest = min(windows.shortest, video_length)
    longest = min(windows.longest or video_length, video_length)
    length = int(math.exp(math.log(shortest) + _uniform(generator) * math.log(longest / shortest)))
    length = max(shortest, min(length, longest))
    start = int(torch.randint(0, video_length - length + 1, (), generator=generator))
    return start, length


def fdm_training_mask(
    batch_size: int,
    video_length: int,
    max_frames: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    windows: TrainingWindows | None = None,
) -> FrameMask:
    """A ``FrameMask`` over ``max_frames`` slots per example: the drawn frames first (sorted), padding after.

    ``frame_indices`` of padding slots repeat the example's last real index (a valid position to gather, ignored
    by the network and the loss). ``windows``: draw examples inside random windows (module docstring).
    """
    observed = torch.zeros(batch_size, max_frames, dtype=torch.bool)
    latent = torch.zeros(batch_size, max_frames, dtype=torch.bool)
    frame_indices = torch.zeros(batch_size, max_frames, dtype=torch.long)
    for b in range(batch_size):
        start, length = (0, video_length) if windows is None else sample_window(video_length, windows, generator)
        indices, flags = sample_frame_indices(length, max_frames, generator)
        indices = [start + i for i in indices]
        n = len(indices)
        frame_indices[b, :n] = torch.tensor(indices)
        frame_indices[b, n:] = indices[-1]
        observed[b, :n] = torch.tensor(flags)
        latent[b, :n] = ~torch.tensor(flags)
    return FrameMask(observed, latent, frame_indices).to(device or "cpu")


PADDING = ("random_frames", "masked")


@dataclass(frozen=True)
class TrainingSlots:
    """One training pass of K slots per example."""

    mask: FrameMask  # what the network sees: observed / latent / padding (neither), absolute frame indices
    source: Tensor  # (B, K) long: the video of the batch each slot's frame is taken from
    loss_frames: Tensor  # (B, K) bool: the slots the loss counts
    average_over_slots: bool  # the loss per example is divided by all K slots (released) or by its loss slots


def fdm_training_slots(
    batch_size: int,
    video_length: int,
    max_frames: int,
    padding: str = "random_frames",
    generator: torch.Generator | None = None,
    windows: TrainingWindows | None = None,
) -> TrainingSlots:
    """The frames, flags and loss slots of one FDM training batch (see the module docstring for ``padding`` and
    ``windows``)."""
    if padding not in PADDING:
        raise ValueError(f"padding: choose one of {PADDING}, got {padding!r}")
    mask = fdm_training_mask(batch_size, video_length, max_frames, generator, windows=windows)
    source = torch.arange(batch_size)[:, None].expand(batch_size, max_frames).clone()
    if padding == "masked":
        return TrainingSlots(mask, source, mask.latent.clone(), average_over_slots=False)
    observed, latent, frame_indices = mask.observed.clone(), mask.latent.clone(), mask.frame_indices.clone()
    for b in range(batch_size):
        real = int((mask.observed[b] | mask.latent[b]).sum())
        if real == max_frames:
            continue
        positions = torch.randint(0, video_length, (max_frames - real,), generator=generator)
        in_own_mask = {
            int(i): (bool(o), bool(lat))
            for i, o, lat in zip(frame_indices[b, :real], observed[b, :real], latent[b, :real])
        }
        flags = [in_own_mask.get(int(p), (False, False)) for p in positions]
        frame_indices[b, real:] = positions
        observed[b, real:] = torch.tensor([o for o, _ in flags])
        latent[b, real:] = torch.tensor([lat for _, lat in flags])
        source[b, real:] = (b + 1) % batch_size
    return TrainingSlots(FrameMask(observed, latent, frame_indices), source, ~observed, average_over_slots=True)


def gather_frames(video: Tensor, frame_indices: Tensor) -> Tensor:
    """(B, T, ...) video, (B, K) indices -> (B, K, ...) frames."""
    index = frame_indices.to(video.device).reshape(*frame_indices.shape, *([1] * (video.ndim - 2)))
    return torch.gather(video, 1, index.expand(-1, -1, *video.shape[2:]))
