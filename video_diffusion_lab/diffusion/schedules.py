"""Noise schedules: how much signal and noise a diffused sample holds at time t, and the time grids samplers walk.

All schedules are variance preserving, z_t = alpha_t * x + sigma_t * eps with alpha_t^2 + sigma_t^2 = 1, and share
one interface so that losses and samplers never ask which kind they hold:

- ``alpha_sigma(t)``      the coefficients at times t (any shape);
- ``log_snr(t)``          lambda_t = log(alpha_t^2 / sigma_t^2), and ``time_from_log_snr`` its inverse;
- ``sample_training_times(n)``   times drawn for the training loss;
- ``sampling_times(steps)``      the uniform grid of ``steps + 1`` decreasing times whose last entry is the clean state
  (``GRIDS`` holds it and the log-SNR-uniform and Karras grids);
- ``network_time(t)``     the scalar the network is conditioned on.

Discrete schedules (DDPM / improved-diffusion) index t in {0, ..., N-1} and use t = -1 for the clean data
(alpha = 1, sigma = 0). Between integer steps lambda_t is interpolated linearly in t, so fractional times (the
log-SNR and Karras grids, Heun's churn) are noise levels between the chain's own; the network sees t * 1000 / N as for
integer t (its sinusoidal time embedding is defined for any real time). The continuous schedule (VDM) takes t in
[0, 1] and is defined through its log-SNR.

Precision: float64 times give float64 coefficients (samplers compute their step coefficients so); any other time
dtype gives float32, as the networks and the training loss expect.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

CLEAN_DISCRETE_TIME = -1


def coefficient_dtype(t: Tensor) -> torch.dtype:
    """float64 for float64 times, float32 otherwise."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class NoiseSchedule(ABC):
    """The forward process q(z_t | x) = N(alpha_t x, sigma_t^2 I)."""

    discrete: bool
    noisiest_time: float  # the first time of every sampling grid
    least_noisy_time: float  # the last noisy time of a discrete grid; the (nearly) clean end of a continuous one

    @abstractmethod
    def log_snr64(self, t: Tensor) -> Tensor:
        """lambda_t = log(alpha_t^2 / sigma_t^2) in float64, +inf at the clean state."""

    def log_snr(self, t: Tensor) -> Tensor:
        return self.log_snr64(t).to(coefficient_dtype(t))

    @abstractmethod
    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """The time t (float64) whose log-SNR is ``log_snr``, the inverse of ``log_snr``."""

    @abstractmethod
    def sample_training_times(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """n times drawn uniformly over the process, one per training example."""

    def sampling_times(self, steps: int, device: torch.device | str | None = None) -> Tensor:
        """``steps + 1`` decreasing times from pure noise to the clean state (last entry), evenly spaced in t."""
        return uniform_grid(self, steps).to(device)

    @abstractmethod
    def network_time(self, t: Tensor) -> Tensor:
        """The conditioning scalar the network sees for time t."""

    @abstractmethod
    def check_steps(self, steps: int) -> None:
        """Raise a ValueError naming ``steps`` when a grid of that many steps is impossible."""

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t) of t's shape: alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda)."""
        log_snr = self.log_snr64(t)
        dtype = coefficient_dtype(t)
        return torch.sigmoid(log_snr).sqrt().to(dtype), torch.sigmoid(-log_snr).sqrt().to(dtype)

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
    """DDPM's N-step chain: alpha_bar_t = prod_{s <= t} (1 - beta_s), alpha_t = sqrt(alpha_bar_t).

    Time t < 0 is the clean state; t > N - 1 is clamped to N - 1; fractional t in [0, N - 1] interpolates lambda_t
    linearly between the neighbouring steps (exactly the chain's values at integer t).
    """

    discrete = True
    least_noisy_time = 0.0

    def __init__(self, betas: Tensor):
        if betas.ndim != 1 or len(betas) < 2 or not ((betas > 0) & (betas < 1)).all():
            raise ValueError("betas must be a 1-D tensor of at least 2 values in (0, 1)")
        self.betas = betas.to(torch.float64)
        self.num_steps = len(betas)
        self.noisiest_time = float(self.num_steps - 1)
        alpha_bar = torch.cumprod(1 - self.betas, dim=0)
        self._alpha_bar = alpha_bar
        self._log_snr = torch.log(alpha_bar) - torch.log1p(-alpha_bar)  # (N,) float64, decreasing in t

    @classmethod
    def linear(cls, num_steps: int = 1000) -> DiscreteSchedule:
        return cls(linear_betas(num_steps))

    @classmethod
    def cosine(cls, num_steps: int = 1000) -> DiscreteSchedule:
        return cls(cosine_betas(num_steps))

    @property
    def alpha_bar(self) -> Tensor:
        """alpha_bar_t for t = 0..N-1 (float64)."""
        return self._alpha_bar

    def log_snr64(self, t: Tensor) -> Tensor:
        table = self._log_snr.to(t.device)
        position = t.to(torch.float64).clamp(0, self.num_steps - 1)
        low = position.floor().long().clamp(max=self.num_steps - 2)
        log_snr = torch.lerp(table[low], table[low + 1], position - low)  # exact at integer t
        return torch.where(t < 0, torch.full_like(log_snr, math.inf), log_snr)

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        increasing = self._log_snr.flip(0).to(log_snr.device)  # index j holds t = N - 1 - j
        log_snr = log_snr.to(torch.float64)
        high = torch.searchsorted(increasing, log_snr).clamp(1, self.num_steps - 1)
        lo_val, hi_val = increasing[high - 1], increasing[high]
        fraction = ((log_snr - lo_val) / (hi_val - lo_val)).clamp(0, 1)
        t = (self.num_steps - high).to(torch.float64) - fraction
        return torch.where(torch.isposinf(log_snr), torch.full_like(t, CLEAN_DISCRETE_TIME), t)

    def sample_training_times(self, n: int, device: torch.device | str | None = None) -> Tensor:
        return torch.randint(0, self.num_steps, (n,), device=device)

    def check_steps(self, steps: int) -> None:
        if not 1 <= steps <= self.num_steps:
            raise ValueError(f"sampling steps must be in [1, {self.num_steps}] for this schedule, got {steps}")

    def network_time(self, t: Tensor) -> Tensor:
        # improved-diffusion's rescale_timesteps: the network always sees times on a 0..1000 scale.
        return t.to(coefficient_dtype(t)) * (1000.0 / self.num_steps)

    @property
    def default_sampling_steps(self) -> int:
        return self.num_steps


