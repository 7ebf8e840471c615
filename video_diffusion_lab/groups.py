"""The configuration groups every method shares, read by LightningCLI / jsonargparse as nested YAML.

    model:
      class_path: RaMViD
      init_args:
        clip: {num_frames: 8, image_size: 16, channels: 3}
        diffusion: {schedule: cosine, steps: 1000, prediction: v}
        sampling: {sampler: ddim, steps: 50}
        task: {task: prediction, num_given: 3}
        ema: {decay: 0.995}
        optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 1.0e-3}}
        ...                     # and the method's own fields

Each group is a small frozen dataclass that checks itself when built, with errors that name the field as it is
written in the YAML (``sampling.steps: ...``). A method's ``__init__`` takes these groups and lists only its own
paper's fields besides them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from video_diffusion_lab.diffusion import GRIDS, SAMPLERS, SCHEDULES, TASKS, observed_for_task
from video_diffusion_lab.diffusion.parameterization import PREDICTIONS
from video_diffusion_lab.diffusion.schemes import SCHEMES

EMA_WEIGHTS = ("ema", "raw")
ADAPTIVE_DISTANCES = ("lpips", "pixel")


def _choice(field: str, value: str, choices: Any) -> None:
    if value not in choices:
        raise ValueError(f"{field}: unknown value {value!r}; choose one of {tuple(choices)}")


@dataclass(frozen=True)
class ClipShape:
    """The clips the network is built for: frames per clip (per pass), frame size and channels."""

    num_frames: int = 16
    image_size: int = 64
    channels: int = 3

    def __post_init__(self) -> None:
        for name in ("num_frames", "image_size", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"clip.{name}: must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process and what the network predicts."""

    schedule: str = "linear"  # linear | cosine (discrete, improved-diffusion) | cosine_logsnr (continuous, VDM)
    steps: int = 1000  # N of a discrete schedule; ignored by cosine_logsnr
    prediction: str = "eps"  # eps | x0 | v

    def __post_init__(self) -> None:
        _choice("diffusion.schedule", self.schedule, SCHEDULES)
        _choice("diffusion.prediction", self.prediction, PREDICTIONS)
        if self.steps < 1:
            raise ValueError(f"diffusion.steps: must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class SamplingConfig:
    """How evaluation and ``predict`` sample. Every option of every sampler is here; a sampler reads the ones it
    takes (``diffusion.sample`` passes each sampler only its own).

    steps: network evaluations of the chain (null = the schedule's full chain, e.g. 1000 steps of DDPM).
    eta: DDIM's noise (0 = deterministic, 1 = DDPM posterior variance).
    gamma: ancestral samplers' variance, log-interpolated between the posterior variance (0, DDPM "fixed small")
        and beta_t (1, "fixed large": what improved-diffusion, FDM and RaMViD sample with).
    pc_delta, corrector_steps: the predictor-corrector's Langevin step size and corrections per step (VDM: 0.1, 1).
    s_churn: Heun's stochastic churn (Karras et al.; 0 = the deterministic probability-flow ODE).
    second_order_max: Heun takes its second evaluation on steps that start at sigma / alpha <= this (80, Karras et
        al.'s top level); steps above it are Euler steps (.inf = every step, as Karras et al.'s own grids).
    sde_eta: noise of the DPM-Solver++ SDE samplers (1 = the SDE, 0 = deterministic).
    grid: the time grid: uniform in t, uniform in log-SNR, or Karras et al.'s (exponent ``rho``);
    sigma_max: start the grid where sigma / alpha = sigma_max (null = the schedule's noisiest time).
    seed: evaluation noise is seeded per clip by (seed, the clip's data set index, sample number).
    """

    sampler: str = "ddim"
    steps: int | None = None
    grid: str = "uniform"
    eta: float = 0.0
    gamma: float = 0.0
    pc_delta: float = 0.1
    corrector_steps: int = 1
    s_churn: float = 0.0
    second_order_max: float = 80.0
    sde_eta: float = 1.0
    rho: float = 7.0
    sigma_max: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("sampling.sampler", self.sampler, SAMPLERS)
        _choice("sampling.grid", self.grid, GRIDS)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"sampling.steps: must be >= 1 or null (the full chain), got {self.steps}")
        if self.eta < 0:
            raise ValueError(f"sampling.eta: must be >= 0, got {self.eta}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"sampling.gamma: the variance interpolation must be in [0, 1], got {self.gamma}")
        if self.pc_delta <= 0:
            raise ValueError(f"sampling.pc_delta: the Langevin step size must be > 0, got {self.pc_delta}")
        if self.corrector_steps < 0:
            raise ValueError(f"sampling.corrector_steps: must be >= 0, got {self.corrector_steps}")
        for name in ("s_churn", "sde_eta"):
            if getattr(self, name) < 0:
                raise ValueError(f"sampling.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.second_order_max > 0:
            raise ValueError(f"sampling.second_order_max: must be > 0, got {self.second_order_max}")
        if self.rho <= 0:
            raise ValueError(f"sampling.rho: must be > 0, got {self.rho}")
        if self.sigma_max is not None and self.sigma_max <= 0:
            raise ValueError(f"sampling.sigma_max: must be > 0 or null, got {self.sigma_max}")

    def options(self) -> dict[str, Any]:
        """The sampler options under the names the samplers take."""
        return {
            "eta": self.eta,
            "gamma": self.gamma,
            "delta": self.pc_delta,
            "corrector_steps": self.corrector_steps,
            "s_churn": self.s_churn,
            "second_order_max": self.second_order_max,
            "sde_eta": self.sde_eta,
            "rho": self.rho,
            "sigma_max": self.sigma_max,
        }


@dataclass(frozen=True)
class TaskConfig:
    """What evaluation and ``predict`` generate: which frames are given, and how long the videos are.

    video_length: frames of the videos ``test`` and ``predict`` generate (null = one clip, ``clip.num_frames``).
        Longer videos are generated stage by stage with the rollout scheme; test clips are cut to this length.
    """

    task: str = "prediction"  # prediction | infilling | upsampling | unconditional
    num_given: int = 1
    video_length: int | None = None

    def __post_init__(self) -> None:
        _choice("task.task", self.task, TASKS)
        if self.video_length is not None and self.video_length < 1:
            raise ValueError(f"task.video_length: must be >= 1 or null, got {self.video_length}")

    def check(self, clip_frames: int) -> None:
        """Checks that need the clip length."""
        length = self.video_length or clip_frames
        try:
            observed_for_task(self.task, length, self.num_given)
        except ValueError as error:
            raise ValueError(f"task.{error}") from None
        if length > clip_frames and self.task != "prediction":
            raise ValueError(
                f"task.video_length: videos longer than one clip ({length} > clip.num_frames={clip_frames}) are "
                f"generated by rolling prediction forward; task must be 'prediction', got {self.task!r}"
            )


@dataclass(frozen=True)
class RolloutConfig:
    """How videos longer than one pass are generated (FDM's sampling schemes, Harvey et al. 2022, Sec. 5).

    frames_per_pass: frames in one sampling pass (null = clip.num_frames);
    frames_per_stage: new frames generated per stage (null = frames_per_pass - task.num_given);
    adaptive_distance: how adaptive schemes choose observed frames (``lpips`` needs its weight files).
    """

    scheme: str = "autoreg"
    frames_per_pass: int | None = None
    frames_per_stage: int | None = None
    adaptive_distance: str = "pixel"

    def __post_init__(self) -> None:
        _choice("rollout.scheme", self.scheme, SCHEMES)
        _choice("rollout.adaptive_distance", self.adaptive_distance, ADAPTIVE_DISTANCES)
        if self.frames_per_pass is not None and self.frames_per_pass < 2:
            raise ValueError(f"rollout.frames_per_pass: must be >= 2 or null, got {self.frames_per_pass}")
        if self.frames_per_stage is not None and self.frames_per_stage < 1:
            raise ValueError(f"rollout.frames_per_stage: must be >= 1 or null, got {self.frames_per_stage}")

    def pass_frames(self, clip_frames: int) -> int:
        frames = self.frames_per_pass or clip_frames
        if frames > clip_frames:
            raise ValueError(
                f"rollout.frames_per_pass: {frames} is more than the network's clip.num_frames={clip_frames}"
            )
        return frames

    def stage_frames(self, clip_frames: int, num_given: int) -> int:
        pass_frames = self.pass_frames(clip_frames)
        frames = self.frames_per_stage or max(1, pass_frames - num_given)
        if not 1 <= frames < pass_frames:
            raise ValueError(
                f"rollout.frames_per_stage: must be in [1, frames_per_pass) = [1, {pass_frames}), got {frames}"
            )
        return frames


@dataclass(frozen=True)
class EMAConfig:
    """The exponential moving average of the weights, and which weights evaluation uses.

    Every ``every_n_steps`` optimiser steps the average moves towards the weights by (1 - decay); before
    ``start_step`` it is a copy of them instead (RVD's released trainer: decay 0.99, every 5 steps, from step 2000;
    improved-diffusion: every step from the start). ``evaluate``: ``ema`` or ``raw`` weights for validation, test and
    predict (RVD's released test script evaluates the raw weights).
    """

    decay: float = 0.9999
    every_n_steps: int = 1
    start_step: int = 0
    evaluate: str = "ema"

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"ema.decay: must be in [0, 1), got {self.decay}")
        if self.every_n_steps < 1:
            raise ValueError(f"ema.every_n_steps: must be >= 1, got {self.every_n_steps}")
        if self.start_step < 0:
            raise ValueError(f"ema.start_step: must be >= 0, got {self.start_step}")
        _choice("ema.evaluate", self.evaluate, EMA_WEIGHTS)


GROUPS = (ClipShape, DiffusionConfig, SamplingConfig, TaskConfig, RolloutConfig, EMAConfig)

# Checkpoints of modules built outside the CLI store these objects in their hyper-parameters; allow-listing them
# keeps checkpoints loadable with weights_only=True.
torch.serialization.add_safe_globals(list(GROUPS))


def field_names(group: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(group))
