"""Samplers: small pure functions of a masked denoiser, a noise tensor and a time grid (k-diffusion's style).

Every sampler has the signature

    sample_x(model, noise, times, *, generator=None, callback=None, disable=True, **own_options) -> z

``model`` is a ``MaskedDenoiser``: ``model(z, t)`` returns x0_hat with the given frames put in place and exact, and
``model.alpha_sigma(t)`` the noise level, so samplers never see the parameterization, the schedule, the mask or the
conditioning. ``times`` is a decreasing grid (``diffusion.schedules.GRIDS``) whose last entry is the clean state; every
sampler's last step lands on the denoised estimate itself (continuous grids end at sigma ~ 4.5e-5, not 0). All random
draws go through ``diffusion.noise.randn_like(z, generator)``: None, a ``torch.Generator`` or a ``NoiseSource``.

Notation (variance preserving, z_t = alpha_t x + sigma_t eps): for a step from time t to the less noisy time s,
    alpha_{t|s} = alpha_t / alpha_s,   sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
    q(z_s | z_t, x) = N(mu, sigma_tilde^2):
        mu = (alpha_{t|s} sigma_s^2 / sigma_t^2) z_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x
        sigma_tilde^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2
    lambda_t = log(alpha_t / sigma_t) (half the log-SNR), h = lambda_s - lambda_t > 0.
The probability-flow ODE of any VP process is, in the "VE" coordinates x = z / alpha and s = sigma / alpha,
    dx/ds = (x - x0_hat) / s = eps_hat,
which is what DDIM (its Euler method) and Heun integrate; DPM-Solver++ integrates it exactly in lambda up to a
polynomial in lambda for x0_hat.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import trange

from video_diffusion_lab.diffusion.denoiser import MaskedDenoiser
from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.noise import NoiseGenerator, randn_like
from video_diffusion_lab.diffusion.schedules import GRIDS, NoiseSchedule, get_grid

Callback = Callable[[dict[str, Any]], None]


class Sampler(Protocol):
    def __call__(self, model: MaskedDenoiser, noise: Tensor, times: Tensor, **kwargs: Any) -> Tensor: ...


def _report(callback: Callback | None, i: int, t: Tensor, z: Tensor, x0: Tensor) -> None:
    if callback is not None:
        callback({"i": i, "t": t, "z": z, "x0": x0})


# ----------------------------------------------------------------------------------------------- DDIM and ancestral
@torch.no_grad()
def sample_ddim(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    eta: float = 0.0,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DDIM (Song et al. 2021): z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise,
    with c = eta * (sigma_s / sigma_t) * sqrt(1 - alpha_t^2 / alpha_s^2); eta = 1 is DDPM's posterior variance,
    eta = 0 the Euler method on the probability-flow ODE (first order)."""
    z = noise
    for i in trange(len(times) - 1, disable=disable, desc="DDIM", leave=False):
        x0 = model(z, times[i])
        if i == len(times) - 2:
            z = x0
        else:
            (alpha_t, sigma_t), (alpha_s, sigma_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
            eps = (z - alpha_t * x0) / sigma_t
            c = eta * (sigma_s / sigma_t) * math.sqrt(max(0.0, 1 - alpha_t**2 / alpha_s**2))
            z = alpha_s * x0 + math.sqrt(max(0.0, sigma_s**2 - c**2)) * eps
            if eta > 0:
                z = z + c * randn_like(z, generator)
        _report(callback, i, times[i], z, x0)
    return z


def ancestral_step(z: Tensor, x0: Tensor, alpha_t, sigma_t, alpha_s, sigma_s, gamma: float, noise: Tensor) -> Tensor:
    """One draw from VDM's p(z_s | z_t) (Ho et al. 2022, Sec. 2): the posterior mean with x = x_hat and the variance
    exp(gamma log sigma_{t|s}^2 + (1 - gamma) log sigma_tilde_{s|t}^2). Coefficients are floats or tensors."""
    alpha_ts = alpha_t / alpha_s
    sigma2_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
    mean = (alpha_ts * sigma_s**2 / sigma_t**2) * z + (alpha_s * sigma2_ts / sigma_t**2) * x0
    lower = sigma2_ts * sigma_s**2 / sigma_t**2
    return mean + sigma2_ts ** (gamma / 2) * lower ** ((1 - gamma) / 2) * noise


@torch.no_grad()
def sample_ddpm(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    gamma: float = 0.0,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """Ancestral sampling from p(z_s | z_t) = q(z_s | z_t, x = x_hat).

    The variance interpolates in log space between the posterior variance sigma_tilde^2 (gamma = 0, improved-diffusion's
    FIXED_SMALL) and sigma_{t|s}^2 (gamma = 1, FIXED_LARGE: beta_t on the full chain), as VDM's gamma. The last step
    returns x_hat itself (no noise), as improved-diffusion's p_sample at t = 0.
    """
    z = noise
    for i in trange(len(times) - 1, disable=disable, desc="DDPM", leave=False):
        x0 = model(z, times[i])
        if i == len(times) - 2:
            z = x0
        else:
            (alpha_t, sigma_t), (alpha_s, sigma_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
            z = ancestral_step(z, x0, alpha_t, sigma_t, alpha_s, sigma_s, gamma, randn_like(z, generator))
        _report(callback, i, times[i], z, x0)
    return z


def langevin_correction(z: Tensor, x0: Tensor, alpha_s, sigma_s, delta: float, noise: Tensor) -> Tensor:
    """One Langevin corrector step at time s (VDM, after Song et al. 2021):
    z_s <- z_s - (delta / 2) sigma_s eps_hat(z_s) + sqrt(delta) sigma_s eps',
    eps_hat = (z_s - alpha_s x_hat) / sigma_s."""
    eps = (z - alpha_s * x0) / sigma_s
    return z - 0.5 * delta * sigma_s * eps + delta**0.5 * sigma_s * noise


@torch.no_grad()
def sample_predictor_corrector(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    gamma: float = 0.0,
    delta: float = 0.1,
    corrector_steps: int = 1,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """VDM's predictor-corrector sampler: each step is the ancestral step of ``sample_ddpm`` (predictor, variance
    interpolation ``gamma``) followed by ``corrector_steps`` Langevin corrections with step size ``delta`` (the paper:
    one correction, delta = 0.1). Each correction costs one more denoiser call; the last step lands on x_hat exactly.
    """
    if delta <= 0:
        raise ValueError(f"pc_delta: the Langevin step size must be > 0, got {delta}")
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps: must be >= 0, got {corrector_steps}")
    z = noise
    for i in trange(len(times) - 1, disable=disable, desc="PC", leave=False):
        x0 = model(z, times[i])
        if i == len(times) - 2:
            z = x0
        else:
            (alpha_t, sigma_t), (alpha_s, sigma_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
            z = ancestral_step(z, x0, alpha_t, sigma_t, alpha_s, sigma_s, gamma, randn_like(z, generator))
            for _ in range(corrector_steps):
                z = langevin_correction(z, model(z, times[i + 1]), alpha_s, sigma_s, delta, randn_like(z, generator))
        _report(callback, i, times[i], z, x0)
    return z


# --------------------------------------------------------------------------------------------------------- Heun
def heun_corrects(s: float, second_order_max: float) -> bool:
    """Whether Heun's step from VE noise level s takes its second evaluation (a grid capped at sigma_max equal to the
    limit starts there up to rounding, and counts as below it)."""
    return s <= second_order_max * (1 + 1e-9)


def heun_churn(s_churn: float, steps: int) -> float:
    """Karras et al.'s churn factor g: each step raises the noise level s to s (1 + g)."""
    return min(s_churn / steps, math.sqrt(2) - 1) if s_churn > 0 else 0.0


@torch.no_grad()
def sample_heun(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    s_churn: float = 0.0,
    second_order_max: float = 80.0,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Alg. 2).

    It integrates dx/ds = eps_hat in the VE coordinates x = z / alpha, s = sigma / alpha, which is the VP ODE exactly
    (k-diffusion's wrappers for VP models do the same): an Euler step to s_next (the DDIM step, written in z without
    dividing by a tiny alpha), a second evaluation there, and the average slope; the last step, to the clean state, is
    the Euler step alone (x_hat). Two denoiser calls per step but the last (and those above ``second_order_max``).

    A step that starts above the VE noise level ``second_order_max`` (Karras et al.'s sigma_max, 80) is the Euler step
    alone: its correction scales the difference of the two eps estimates by the step in s, which from the top of a
    discrete cosine chain (s ~ 2e4) multiplies a trained network's eps error by thousands (the measurement is in
    docs/results.md, "Sampling cost"). Up there x_hat is the data mean to within alpha < 1/80, so Euler loses nothing;
    ``float("inf")`` corrects every step, as Karras et al.

    ``s_churn`` > 0 adds Karras's stochastic churn: before each step the noise level is raised from s to
    s (1 + g), g = min(s_churn / steps, sqrt(2) - 1), by adding fresh noise (never above the grid's first level), at
    the time whose noise level that is (fractional on discrete schedules).
    """
    z = noise
    steps = len(times) - 1
    churn = heun_churn(s_churn, steps)
    alpha_top, sigma_top = model.alpha_sigma(times[0])
    for i in trange(steps, disable=disable, desc="Heun", leave=False):
        t = times[i]
        alpha, sigma = model.alpha_sigma(t)
        if churn > 0:
            s, s_hat = sigma / alpha, min(sigma / alpha * (1 + churn), sigma_top / alpha_top)
            if s_hat > s:
                t = model.time_at(-math.log(s_hat))
                alpha_hat, sigma = model.alpha_sigma(t)
                z = alpha_hat * (z / alpha + math.sqrt(s_hat**2 - s**2) * randn_like(z, generator))
                alpha = alpha_hat
        x0 = model(z, t)
        if i == steps - 1:
            z = x0
        else:
            alpha_n, sigma_n = model.alpha_sigma(times[i + 1])
            eps = (z - alpha * x0) / sigma
            z_euler = alpha_n * x0 + sigma_n * eps  # alpha_n (z / alpha + (s_n - s) eps): the DDIM step
            z = z_euler
            if heun_corrects(sigma / alpha, second_order_max):
                eps_n = (z_euler - alpha_n * model(z_euler, times[i + 1])) / sigma_n
                z = z_euler + alpha_n * (sigma_n / alpha_n - sigma / alpha) * (eps_n - eps) / 2  # the average slope
        _report(callback, i, t, z, x0)
    return z


# ------------------------------------------------------------------------------------------------- DPM-Solver++
@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    sde_eta: float = 1.0,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) and its SDE variant (as k-diffusion's ``sample_dpmpp_2m_sde``).

    With h = lambda_s - lambda_t and eta = ``sde_eta``, each step is the exact solution for a data prediction linear
    in lambda:
        z_s = (sigma_s / sigma_t) e^{-eta h} z_t + alpha_s (1 - e^{-(1 + eta) h}) D
              + sigma_s sqrt(1 - e^{-2 eta h}) noise
    with D = x_hat_t on the first step and D = x_hat_t + (x_hat_t - x_hat_prev) / (2 r), r = h_prev / h, after it.
    eta = 0 is DPM-Solver++(2M), second order; eta = 1 makes the first-order part DDPM's posterior step exactly. The
    last step lands on x_hat (the paper's first-order final step). One denoiser call per step.
    """
    z, previous = noise, None  # previous: (x_hat, h) of the step before
    for i in trange(len(times) - 1, disable=disable, desc="DPM-Solver++(2M)", leave=False):
        x0 = model(z, times[i])
        if i == len(times) - 2:
            z = x0
        else:
            (_, sigma_t), (alpha_s, sigma_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
            h = model.half_log_snr(times[i + 1]) - model.half_log_snr(times[i])
            weight = -math.expm1(-(1 + sde_eta) * h)
            data = x0 if previous is None else x0 + (x0 - previous[0]) * (h / (2 * previous[1]))
            z = (sigma_s / sigma_t) * math.exp(-sde_eta * h) * z + alpha_s * weight * data
            if sde_eta > 0:
                z = z + sigma_s * math.sqrt(-math.expm1(-2 * sde_eta * h)) * randn_like(z, generator)
            previous = (x0, h)
        _report(callback, i, times[i], z, x0)
    return z


def sample_dpmpp_2m(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DPM-Solver++(2M): the deterministic (sde_eta = 0) case of ``sample_dpmpp_2m_sde``."""
    return sample_dpmpp_2m_sde(
        model, noise, times, sde_eta=0.0, generator=generator, callback=callback, disable=disable
    )


@torch.no_grad()
def sample_dpmpp_3m_sde(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    sde_eta: float = 1.0,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DPM-Solver++(3M) and its SDE variant: the step of ``sample_dpmpp_2m_sde`` with x_hat(lambda) replaced by the
    polynomial through the last three estimates (Newton form, any spacing in lambda):

        x_hat(lambda_t + u) ~ x_hat_t + u D1 + u^2 D2
        z_s = (sigma_s / sigma_t) e^{-eta h} z_t + alpha_s (I0 x_hat_t + I1 D1 + I2 D2)
              + sigma_s sqrt(1 - e^{-2 eta h}) noise
        I_k = int_0^h a e^{-a (h - u)} u^k du, a = 1 + eta:  I0 = 1 - e^{-a h},  I1 = h - I0 / a,  I2 = h^2 - 2 I1 / a

    The first step is first order and the second uses two estimates (D2 = 0); the last lands on x_hat. With eta = 0 it
    is third order in the step (checked in tests/test_sampler_convergence.py). One denoiser call per step.

    Departure: k-diffusion's ``sample_dpmpp_3m_sde`` (and DPM-Solver's third-order multistep update) weight the
    second divided difference by half of I2 (``- phi_3 * d2`` with d2 = h^2 D2); with that weight the Gaussian
    convergence test measures second order (log-log slopes 1.5-2.3), with I2 third order (3.0-4.1). I2 is the exact
    integral of the interpolating polynomial: from the third step on, a step is exact when x_hat is quadratic in lambda.
    """
    z, history = noise, []  # history: (x_hat, lambda) of the previous steps, most recent first
    for i in trange(len(times) - 1, disable=disable, desc="DPM-Solver++(3M)", leave=False):
        x0 = model(z, times[i])
        if i == len(times) - 2:
            z = x0
        else:
            (_, sigma_t), (alpha_s, sigma_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
            lam_t = model.half_log_snr(times[i])
            h, a = model.half_log_snr(times[i + 1]) - lam_t, 1 + sde_eta
            i0 = -math.expm1(-a * h)
            i1 = h - i0 / a
            i2 = h * h - 2 * i1 / a
            data = i0 * x0
            if history:
                x1, lam_1 = history[0]
                f01 = (x0 - x1) / (lam_t - lam_1)  # divided differences of x_hat over lambda
                if len(history) > 1:
                    x2, lam_2 = history[1]
                    f012 = (f01 - (x1 - x2) / (lam_1 - lam_2)) / (lam_t - lam_2)
                    data = data + i1 * (f01 + (lam_t - lam_1) * f012) + i2 * f012
                else:
                    data = data + i1 * f01
            z = (sigma_s / sigma_t) * math.exp(-sde_eta * h) * z + alpha_s * data
            if sde_eta > 0:
                z = z + sigma_s * math.sqrt(-math.expm1(-2 * sde_eta * h)) * randn_like(z, generator)
            history = [(x0, lam_t)] + history[:1]
        _report(callback, i, times[i], z, x0)
    return z


def sample_dpmpp_3m(
    model: MaskedDenoiser,
    noise: Tensor,
    times: Tensor,
    *,
    generator: NoiseGenerator = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DPM-Solver++(3M): the deterministic (sde_eta = 0) case of ``sample_dpmpp_3m_sde``."""
    return sample_dpmpp_3m_sde(
        model, noise, times, sde_eta=0.0, generator=generator, callback=callback, disable=disable
    )


# ------------------------------------------------------------------------------------------------------ registry
SAMPLERS: dict[str, Sampler] = {
    "ddim": sample_ddim,
    # VDM's ancestral sampler is exactly ``sample_ddpm``: posterior mean with x_hat, variance interpolated by gamma.
    "ddpm": sample_ddpm,
    "predictor_corrector": sample_predictor_corrector,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m": sample_dpmpp_3m,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
}

# Keywords every sampler takes from ``sample`` itself; the others are the sampler's own options.
_COMMON = {"generator", "callback", "disable"}


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown sampler {name!r}; choose one of {tuple(SAMPLERS)}")
    return SAMPLERS[name]


def own_options(fn: Callable[..., Any]) -> dict[str, Any]:
    """The options a sampler or grid takes (its keyword-only parameters but the common ones), with their defaults."""
    parameters = inspect.signature(fn).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in _COMMON}


def sampling_options() -> dict[str, Any]:
    """Every option of every sampler and grid with its default (one config group holds them all)."""
    options: dict[str, Any] = {}
    for fn in (*SAMPLERS.values(), *GRIDS.values()):
        options.update(own_options(fn))
    return options


def _taken(fn: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    names = own_options(fn)
    return {k: v for k, v in options.items() if k in names}


def network_calls(
    sampler: str, steps: int, *, schedule: NoiseSchedule | None = None, grid: str = "uniform", **options: Any
) -> int:
    """Denoiser calls the sampler makes for a grid of ``steps`` steps (a guided denoiser may call its network more
    than once per denoiser call: classifier-free guidance twice, reconstruction guidance with a backward pass).
    Heun's count depends on the grid's noise levels (steps above ``second_order_max`` make one call), so it needs the
    ``schedule``, the ``grid`` and their options."""
    get_sampler(sampler)
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    if sampler == "heun":
        if schedule is None:
            raise ValueError("network_calls: Heun's count depends on the time grid; pass the schedule")
        grid_fn = get_grid(grid)
        alpha, sigma = schedule.alpha_sigma(grid_fn(schedule, steps, **_taken(grid_fn, options)))
        levels = (sigma / alpha).tolist()
        heun = {**own_options(sample_heun), **_taken(sample_heun, options)}
        churn = heun_churn(heun["s_churn"], steps)
        corrected = sum(heun_corrects(min(s * (1 + churn), levels[0]), heun["second_order_max"]) for s in levels[:-2])
        return steps + corrected  # a second evaluation on the corrected steps (never the last)
    if sampler == "predictor_corrector":
        corrector_steps = options.get("corrector_steps", own_options(sample_predictor_corrector)["corrector_steps"])
        return steps + corrector_steps * (steps - 1)  # corrections on every step but the last
    return steps


def sample(
    denoiser: Callable[..., Tensor],
    given: Tensor,
    mask: FrameMask,
    *,
    sampler: str = "ddim",
    steps: int | None = None,
    grid: str = "uniform",
    generator: NoiseGenerator = None,
    extra_args: dict[str, Any] | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    **options: Any,
) -> Tensor:
    """Generate the latent frames of ``mask`` given the observed frames of ``given`` (other frames are ignored).

    ``denoiser`` is a ``Denoiser`` or any guided wrapper of one (``(z, t, mask, **cond) -> x0_hat`` with a
    ``schedule``); ``extra_args`` is its conditioning. ``steps`` defaults to the schedule's full chain, ``grid`` names
    the time grid (``GRIDS``), ``generator`` is None, a ``torch.Generator`` or a ``NoiseSource``. ``options`` may hold
    every sampler's and grid's options at once (one config group): each sampler and grid receives only those it takes;
    a name that none takes is an error.
    """
    sample_fn, grid_fn = get_sampler(sampler), get_grid(grid)
    unknown = sorted(set(options) - set(sampling_options()))
    if unknown:
        raise ValueError(
            f"sampling options {unknown}: taken by no sampler or grid; the options are {sorted(sampling_options())}"
        )
    steps = denoiser.schedule.default_sampling_steps if steps is None else steps
    times = grid_fn(denoiser.schedule, steps, **_taken(grid_fn, options))
    model = MaskedDenoiser(denoiser, given, mask, extra_args)
    noise = randn_like(given, generator)
    out = sample_fn(
        model, noise, times, generator=generator, callback=callback, disable=not progress, **_taken(sample_fn, options)
    )
    return model.mask.keep_observed(out, given)