class CosineLogSNRSchedule(NoiseSchedule):
    """VDM's continuous cosine schedule: lambda_t = -2 log tan(pi t / 2), clipped to [logsnr_min, logsnr_max].

    The clipping is done by mapping t linearly onto the interval of the unclipped schedule that spans
    [logsnr_min, logsnr_max], as in Kingma et al. / Ho et al., so lambda_0 = logsnr_max and lambda_1 = logsnr_min.
    Sampling grids end at t = 0 (sigma = sqrt(sigmoid(-logsnr_max)) ~ 4.5e-5, treated as clean).
    """

    discrete = False
    noisiest_time = 1.0
    least_noisy_time = 0.0

    def __init__(self, logsnr_min: float = -20.0, logsnr_max: float = 20.0):
        if not logsnr_min < logsnr_max:
            raise ValueError("logsnr_min must be smaller than logsnr_max")
        self.logsnr_min, self.logsnr_max = logsnr_min, logsnr_max
        self._t_min = math.atan(math.exp(-0.5 * logsnr_max))
        self._t_max = math.atan(math.exp(-0.5 * logsnr_min))

    def log_snr64(self, t: Tensor) -> Tensor:
        angle = self._t_min + t.to(torch.float64) * (self._t_max - self._t_min)
        return -2 * torch.log(torch.tan(angle))

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        angle = torch.atan(torch.exp(-0.5 * log_snr.to(torch.float64)))
        return (angle - self._t_min) / (self._t_max - self._t_min)

    def sample_training_times(self, n: int, device: torch.device | str | None = None) -> Tensor:
        return torch.rand(n, device=device)

    def check_steps(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"sampling steps must be >= 1, got {steps}")

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


