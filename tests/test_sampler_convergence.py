"""Samplers against closed-form answers on Gaussian data.

For data x ~ N(m, Sigma) the optimal denoiser is known at every noise level,
E[x | z_t] = m + alpha Sigma (alpha^2 Sigma + sigma^2 I)^-1 (z_t - alpha m), and so is the probability-flow ODE's
solution: in the VE coordinates x = z / alpha, s = sigma / alpha it is dx/ds = s (x - m) / (v + s^2) along each
eigen-direction of variance v, hence x(s) = m + (x(s_T) - m) sqrt((v + s^2) / (v + s_T^2)).
With the optimal denoiser as the "network":

- every deterministic sampler converges to that solution at its order as the steps grow (log-log slope of the error:
  DDIM 1, Heun and DPM-Solver++(2M) 2, DPM-Solver++(3M) 3), on every schedule and time grid;
- the result does not depend on the parameterization the network predicts in (eps, x0, v);
- every sampler, stochastic ones included, draws the data's mean and covariance.

The comparison is with the ODE solved exactly from the initial noise at the grid's first time to its last noisy time,
then the same landing step every sampler takes there (z -> x_hat): that is the solution each sampler approximates.
"""

from __future__ import annotations

import math

import pytest
import torch

from video_diffusion_lab.diffusion import Denoiser, MaskedDenoiser, build_schedule, get_sampler, sample, task_mask
from video_diffusion_lab.diffusion.parameterization import training_target
from video_diffusion_lab.diffusion.samplers import ancestral_step
from video_diffusion_lab.diffusion.schedules import GRIDS, NoiseSchedule

SHAPE = (4, 2, 1, 4, 4)  # B, T, C, H, W: 128 independent Gaussian pixels
STEPS = (32, 64, 128, 256)


pytestmark = pytest.mark.usefixtures("single_thread")


def coefficients_from_network_time(schedule: NoiseSchedule, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) from what the network sees: t * 1000 / N on discrete schedules, lambda itself on continuous."""
    log_snr = schedule.log_snr64(time * schedule.num_steps / 1000) if schedule.discrete else time.double()
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


class GaussianNetwork:
    """The optimal denoiser of x ~ N(mean, covariance) (covariance = U diag(eigenvalues) U^T over a clip's pixels),
    answering in the given parameterization as a trained network would."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        mean: torch.Tensor,
        eigenvalues: torch.Tensor,
        basis: torch.Tensor,
        prediction: str = "x0",
    ):
        self.schedule, self.mean, self.eigenvalues, self.basis = schedule, mean, eigenvalues, basis
        self.prediction = prediction

    def __call__(self, z: torch.Tensor, time: torch.Tensor, mask) -> torch.Tensor:
        alpha, sigma = (c[:, None] for c in coefficients_from_network_time(self.schedule, time))
        flat = z.reshape(z.shape[0], -1)
        gain = alpha * self.eigenvalues / (alpha**2 * self.eigenvalues + sigma**2)
        x0 = self.mean + ((flat - alpha * self.mean) @ self.basis * gain) @ self.basis.T
        eps = (flat - alpha * x0) / sigma
        return training_target(x0, eps, alpha, sigma, self.prediction).reshape(z.shape)


def diagonal_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel means in [-0.6, 0.6] and variances in [0.05, 0.35]."""
    g = torch.Generator().manual_seed(seed)
    dim = math.prod(SHAPE[1:])
    return torch.rand(dim, generator=g, dtype=torch.float64) * 1.2 - 0.6, torch.rand(
        dim, generator=g, dtype=torch.float64
    ) * 0.3 + 0.05


def diagonal_denoiser(schedule: NoiseSchedule, prediction: str = "x0") -> Denoiser:
    mean, variance = diagonal_data()
    network = GaussianNetwork(schedule, mean, variance, torch.eye(len(mean), dtype=torch.float64), prediction)
    return Denoiser(network, schedule, prediction, clip_denoised=False)


def exact_flow_then_landing(schedule: NoiseSchedule, noise: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE solved exactly from ``noise`` at times[0] to the last noisy time times[-2], then
    x_hat there."""
    mean, variance = (v.reshape(SHAPE[1:]) for v in diagonal_data())
    (alpha_0, sigma_0), (alpha_e, sigma_e) = (schedule.alpha_sigma(times[i].double().reshape(1)) for i in (0, -2))
    s_0, s_e = sigma_0 / alpha_0, sigma_e / alpha_e
    x_e = mean + (noise / alpha_0 - mean) * ((variance + s_e**2) / (variance + s_0**2)).sqrt()
    z_e = alpha_e * x_e
    return mean + alpha_e * variance / (alpha_e**2 * variance + sigma_e**2) * (z_e - alpha_e * mean)


