"""Long-video sampling schemes: which frames each sampling pass generates, given which.

A scheme is a pure function of (video length T, frames per pass K, frames generated per stage m, number of frames
given at the start) returning the ordered stages, each a ``Stage(observed, latent)`` of absolute frame indices with
at most K frames in all. ``run_stages`` drives any masked sampler through them, writing each stage's frames into the
video, which stays where it is (off the accelerator); only a stage's frames are moved to the model's device.

Schemes (Harvey et al. 2022, "Flexible Diffusion Modeling of Long Videos", Sec. 5 and Appendix D):
- ``autoreg``: each stage generates the next m frames given the K - m most recent ones.
- ``long_range``: as autoreg, but half of the observed slots go to the latest frames of the given prefix.
- ``hierarchy_2`` / ``hierarchy_3``: level 1 generates m frames spread evenly over the frames still to generate
  (given frames spread evenly over the prefix); level l fills the gaps on a grid of spacing
  Δ_l = int(((T - n_given) / (m - 1)) ** ((N - l) / (N - 1))) (Δ_N = 1), left to right, m frames a stage,
  each stage observing the known frames between its latent frames and the nearest known frames after and before.
- ``adaptive_autoreg`` / ``adaptive_hierarchy_2``: the latent frames of the base scheme; the observed frames are
  the required neighbours plus frames chosen per video at run time, greedily as far apart as possible (LPIPS in the
  paper) among the frames known by then (``Stage.adaptive`` says how many).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from video_diffusion_lab.diffusion.masks import FrameMask


@dataclass(frozen=True)
class Stage:
    observed: tuple[int, ...]
    latent: tuple[int, ...]
    adaptive: int = 0  # further observed frames chosen per video at run time among the known frames

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(sorted(self.observed + self.latent))


def check_scheme_arguments(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> None:
    if frames_per_stage < 1 or frames_per_stage >= frames_per_pass:
        raise ValueError(
            f"frames_per_stage: must be in [1, frames_per_pass) = [1, {frames_per_pass}), got {frames_per_stage}"
        )
    if not 0 <= num_given < video_length:
        raise ValueError(f"num_given: must be in [0, video_length) = [0, {video_length}), got {num_given}")


def observed_slots(frames_per_pass: int, frames_per_stage: int) -> int:
    """The K - m observed slots of a stage, also of a last stage with fewer than m frames left to generate (the
    released ``sampling_schemes.py``: ``n_to_condition_on = max_frames - step_size``); that pass then holds fewer than
    K frames, as in the paper's runs."""
    return frames_per_pass - frames_per_stage


