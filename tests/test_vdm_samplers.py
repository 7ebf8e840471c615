"""VDM's samplers and diffusion pieces: the ancestral sampler with gamma, the predictor-corrector sampler, both checked
on Gaussian data with the exact denoiser; the log-SNR schedule and the v / eps / x0 conversions VDM relies on."""

from __future__ import annotations

import math

import pytest
import torch

from video_diffusion_lab.diffusion import SAMPLERS, CosineLogSNRSchedule, MaskedDenoiser, get_sampler, sample, task_mask
from video_diffusion_lab.diffusion.noise import randn_like
from video_diffusion_lab.diffusion.parameterization import (
    eps_from_v,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_output,
    x0_from_v,
)
from video_diffusion_lab.diffusion.samplers import (
    ancestral_step,
    langevin_correction,
    sample_ddpm,
    sample_predictor_corrector,
)

DATA_STD = 0.5


class GaussianDenoiser:
    """The exact posterior mean E[x | z_t] for data x ~ N(0, s^2) per pixel: alpha s^2 z / (alpha^2 s^2 + sigma^2)."""

    def __init__(self, std: float = DATA_STD):
        self.schedule = CosineLogSNRSchedule()
        self.var = std**2

    def __call__(self, z, t, mask, **cond):
        alpha, sigma = (c.reshape(-1, *[1] * (z.ndim - 1)).to(z) for c in self.schedule.alpha_sigma(t))
        return alpha * self.var * z / (alpha**2 * self.var + sigma**2)


# ----------------------------------------------------------------------------------------- schedule and conversions
def test_log_snr_schedule_end_points_monotonic_and_variance_preserving() -> None:
    schedule = CosineLogSNRSchedule()
    t = torch.linspace(0, 1, 257)
    logsnr = schedule.log_snr(t)
    assert logsnr[0].item() == pytest.approx(20.0, abs=1e-3) and logsnr[-1].item() == pytest.approx(-20.0, abs=5e-3)
    assert torch.all(logsnr[1:] < logsnr[:-1])
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), rtol=0, atol=1e-6)
    torch.testing.assert_close(2 * torch.log(alpha / sigma), logsnr, rtol=1e-4, atol=1e-3)
    # What the network sees: lambda_t itself.
    torch.testing.assert_close(schedule.network_time(t), logsnr)


