"""Noise schedules: how much signal and noise a diffused sample holds at time t.

All schedules are variance preserving, z_t = alpha_t * x + sigma_t * eps with alpha_t^2 + sigma_t^2 = 1, and share
one interface so that losses and samplers never ask which kind they hold:

- ``alpha_sigma(t)``      the coefficients at times t (any shape);
- ``sample_training_times(n)``   times drawn for the training loss;
- ``sampling_times(steps)``      a decreasing grid of ``steps + 1`` times whose last entry is the clean state;
- ``network_time(t)``     the scalar the network is conditioned on.

Discrete schedules (DDPM / improved-diffusion) index t in {0, ..., N-1} and use t = -1 for the clean data
(alpha = 1, sigma = 0). The continuous schedule (VDM) takes t in [0, 1] and is defined through its log-SNR
lambda_t = log(alpha_t^2 / sigma_t^2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

CLEAN_DISCRETE_TIME = -1


class NoiseSchedule(ABC):
    """The forward process q(z_t | x) = N(alpha_t x, sigma_t^2 I)."""

    discrete: bool

    @abstractmethod
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t) as float tensors of t's shape."""

    @abstractmethod
    def sample_training_times(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """n times drawn uniformly over the process, one per training example."""

    @abstractmethod
    def sampling_times(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        """``steps + 1`` decreasing times from pure noise to the clean state (last entry)."""

    @abstractmethod
    def network_time(self, t: Tensor) -> Tensor:
        """The conditioning scalar the network sees for time t."""

    def log_snr(self, t: Tensor) -> Tensor:
        alpha, sigma = self.alpha_sigma(t)
        return 2 * (torch.log(alpha) - torch.log(sigma))

    @property
    def default_sampling_steps(self) -> int:
        """Steps of the full ancestral chain (DDPM's N); continuous schedules choose 256 as VDM does."""
        return 256


def linear_betas(num_steps: int) -> Tensor:
    """Ho et al.'s linear beta schedule, rescaled so any N gives the same process as N = 1000."""
    if num_steps <= 20:
        raise ValueError(f"diffusion_steps: the linear schedule needs more than 20 steps, got {num_steps}")
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = cos^2(((t/N + s) / (1 + s)) * pi / 2)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.tensor(betas, dtype=torch.float64)


class DiscreteSchedule(NoiseSchedule):
    """DDPM's N-step chain: alpha_bar_t = prod_{s <= t} (1 - beta_s), alpha_t = sqrt(alpha_bar_t)."""

    discrete = True

    def __init__(self, betas: Tensor):
        if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.betas = betas.to(torch.float64)
        self.num_steps = len(betas)
        alpha_bar = torch.cumprod(1 - self.betas, dim=0)
        # Index 0 holds the clean state so that t = -1 maps to alpha_bar = 1.
        self._alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar])

    @classmethod
    def linear(cls, num_steps: int = 1000) -> "DiscreteSchedule":
        return cls(linear_betas(num_steps))

    @classmethod
    def cosine(cls, num_steps: int = 1000) -> "DiscreteSchedule":
        return cls(cosine_betas(num_steps))

    @property
    def alpha_bar(self) -> Tensor:
        """alpha_bar_t for t = 0..N-1 (float64)."""
        return self._alpha_bar[1:]

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        index = (t.long() + 1).clamp(0, self.num_steps)
        alpha_bar = self._alpha_bar.to(t.device)[index]
        return alpha_bar.sqrt().float(), (1 - alpha_bar).sqrt().float()

    def sample_training_times(self, n: int, device: torch.device | str | None = None) -> Tensor:
        return torch.randint(0, self.num_steps, (n,), device=device)

    def sampling_times(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        if not 1 <= steps <= self.num_steps:
            raise ValueError(f"sampling steps must be in [1, {self.num_steps}] for this schedule, got {steps}")
        # Evenly spaced respacing (DDIM / improved-diffusion "timestep_respacing"), always starting at N-1.
        grid = torch.linspace(self.num_steps - 1, 0, steps, dtype=torch.float64).round().long()
        return torch.cat([grid, torch.tensor([CLEAN_DISCRETE_TIME])]).to(device)

    def network_time(self, t: Tensor) -> Tensor:
        # improved-diffusion's rescale_timesteps: the network always sees times on a 0..1000 scale.
        return t.float() * (1000.0 / self.num_steps)

    @property
    def default_sampling_steps(self) -> int:
        return self.num_steps


class CosineLogSNRSchedule(NoiseSchedule):
    """VDM's continuous cosine schedule: lambda_t = -2 log tan(pi t / 2), clipped to [logsnr_min, logsnr_max].

    The clipping is done by mapping t linearly onto the interval of the unclipped schedule that spans
    [logsnr_min, logsnr_max], as in Kingma et al. / Ho et al., so lambda_0 = logsnr_max and lambda_1 = logsnr_min.
    """

    discrete = False

    def __init__(self, logsnr_min: float = -20.0, logsnr_max: float = 20.0):
        if not logsnr_min < logsnr_max:
            raise ValueError("logsnr_min must be smaller than logsnr_max")
        self.logsnr_min, self.logsnr_max = logsnr_min, logsnr_max
        self._t_min = math.atan(math.exp(-0.5 * logsnr_max))
        self._t_max = math.atan(math.exp(-0.5 * logsnr_min))

    def log_snr(self, t: Tensor) -> Tensor:
        t = t.float()
        return -2 * torch.log(torch.tan(self._t_min + t * (self._t_max - self._t_min)))

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        logsnr = self.log_snr(t)
        # alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda)
        return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()

    def sample_training_times(self, n: int, device: torch.device | str | None = None) -> Tensor:
        return torch.rand(n, device=device)

    def sampling_times(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        if steps < 1:
            raise ValueError(f"sampling steps must be >= 1, got {steps}")
        return torch.linspace(1.0, 0.0, steps + 1, device=device)

    def network_time(self, t: Tensor) -> Tensor:
        return self.log_snr(t)


SCHEDULES = ("linear", "cosine", "cosine_logsnr")


def build_schedule(name: str, num_steps: int = 1000) -> NoiseSchedule:
    """A schedule by config name; ``num_steps`` is ignored by the continuous schedule."""
    if name == "linear":
        return DiscreteSchedule.linear(num_steps)
    if name == "cosine":
        return DiscreteSchedule.cosine(num_steps)
    if name == "cosine_logsnr":
        return CosineLogSNRSchedule()
    raise ValueError(f"schedule: unknown noise schedule {name!r}; choose one of {SCHEDULES}")