# ------------------------------------------------------------------------------------------------------ autoregressive
def autoregressive(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> list[Stage]:
    """Autoreg: each stage generates the next ``frames_per_stage`` frames given the most recent known ones."""
    check_scheme_arguments(video_length, frames_per_pass, frames_per_stage, num_given)
    stages, known = [], num_given
    context = observed_slots(frames_per_pass, frames_per_stage)
    while known < video_length:
        latent = tuple(range(known, min(known + frames_per_stage, video_length)))
        observed = tuple(range(max(0, known - context), known))
        stages.append(Stage(observed, latent))
        known = latent[-1] + 1
    return stages


def long_range(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> list[Stage]:
    """Long-range: the next frames given half the context from the most recent frames and half from the latest
    frames of the given prefix (which may lie far in the past); slots neither can fill go to more recent frames."""
    check_scheme_arguments(video_length, frames_per_pass, frames_per_stage, num_given)
    stages, known = [], num_given
    while known < video_length:
        latent = tuple(range(known, min(known + frames_per_stage, video_length)))
        context = min(observed_slots(frames_per_pass, frames_per_stage), known)
        recent = list(range(known - 1, known - 1 - max(1, context // 2), -1)) if context else []
        chosen = set(recent)
        for i in range(num_given - 1, -1, -1):  # latest frames of the prefix
            if len(chosen) >= context:
                break
            chosen.add(i)
        i = known - 1
        while len(chosen) < context:  # prefix exhausted (or small): more recent frames
            chosen.add(i)
            i -= 1
        stages.append(Stage(tuple(sorted(chosen)), latent))
        known = latent[-1] + 1
    return stages


def adaptive_autoregressive(
    video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int
) -> list[Stage]:
    """Adaptive Autoreg: autoreg's latent frames; the latest known frame is observed, the other K - m - 1 observed
    frames are chosen per video at run time among all known frames."""
    stages = []
    for stage in autoregressive(video_length, frames_per_pass, frames_per_stage, num_given):
        known = stage.latent[0]
        if known == 0:
            stages.append(stage)
            continue
        context = observed_slots(frames_per_pass, frames_per_stage)
        stages.append(Stage((known - 1,), stage.latent, adaptive=min(context, known) - 1))
    return stages


# --------------------------------------------------------------------------------------------------------- hierarchy
def hierarchy_spacing(video_length: int, frames_per_stage: int, num_given: int, levels: int, level: int) -> int:
    """Δ_l = int(((T - n_given) / (m - 1)) ** ((N - l) / (N - 1))), at least 1; Δ_N = 1."""
    base = (video_length - num_given) / max(frames_per_stage - 1, 1)
    return max(1, int(base ** ((levels - level) / (levels - 1))))


def _neighbours(done: set[int], chunk: Sequence[int], slots: int) -> tuple[list[int], list[int], list[int]]:
    """Known frames inside the chunk's span, and the nearest known ones after and before it (nearest first)."""
    first, last = chunk[0], chunk[-1]
    inside = sorted(i for i in done if first < i < last)
    after = sorted(i for i in done if i > last)[:slots]
    before = sorted((i for i in done if i < first), reverse=True)[:slots]
    return inside, after, before


def _hierarchy(
    video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int, levels: int, adaptive: bool
) -> list[Stage]:
    check_scheme_arguments(video_length, frames_per_pass, frames_per_stage, num_given)
    n_obs = frames_per_pass - frames_per_stage  # observed slots of a full stage
    done = set(range(num_given))
    stages: list[Stage] = []
    for level in range(1, levels + 1):
        if level == 1:
            grid = np.linspace(num_given, video_length - 1, frames_per_stage)
            targets = sorted({int(round(x)) for x in grid})
        elif level < levels:
            spacing = hierarchy_spacing(video_length, frames_per_stage, num_given, levels, level)
            targets = [i for i in range(num_given, video_length, spacing) if i not in done]
        else:
            targets = [i for i in range(num_given, video_length) if i not in done]
        position = 0
        while position < len(targets):
            step = frames_per_stage
            while True:  # lower the step until frames on both sides of the stage fit in its observed slots
                chunk = targets[position : position + step]
                inside, after, before = _neighbours(done, chunk, frames_per_pass)
                room = observed_slots(frames_per_pass, step) - len(inside)
                if room >= min(2, len(after) + len(before)) and room >= 0 or step == 1:
                    break
                step -= 1
            size = len(chunk)
            room = max(room, 0)
            if level == 1 and not adaptive:  # the prefix, evenly spaced (long-range context)
                pick = (
                    sorted({int(x) for x in np.linspace(0, num_given - 1, min(n_obs, num_given))}) if num_given else []
                )
                observed = set(pick)
            elif adaptive:  # required: what lies between, the two nearest before and the nearest after
                observed = set(inside[:room]) | set(before[: min(2, room)])
                observed |= set(after[: max(0, min(1, room - len(observed)))])
            else:
                n_after = min(len(after), room // 2)
                n_before = min(len(before), room - n_after)
                n_after = min(len(after), room - n_before)
                observed = set(inside) | set(after[:n_after]) | set(before[:n_before])
            extra = 0
            if adaptive:
                extra = max(0, min(room + len(inside), len(done)) - len(observed))
                extra = min(extra, frames_per_pass - size - len(observed))
            stages.append(Stage(tuple(sorted(observed)), tuple(chunk), adaptive=extra))
            done.update(chunk)
            position += size
    return stages


def hierarchy_2(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> list[Stage]:
    """Hierarchy-2: m frames spread over the video, then every gap filled left to right."""
    return _hierarchy(video_length, frames_per_pass, frames_per_stage, num_given, levels=2, adaptive=False)


def hierarchy_3(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> list[Stage]:
    """Hierarchy-3: a sparse level, an intermediate grid of spacing about sqrt((T - n_given) / (m - 1)), then the
    rest."""
    return _hierarchy(video_length, frames_per_pass, frames_per_stage, num_given, levels=3, adaptive=False)


def adaptive_hierarchy_2(video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int) -> list[Stage]:
    """Adaptive Hierarchy-2: Hierarchy-2's latent frames; observed = the frames between them, the two nearest known
    before and the nearest after, and the remaining slots chosen per video at run time."""
    return _hierarchy(video_length, frames_per_pass, frames_per_stage, num_given, levels=2, adaptive=True)


SchemeFn = Callable[[int, int, int, int], list[Stage]]
SCHEMES: dict[str, SchemeFn] = {
    "autoreg": autoregressive,
    "long_range": long_range,
    "hierarchy_2": hierarchy_2,
    "hierarchy_3": hierarchy_3,
    "adaptive_autoreg": adaptive_autoregressive,
    "adaptive_hierarchy_2": adaptive_hierarchy_2,
}

# Schemes whose every stage is a contiguous window of frames; networks that assume evenly spaced, contiguous
# frames (3D convolutions over time) can run only these.
CONTIGUOUS_SCHEMES = {"autoreg"}


def get_scheme(name: str) -> SchemeFn:
    if name not in SCHEMES:
        raise ValueError(f"scheme: unknown sampling scheme {name!r}; choose one of {tuple(SCHEMES)}")
    return SCHEMES[name]


def check_scheme_supported(name: str, contiguous_only: bool) -> None:
    """Stop before sampling when a model that needs contiguous windows is asked for another scheme."""
    get_scheme(name)
    if contiguous_only and name not in CONTIGUOUS_SCHEMES:
        raise ValueError(
            f"scheme: {name!r} places frames at arbitrary positions, but this model assumes evenly spaced, contiguous "
            f"frames (3D convolutions over time); it runs only {sorted(CONTIGUOUS_SCHEMES)}"
        )


def build_stages(
    name: str, video_length: int, frames_per_pass: int, frames_per_stage: int, num_given: int
) -> list[Stage]:
    return get_scheme(name)(video_length, frames_per_pass, frames_per_stage, num_given)


# ------------------------------------------------------------------------------------------------ adaptive selection
Embedder = Callable[[Tensor], Tensor]  # (N, C, H, W) frames in [-1, 1] -> (N, D): distance = squared L2


def pixel_embedding(frames: Tensor) -> Tensor:
    """Frames flattened and scaled so that the squared distance is the mean squared pixel difference."""
    flat = frames.flatten(1).float()
    return flat / flat.shape[1] ** 0.5


def farthest_point_selection(embeddings: Tensor, required: Sequence[int], n: int) -> list[int]:
    """Greedy: start from ``required`` rows (or row 0), add the row farthest (min squared distance) from the chosen
    ones until ``n`` rows are chosen. Returns row numbers in the order chosen."""
    count = embeddings.shape[0]
    chosen = list(required) or [0]
    n = min(n, count)
    distance = torch.full((count,), float("inf"))
    for row in chosen:
        distance = torch.minimum(distance, ((embeddings - embeddings[row]) ** 2).sum(1))
    while len(chosen) < n:
        distance[chosen] = -1.0
        row = int(distance.argmax())
        chosen.append(row)
        distance = torch.minimum(distance, ((embeddings - embeddings[row]) ** 2).sum(1))
    return chosen[:n] if required else chosen


def select_adaptive_observed(
    video: Tensor, stage: Stage, known: Iterable[int], embed: Embedder, device: torch.device | str = "cpu"
) -> list[tuple[int, ...]]:
    """Per video: the stage's required observed frames plus ``stage.adaptive`` known frames chosen greedily to be as
    different as possible from those already chosen."""
    candidates = sorted(set(known) - set(stage.latent))
    if not stage.adaptive or not candidates:
        return [stage.observed] * video.shape[0]
    required = [candidates.index(i) for i in stage.observed]
    frames = video[:, candidates]  # (B, N, C, H, W), on the video's device
    chosen = []
    with torch.no_grad():
        for b in range(video.shape[0]):
            emb = embed(frames[b].to(device)).float().cpu()
            rows = farthest_point_selection(emb, required, len(required) + stage.adaptive)
            chosen.append(tuple(sorted(candidates[r] for r in rows)))
    return chosen


# ----------------------------------------------------------------------------------------------------------- running
SampleFn = Callable[[Tensor, FrameMask], Tensor]


def check_stages(stages: Sequence[Stage], frames_per_pass: int, contiguous_only: bool) -> None:
    for stage in stages:
        indices = stage.indices
        if len(indices) + stage.adaptive > frames_per_pass:
            raise ValueError(
                f"frames_per_pass: a stage holds {len(indices) + stage.adaptive} frames, more than "
                f"frames_per_pass={frames_per_pass}"
            )
        if contiguous_only and (stage.adaptive or indices != tuple(range(indices[0], indices[0] + len(indices)))):
            raise ValueError("scheme: this model runs only schemes whose stages are contiguous windows (autoreg)")


def run_stages(
    video: Tensor,
    stages: Sequence[Stage],
    sample_fn: SampleFn,
    frames_per_pass: int,
    device: torch.device | str,
    contiguous_only: bool = False,
    *,
    pad_to_pass: bool = False,
    known: Iterable[int] | None = None,
    embed: Embedder | None = None,
    callback: Callable[[int, Stage, list[tuple[int, ...]]], None] | None = None,
) -> Tensor:
    """Fill ``video`` (B, T, C, H, W, on any device) stage by stage and return it.

    ``sample_fn(given, mask)`` samples one pass of at most ``frames_per_pass`` frames on ``device``. Every stage is
    checked before the first pass. By default a pass holds exactly the stage's frames; ``pad_to_pass`` pads every
    pass to ``frames_per_pass`` slots (padding slots are neither observed nor latent). Adaptive stages choose their
    further observed frames per video with ``embed`` among ``known`` (the given frames) and the frames generated so
    far; per-video frame sets of different sizes are padded to the largest. Only latent frames are written back.
    ``callback(stage_number, stage, observed_per_video)`` sees what each pass observed (for scheme pictures).
    """
    check_stages(stages, frames_per_pass, contiguous_only)
    if any(stage.adaptive for stage in stages) and (known is None or embed is None):
        raise ValueError("scheme: adaptive stages need the given frames (known) and a frame embedding (embed)")
    batch = video.shape[0]
    done = set(known or ())
    for number, stage in enumerate(stages):
        if stage.adaptive:
            observed_sets = select_adaptive_observed(video, stage, done, embed, device)
        else:
            observed_sets = [stage.observed] * batch
        rows = [sorted(set(obs) | set(stage.latent)) for obs in observed_sets]
        slots = frames_per_pass if pad_to_pass else max(len(r) for r in rows)
        frame_indices = torch.tensor([r + [r[-1]] * (slots - len(r)) for r in rows])
        real = torch.arange(slots)[None] < torch.tensor([len(r) for r in rows])[:, None]
        latent_set = set(stage.latent)
        latent = torch.tensor([[i in latent_set for i in r] + [False] * (slots - len(r)) for r in rows])
        observed = real & ~latent
        mask = FrameMask(observed, latent, frame_indices).to(device)
        given = torch.stack([video[b, frame_indices[b]] for b in range(batch)]).to(device)
        window = sample_fn(given, mask).to(video.device, video.dtype)
        for b in range(batch):
            slots_b = latent[b].nonzero().flatten()
            video[b, frame_indices[b, slots_b]] = window[b, slots_b]
        done |= latent_set
        if callback is not None:
            callback(number, stage, [tuple(o) for o in observed_sets])
    return video


# ------------------------------------------------------------------------------------------------------- the picture
def scheme_image(
    stages: Sequence[Stage],
    video_length: int,
    num_given: int,
    observed_per_stage: Sequence[Sequence[int]] | None = None,
    cell: int = 12,
) -> np.ndarray:
    """uint8 (H, W, 3): one row per stage (top to bottom), one column per frame; observed frames blue, latent
    frames red, given frames grey in a first row, the rest white. Columns narrower than a pixel are merged."""
    rows = len(stages) + 1
    width = max(1, min(16, 1600 // max(video_length, 1)))
    image = np.full((rows * cell, video_length * width, 3), 255, dtype=np.uint8)

    def paint(row: int, frames: Iterable[int], color: tuple[int, int, int]) -> None:
        for i in frames:
            image[row * cell : (row + 1) * cell - (cell > 2), i * width : (i + 1) * width] = color

    paint(0, range(num_given), (128, 128, 128))
    for r, stage in enumerate(stages):
        observed = observed_per_stage[r] if observed_per_stage is not None else stage.observed
        paint(r + 1, observed, (40, 90, 220))
        paint(r + 1, stage.latent, (220, 50, 40))
    return image
