"""Samplers: small pure functions over a denoiser, a time grid and a frame mask.

Every sampler has the signature

    sample_x(denoiser, noise, given, mask, times, *, extra_args, generator, callback, disable, **options) -> video

and works on any ``Denoiser`` (any network, any parameterization, discrete or continuous schedule). Before each call
of the denoiser the observed frames of z are set to the given frames, and the returned video holds them exactly.
``times`` is a decreasing grid from ``schedule.sampling_times(steps)``; its last entry is the clean state.

In the notation of Kingma et al. (VDM), for a step from time t to the less noisy time s:
    alpha_{t|s} = alpha_t / alpha_s,   sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
    q(z_s | z_t, x) = N(mu, sigma_tilde^2):
        mu = (alpha_{t|s} sigma_s^2 / sigma_t^2) z_t + (alpha_s sigma_{t|s}^2 / sigma_t^2) x
        sigma_tilde^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch import Tensor
from tqdm.auto import trange

from diffusion.denoiser import Denoiser
from diffusion.masks import FrameMask

Callback = Callable[[dict[str, Any]], None]


class Sampler(Protocol):
    def __call__(
        self,
        denoiser: Denoiser,
        noise: Tensor,
        given: Tensor,
        mask: FrameMask,
        times: Tensor,
        **kwargs: Any,
    ) -> Tensor: ...


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian noise of x's shape, drawn from ``generator`` (which may live on another device)."""
    if generator is None:
        return torch.randn_like(x)
    if hasattr(generator, "randn_like"):
        return generator.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _denoise(
    denoiser: Denoiser, z: Tensor, t: Tensor, mask: FrameMask, given: Tensor, extra_args: dict[str, Any]
) -> tuple[Tensor, Tensor]:
    """z with the given frames put in place, and x_hat = D(z, t) with the given frames exact."""
    z = mask.keep_observed(z, given)
    return z, mask.keep_observed(denoiser(z, t.expand(z.shape[0]), mask, **extra_args), given)