def convergence_error(sampler: str, schedule_name: str, grid: str, steps: int) -> float:
    schedule = build_schedule(schedule_name, 1000)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = GRIDS[grid](schedule, steps)
    mask = task_mask("unconditional", SHAPE[0], SHAPE[1], 0)
    model = MaskedDenoiser(diagonal_denoiser(schedule), torch.zeros(SHAPE, dtype=torch.float64), mask)
    out = get_sampler(sampler)(model, noise, times)
    return (out - exact_flow_then_landing(schedule, noise, times)).abs().max().item()


def log_log_slope(steps, errors) -> float:
    x = torch.tensor([math.log(s) for s in steps], dtype=torch.float64)
    y = torch.tensor([-math.log(e) for e in errors], dtype=torch.float64)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


ORDERS = {"ddim": 1, "heun": 2, "dpmpp_2m": 2, "dpmpp_3m": 3}
# Uniform-in-t grids are not smooth in lambda: the clipped cosine log-SNR schedule has dlambda/dt ~ 1 / (t + 4.5e-5)
# at both ends, and the discrete chains' rounded integer times are uneven in lambda near t = 0. The exponential
# integrators (which step in lambda) reach their order there only at step counts far beyond these (measured for
# DPM-Solver++(2M) on cosine_logsnr/uniform: slopes 1.7-1.8 from 256 to 4096 steps; (3M) on the discrete uniform
# grids: 2.5-2.65 at 64-256 steps), so those pairs are left out of the order check; every other one is in.
PRE_ASYMPTOTIC = {
    ("dpmpp_2m", "cosine_logsnr", "uniform"),
    ("dpmpp_3m", "linear", "uniform"),
    ("dpmpp_3m", "cosine", "uniform"),
    ("dpmpp_3m", "cosine_logsnr", "uniform"),
}
CASES = [
    (sampler, schedule, grid)
    for sampler in ORDERS
    for schedule in ("linear", "cosine", "cosine_logsnr")
    for grid in GRIDS
    if (sampler, schedule, grid) not in PRE_ASYMPTOTIC
]


@pytest.mark.parametrize("sampler,schedule_name,grid", CASES)
def test_deterministic_samplers_converge_to_the_exact_flow_at_their_order(sampler, schedule_name, grid):
    errors = [convergence_error(sampler, schedule_name, grid, steps) for steps in STEPS]
    slope = log_log_slope(STEPS, errors)
    order = ORDERS[sampler]
    # Lower bound: a method of lower order fails (a first-order method claimed as second shows ~1, second as third
    # ~2). Upper bound for the first-order method: its error is really measured against the right solution (a wrong
    # reference would flatten the curve, an accidental exact answer make it vanish).
    assert slope > order - 0.3, f"{sampler} on {schedule_name}/{grid}: slope {slope:.2f}, errors {errors}"
    if order == 1:
        assert slope < 1.3, f"{sampler} on {schedule_name}/{grid}: slope {slope:.2f}, errors {errors}"
    assert errors[-1] < 0.1


class BiasedNetwork(GaussianNetwork):
    """The optimal v-prediction plus a constant error, as a trained network's: small in x0 at every noise level."""

    def __call__(self, z: torch.Tensor, time: torch.Tensor, mask) -> torch.Tensor:
        return super().__call__(z, time, mask) + 0.02