def test_v_eps_x0_conversions_round_trip() -> None:
    torch.manual_seed(0)
    x0, eps = torch.randn(3, 2, 1, 4, 4), torch.randn(3, 2, 1, 4, 4)
    alpha, sigma = CosineLogSNRSchedule().alpha_sigma(torch.tensor([0.1, 0.5, 0.9]))
    alpha, sigma = alpha.reshape(-1, 1, 1, 1, 1), sigma.reshape(-1, 1, 1, 1, 1)
    z = alpha * x0 + sigma * eps
    v = v_from_x0_eps(x0, eps, alpha, sigma)
    torch.testing.assert_close(x0_from_v(z, v, alpha, sigma), x0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps_from_v(z, v, alpha, sigma), eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x0_from_eps(z, eps, alpha, sigma), x0, rtol=1e-4, atol=1e-4)
    # v = d z / d phi for z = cos(phi) x + sin(phi) eps (Salimans & Ho): unit norm circle, v orthogonal to z.
    torch.testing.assert_close(v, alpha * eps - sigma * x0)
    for prediction in ("eps", "x0", "v"):
        target = training_target(x0, eps, alpha, sigma, prediction)
        torch.testing.assert_close(x0_from_output(target, z, alpha, sigma, prediction), x0, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        training_target(x0, eps, alpha, sigma, "score")


# ----------------------------------------------------------------------------------------------------- samplers
def test_registry_and_unknown_sampler() -> None:
    assert SAMPLERS["predictor_corrector"] is sample_predictor_corrector
    assert SAMPLERS["ddpm"] is sample_ddpm
    with pytest.raises(ValueError, match="sampler"):
        get_sampler("euler")


def test_ddpm_is_vdms_ancestral_step_with_gamma() -> None:
    """sample_ddpm equals a hand loop of ``ancestral_step`` (VDM's mean and exp(gamma log s_ts + (1-gamma) log s~))."""
    denoiser = GaussianDenoiser()
    mask = task_mask("unconditional", 1, 2, 0)
    noise = torch.randn(1, 2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    times = denoiser.schedule.sampling_times(5)
    for gamma in (0.0, 0.3, 1.0):
        model = MaskedDenoiser(denoiser, noise, mask)
        out = sample_ddpm(model, noise, times, gamma=gamma, generator=torch.Generator().manual_seed(1))
        generator, z = torch.Generator().manual_seed(1), noise
        for i in range(len(times) - 1):
            x0 = denoiser(z, times[i].expand(1), mask)
            if i == len(times) - 2:
                z = x0
                break
            (a_t, s_t), (a_s, s_s) = (denoiser.schedule.alpha_sigma(times[j].float().reshape(1)) for j in (i, i + 1))
            z = ancestral_step(z, x0, a_t, s_t, a_s, s_s, gamma, randn_like(z, generator))
        torch.testing.assert_close(out, z)


@pytest.mark.parametrize("sampler, options", [("ddpm", {"gamma": 0.1}), ("predictor_corrector", {"gamma": 0.1})])
def test_samplers_draw_the_gaussian_data_distribution(sampler: str, options: dict) -> None:
    """With the exact denoiser of N(0, s^2) data, samples must have standard deviation s (not the prior's 1)."""
    denoiser = GaussianDenoiser()
    mask = task_mask("unconditional", 4, 2, 0)
    given = torch.zeros(4, 2, 1, 32, 32)
    out = sample(
        denoiser, given, mask, sampler=sampler, steps=64, generator=torch.Generator().manual_seed(0), **options
    )
    assert out.std().item() == pytest.approx(DATA_STD, rel=0.05)
    assert out.mean().abs().item() < 0.02


def test_langevin_correction_keeps_the_exact_marginal_stationary() -> None:
    """At a fixed s, z ~ N(0, alpha^2 s^2 + sigma^2) is (to O(delta^2)) invariant under the corrector step."""
    schedule, denoiser = CosineLogSNRSchedule(), GaussianDenoiser()
    s = torch.tensor([0.6])
    alpha, sigma = schedule.alpha_sigma(s)
    marginal_std = math.sqrt(alpha.item() ** 2 * DATA_STD**2 + sigma.item() ** 2)
    generator = torch.Generator().manual_seed(0)
    z = marginal_std * torch.randn(200_000, generator=generator)
    for _ in range(5):
        z = langevin_correction(z, denoiser(z, s, None), alpha, sigma, 0.1, torch.randn(z.shape, generator=generator))
    assert z.std().item() == pytest.approx(marginal_std, rel=0.02)
    # A wrong sign of the drift blows the variance up: the check can fail.
    bad = (
        z - (-0.05 * sigma * (z - alpha * denoiser(z, s, None)) / sigma) + math.sqrt(0.1) * sigma * torch.randn_like(z)
    )
    assert bad.std().item() > 1.03 * marginal_std


def test_predictor_corrector_keeps_given_frames_and_is_seeded() -> None:
    denoiser = GaussianDenoiser()
    mask = task_mask("prediction", 2, 4, 1)
    given = torch.rand(2, 4, 1, 4, 4)
    kwargs = dict(sampler="predictor_corrector", steps=4, delta=0.1)
    a = sample(denoiser, given, mask, generator=torch.Generator().manual_seed(3), **kwargs)
    b = sample(denoiser, given, mask, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a, b)
    assert torch.equal(a[:, 0], given[:, 0])
    calls = []

    class Counting(GaussianDenoiser):
        def __call__(self, z, t, mask, **cond):
            calls.append(1)
            return super().__call__(z, t, mask)

    sample(Counting(), given, mask, generator=torch.Generator().manual_seed(3), **kwargs)
    assert len(calls) == 2 * 4 - 1  # one predictor and one corrector call per step, none after the last
    with pytest.raises(ValueError, match="pc_delta"):
        sample(denoiser, given, mask, sampler="predictor_corrector", steps=2, delta=0.0)