def _coefficients(denoiser: Denoiser, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    alpha, sigma = denoiser.schedule.alpha_sigma(t.reshape(1))
    return alpha.to(z.device, z.dtype), sigma.to(z.device, z.dtype)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    noise: Tensor,
    given: Tensor,
    mask: FrameMask,
    times: Tensor,
    *,
    eta: float = 0.0,
    extra_args: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """DDIM (Song et al. 2021): z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c noise,
    with c = eta * (sigma_s / sigma_t) * sqrt(1 - alpha_t^2 / alpha_s^2); eta = 1 is DDPM's posterior variance."""
    extra_args = extra_args or {}
    z = noise
    for i in trange(len(times) - 1, disable=disable, desc="DDIM", leave=False):
        t, s = times[i], times[i + 1]
        z, x0 = _denoise(denoiser, z, t, mask, given, extra_args)
        alpha_t, sigma_t = _coefficients(denoiser, t, z)
        alpha_s, sigma_s = _coefficients(denoiser, s, z)
        if i == len(times) - 2:
            z = x0  # the last step lands on the clean state (continuous grids end at sigma ~ 0, not 0)
        else:
            eps = (z - alpha_t * x0) / sigma_t
            c = eta * (sigma_s / sigma_t) * (1 - alpha_t**2 / alpha_s**2).clamp(min=0).sqrt()
            z = alpha_s * x0 + (sigma_s**2 - c**2).clamp(min=0).sqrt() * eps
            if eta > 0:
                z = z + c * randn_like(z, generator)
        if callback is not None:
            callback({"i": i, "t": t, "z": z, "x0": x0})
    return mask.keep_observed(z, given)


def ancestral_step(
    z: Tensor, x0: Tensor, alpha_t: Tensor, sigma_t: Tensor, alpha_s: Tensor, sigma_s: Tensor, gamma: float, noise: Tensor
) -> Tensor:
    """One draw from VDM's p(z_s | z_t) (Ho et al. 2022, Sec. 2): the posterior mean with x = x_hat and the variance
    exp(gamma log sigma_{t|s}^2 + (1 - gamma) log sigma_tilde_{s|t}^2). ``sample_ddpm`` chains it."""
    alpha_ts = alpha_t / alpha_s
    sigma2_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
    mean = (alpha_ts * sigma_s**2 / sigma_t**2) * z + (alpha_s * sigma2_ts / sigma_t**2) * x0
    lower = sigma2_ts * sigma_s**2 / sigma_t**2
    log_var = gamma * torch.log(sigma2_ts) + (1 - gamma) * torch.log(lower)
    return mean + torch.exp(0.5 * log_var) * noise


@torch.no_grad()
def sample_ddpm(
    denoiser: Denoiser,
    noise: Tensor,
    given: Tensor,
    mask: FrameMask,
    times: Tensor,
    *,
    gamma: float = 0.0,
    extra_args: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    disable: bool = True,
) -> Tensor:
    """Ancestral sampling from p(z_s | z_t) = q(z_s | z_t, x = x_hat).

    The variance interpolates in log space between the posterior variance sigma_tilde^2 (gamma = 0, DDPM's "small")
    and sigma_{t|s}^2 (gamma = 1, DDPM's "large" beta_t), as in Nichol & Dhariwal and VDM's gamma.
    The last step returns x_hat itself (no noise).
    """
    extra_args = extra_args or {}
    z = noise
    for i in trange(len(times) - 1, disable=disable, desc="DDPM", leave=False):
        t, s = times[i], times[i + 1]
        z, x0 = _denoise(denoiser, z, t, mask, given, extra_args)
        alpha_t, sigma_t = _coefficients(denoiser, t, z)
        alpha_s, sigma_s = _coefficients(denoiser, s, z)
        if i == len(times) - 2:
            z = x0  # the last step lands on the clean state, without noise
        else:
            z = ancestral_step(z, x0, alpha_t, sigma_t, alpha_s, sigma_s, gamma, randn_like(z, generator))
        if callback is not None:
            callback({"i": i, "t": t, "z": z, "x0": x0})
    return mask.keep_observed(z, given)


def langevin_correction(z: Tensor, x0: Tensor, alpha_s: Tensor, sigma_s: Tensor, delta: float, noise: Tensor) -> Tensor:
    """One Langevin corrector step at time s (VDM, after Song et al. 2021):
    z_s <- z_s - (delta / 2) sigma_s eps_hat(z_s) + sqrt(delta) sigma_s eps',  eps_hat = (z_s - alpha_s x_hat) / sigma_s."""
    eps = (z - alpha_s * x0) / sigma_s
    return z - 0.5 * delta * sigma_s * eps + delta**0.5 * sigma_s * noise


@torch.no_grad()
def sample_predictor_corrector(
    denoiser: Denoiser,
    noise: Tensor,
    given: Tensor,
    mask: FrameMask,
    times: Tensor,
    *,
    gamma: float = 0.0,
    delta: float = 0.1,
    corrector_steps: int = 1,
    extra_args: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
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
    extra_args = extra_args or {}
    z = noise
    for i in trange(len(times) - 1, disable=disable, desc="PC", leave=False):
        t, s = times[i], times[i + 1]
        z, x0 = _denoise(denoiser, z, t, mask, given, extra_args)
        alpha_t, sigma_t = _coefficients(denoiser, t, z)
        alpha_s, sigma_s = _coefficients(denoiser, s, z)
        if i == len(times) - 2:
            z = x0
        else:
            z = ancestral_step(z, x0, alpha_t, sigma_t, alpha_s, sigma_s, gamma, randn_like(z, generator))
            for _ in range(corrector_steps):
                z, x0_s = _denoise(denoiser, z, s, mask, given, extra_args)
                z = langevin_correction(z, x0_s, alpha_s, sigma_s, delta, randn_like(z, generator))
        if callback is not None:
            callback({"i": i, "t": t, "z": z, "x0": x0})
    return mask.keep_observed(z, given)


SAMPLERS: dict[str, Sampler] = {
    "ddim": sample_ddim,
    # VDM's ancestral sampler is exactly ``sample_ddpm``: posterior mean with x_hat, variance interpolated by gamma.
    "ddpm": sample_ddpm,
    "predictor_corrector": sample_predictor_corrector,
}


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown sampler {name!r}; choose one of {tuple(SAMPLERS)}")
    return SAMPLERS[name]


def sample(
    denoiser: Denoiser,
    given: Tensor,
    mask: FrameMask,
    *,
    sampler: str = "ddim",
    steps: int | None = None,
    grid: str = "uniform",
    generator: torch.Generator | None = None,
    extra_args: dict[str, Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """Generate the latent frames of ``mask`` given the observed frames of ``given`` (other frames are ignored).

    ``steps`` defaults to the schedule's full chain; ``options`` go to the sampler (eta for DDIM, gamma for DDPM).
    """
    sample_fn = get_sampler(sampler)
    import inspect
    accepted = inspect.signature(sample_fn).parameters
    options = {k: v for k, v in options.items() if k in accepted}
    steps = denoiser.schedule.default_sampling_steps if steps is None else steps
    times = denoiser.schedule.sampling_times(steps, given.device)
    noise = randn_like(given, generator)
    return sample_fn(
        denoiser,
        noise,
        given,
        mask.to(given.device),
        times,
        extra_args=extra_args,
        generator=generator,
        disable=not progress,
        **options,
    )