def test_heun_takes_euler_steps_above_sigma_80_so_a_network_error_is_not_amplified():
    """From the top of the discrete cosine chain (s = sigma / alpha ~ 2e4), Heun's correction multiplies the
    difference of two eps estimates by the step in s; with an imperfect network that ruins the sample (what the
    trained RaMViD showed: 4-5 dB). With the default cap the error stays at DDIM's level."""
    schedule = build_schedule("cosine", 1000)
    mean, variance = diagonal_data()
    network = BiasedNetwork(schedule, mean, variance, torch.eye(len(mean), dtype=torch.float64), "v")
    mask = task_mask("unconditional", SHAPE[0], SHAPE[1], 0)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = GRIDS["uniform"](schedule, 10)

    def error(sampler: str, **options) -> float:
        model = MaskedDenoiser(
            Denoiser(network, schedule, "v", clip_denoised=False), torch.zeros(SHAPE, dtype=torch.float64), mask
        )
        out = get_sampler(sampler)(model, noise, times, **options)
        return (out - exact_flow_then_landing(schedule, noise, times)).abs().mean().item()

    ddim, heun, heun_everywhere = error("ddim"), error("heun"), error("heun", second_order_max=math.inf)
    assert heun < 1.5 * ddim, (heun, ddim)
    assert heun_everywhere > 10 * ddim, (heun_everywhere, ddim)


def test_the_order_check_fails_a_first_order_method_claimed_as_second():
    """DDIM on the grids where second-order methods pass must measure near 1, far below the bound for order 2."""
    errors = [convergence_error("ddim", "linear", "logsnr", steps) for steps in STEPS]
    assert log_log_slope(STEPS, errors) < 2 - 0.3 - 0.5


@pytest.mark.parametrize("schedule_name", ["linear", "cosine_logsnr"])
@pytest.mark.parametrize(
    "sampler,options",
    [
        ("ddim", {"eta": 0.0}),
        ("ddim", {"eta": 1.0}),
        ("ddpm", {"gamma": 0.5}),
        ("predictor_corrector", {}),
        ("heun", {}),
        ("heun", {"s_churn": 3.0}),
        ("dpmpp_2m", {}),
        ("dpmpp_2m_sde", {}),
        ("dpmpp_3m", {}),
        ("dpmpp_3m_sde", {}),
    ],
)
def test_every_parameterization_gives_the_same_samples(sampler, options, schedule_name):
    schedule = build_schedule(schedule_name, 1000)
    mask = task_mask("prediction", SHAPE[0], SHAPE[1], 1)
    given = torch.rand(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    outs = [
        sample(
            diagonal_denoiser(schedule, prediction),
            given,
            mask,
            sampler=sampler,
            steps=12,
            grid="karras",
            generator=torch.Generator().manual_seed(0),
            **options,
        )
        for prediction in ("eps", "x0", "v")
    ]
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-8)
    torch.testing.assert_close(outs[2], outs[1], rtol=0, atol=1e-8)