# ------------------------------------------------------------------------------------------------------ time grids
# A grid of ``steps`` steps is ``steps + 1`` decreasing times: discrete schedules visit ``steps`` noisy times from
# N - 1 down to 0 and end at the clean state t = -1; the continuous schedule visits ``steps + 1`` times from 1 down
# to 0, the last treated as clean. Every sampler evaluates the denoiser at each time but the last and lands on the
# denoised estimate in its final step. Grids differ only in how the noisy times are spaced. ``sigma_max`` (every grid)
# starts the grid at the time whose VE noise level s = sigma / alpha is sigma_max instead of the schedule's noisiest
# (Karras et al. use 80): with pure noise as the start the data's share alpha < 1 / sigma_max is neglected.
Grid = Callable[..., Tensor]


def _grid(
    schedule: NoiseSchedule, steps: int, sigma_max: float | None, spacing: Callable[[Tensor, int], Tensor]
) -> Tensor:
    """``spacing(end_times, points)`` gives the grid's noisy times (float64); the ends are kept exactly."""
    schedule.check_steps(steps)
    points = steps if schedule.discrete else steps + 1
    start = schedule.noisiest_time
    if sigma_max is not None:
        least = math.exp(-0.5 * schedule.log_snr64(torch.tensor([schedule.least_noisy_time])).item())
        if not sigma_max > least:
            raise ValueError(f"sigma_max: must exceed this schedule's least noise level {least:.3g}, got {sigma_max}")
        log_snr = torch.tensor([-2 * math.log(sigma_max)], dtype=torch.float64)
        start = min(start, schedule.time_from_log_snr(log_snr).item())
    ends = torch.tensor([start, schedule.least_noisy_time], dtype=torch.float64)
    times = spacing(ends, points)
    times[0] = ends[0]  # inverting the log-SNR is exact only up to rounding
    if points > 1:
        times[-1] = ends[1]
    if schedule.discrete:
        times = torch.cat([times, torch.tensor([float(CLEAN_DISCRETE_TIME)], dtype=torch.float64)])
    return times


def uniform_grid(schedule: NoiseSchedule, steps: int, *, sigma_max: float | None = None) -> Tensor:
    """Evenly spaced in t; on discrete schedules rounded to the chain's integer steps (improved-diffusion's
    respacing), so the full grid (steps = N) is the whole chain."""
    times = _grid(schedule, steps, sigma_max, lambda ends, n: torch.linspace(ends[0], ends[1], n, dtype=torch.float64))
    if not schedule.discrete:
        return times
    times = times.round().long()
    if len(times.unique()) < len(times):
        raise ValueError(f"steps: {steps} integer times do not fit below sigma_max={sigma_max} on this chain")
    return times


def logsnr_grid(schedule: NoiseSchedule, steps: int, *, sigma_max: float | None = None) -> Tensor:
    """Evenly spaced in log-SNR (DPM-Solver's "logSNR" time steps)."""

    def spacing(ends: Tensor, n: int) -> Tensor:
        log_snr = schedule.log_snr64(ends)
        return schedule.time_from_log_snr(torch.linspace(log_snr[0], log_snr[1], n, dtype=torch.float64))

    return _grid(schedule, steps, sigma_max, spacing)


def karras_grid(schedule: NoiseSchedule, steps: int, *, rho: float = 7.0, sigma_max: float | None = None) -> Tensor:
    """Karras et al. (2022), Eq. 5: the VE noise levels s = sigma / alpha = exp(-lambda / 2) evenly spaced in
    s^(1 / rho) from the largest to the smallest, so steps crowd towards low noise as rho grows."""
    if rho <= 0:
        raise ValueError(f"rho: the Karras grid exponent must be > 0, got {rho}")

    def spacing(ends: Tensor, n: int) -> Tensor:
        s_max, s_min = torch.exp(-0.5 * schedule.log_snr64(ends)).tolist()
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        s = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        return schedule.time_from_log_snr(-2 * torch.log(s))

    return _grid(schedule, steps, sigma_max, spacing)


GRIDS: dict[str, Grid] = {"uniform": uniform_grid, "logsnr": logsnr_grid, "karras": karras_grid}


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise ValueError(f"grid: unknown time grid {name!r}; choose one of {tuple(GRIDS)}")
    return GRIDS[name]