# ------------------------------------------------------------------------------------------- the data distribution
def correlated_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An 8-pixel clip (2 frames of 1 x 2 x 2) with a full covariance (eigenvalues 0.05 to 2.8) and a mean."""
    g = torch.Generator().manual_seed(0)
    factor = torch.randn(8, 8, generator=g, dtype=torch.float64) * 0.3
    covariance = factor @ factor.T + 0.05 * torch.eye(8, dtype=torch.float64)
    mean = torch.rand(8, generator=g, dtype=torch.float64) - 0.5
    eigenvalues, basis = torch.linalg.eigh(covariance)
    return mean, eigenvalues, basis


SAMPLES = 8000
# (sampler, options, schedule, steps, grid): first-order samplers get more steps so that their bias (which shrinks as
# 1 / steps) stays below the tolerance; measured variance ratios are within 0.95-1.05.
DISTRIBUTION_CASES = [
    ("ddpm", {"gamma": 0.0}, "cosine_logsnr", 250, "uniform"),
    ("ddpm", {"gamma": 1.0}, "cosine_logsnr", 250, "uniform"),
    ("ddpm", {"gamma": 1.0}, "linear", 250, "uniform"),
    ("predictor_corrector", {}, "cosine_logsnr", 250, "uniform"),
    ("ddim", {"eta": 0.0}, "linear", 250, "uniform"),
    ("dpmpp_2m_sde", {}, "cosine_logsnr", 100, "logsnr"),
    ("dpmpp_3m_sde", {}, "linear", 100, "logsnr"),
    ("heun", {"s_churn": 10.0}, "cosine", 100, "logsnr"),
    ("dpmpp_2m", {"sigma_max": 80.0}, "cosine_logsnr", 50, "karras"),  # the full range wastes half the steps
]


def draw(sampler: str, options: dict, schedule_name: str, steps: int, grid: str) -> torch.Tensor:
    schedule = build_schedule(schedule_name, 1000)
    mean, eigenvalues, basis = correlated_data()
    denoiser = Denoiser(GaussianNetwork(schedule, mean, eigenvalues, basis), schedule, "x0", clip_denoised=False)
    mask = task_mask("unconditional", SAMPLES, 2, 0)
    out = sample(
        denoiser,
        torch.zeros(SAMPLES, 2, 1, 2, 2, dtype=torch.float64),
        mask,
        sampler=sampler,
        steps=steps,
        grid=grid,
        generator=torch.Generator().manual_seed(3),
        **options,
    )
    return out.reshape(SAMPLES, -1)


def whitened(samples: torch.Tensor) -> torch.Tensor:
    """Samples in the data's eigenbasis, each direction scaled to unit variance: N(0, I) if the sampler is right."""
    mean, eigenvalues, basis = correlated_data()
    return (samples - mean) @ basis / eigenvalues.sqrt()


@pytest.mark.parametrize("sampler,options,schedule_name,steps,grid", DISTRIBUTION_CASES)
def test_samplers_draw_the_data_mean_and_covariance(sampler, options, schedule_name, steps, grid):
    white = whitened(draw(sampler, options, schedule_name, steps, grid))
    # Statistical scale with 8000 samples: 0.011 for each mean, 0.016 for each variance and correlation.
    assert white.mean(0).abs().max() < 0.05
    covariance = torch.cov(white.T)
    assert (covariance.diagonal() - 1).abs().max() < 0.08, covariance.diagonal()
    assert (covariance - torch.diag(covariance.diagonal())).abs().max() < 0.07


def test_the_distribution_check_fails_a_sampler_with_the_wrong_noise():
    """``sample_ddpm``'s loop with its noise left out, or doubled, must fail the same check."""
    mean, eigenvalues, basis = correlated_data()
    schedule = build_schedule("cosine_logsnr")
    denoiser = Denoiser(GaussianNetwork(schedule, mean, eigenvalues, basis), schedule, "x0", clip_denoised=False)
    model = MaskedDenoiser(
        denoiser, torch.zeros(SAMPLES, 2, 1, 2, 2, dtype=torch.float64), task_mask("unconditional", SAMPLES, 2, 0)
    )
    times = schedule.sampling_times(250)
    for scale in (0.0, 2.0):
        generator = torch.Generator().manual_seed(3)
        z = torch.randn(SAMPLES, 2, 1, 2, 2, generator=generator, dtype=torch.float64)
        for i in range(len(times) - 2):
            (a_t, s_t), (a_s, s_s) = model.alpha_sigma(times[i]), model.alpha_sigma(times[i + 1])
            noise = scale * torch.randn(z.shape, generator=generator, dtype=z.dtype)
            z = ancestral_step(z, model(z, times[i]), a_t, s_t, a_s, s_s, 0.0, noise)
        variances = torch.cov(whitened(model(z, times[-2]).reshape(SAMPLES, -1)).T).diagonal()
        assert (variances - 1).abs().max() > 0.3, variances
