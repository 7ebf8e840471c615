"""Noise schedules: known values of the discrete chains, the VP identity, the clean state, fractional discrete times,
the inverse of the log-SNR, and the sampling grids (uniform, log-SNR, Karras)."""

from __future__ import annotations

import math

import pytest
import torch

from video_diffusion_lab.diffusion.schedules import (
    CLEAN_DISCRETE_TIME,
    GRIDS,
    CosineLogSNRSchedule,
    DiscreteSchedule,
    build_schedule,
    cosine_betas,
    get_grid,
    karras_grid,
    linear_betas,
    logsnr_grid,
    uniform_grid,
)


def improved_diffusion_alpha_bar(u: float, s: float = 0.008) -> float:
    """f(u) of Nichol & Dhariwal, Eq. 17 (alpha_bar_t = f(t) / f(0))."""
    return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2


# ----------------------------------------------------------------------------- discrete betas


def test_linear_betas_match_ho_et_al_for_1000_steps():
    betas = linear_betas(1000)
    assert betas.shape == (1000,)
    assert betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    assert torch.all(betas[1:] > betas[:-1])


def test_linear_betas_are_rescaled_for_fewer_steps():
    betas = linear_betas(500)
    assert betas.shape == (500,)
    assert betas[0].item() == pytest.approx(2e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.04, rel=1e-12)


def test_rescaled_linear_chain_reaches_similar_final_alpha_bar():
    # The point of the rescaling: N = 500 ends at (about) the same noise level as N = 1000.
    full = DiscreteSchedule.linear(1000).alpha_bar[-1].item()
    half = DiscreteSchedule.linear(500).alpha_bar[-1].item()
    assert full < 1e-4 and half < 1e-4
    assert math.log(half) == pytest.approx(math.log(full), rel=0.05)


def test_cosine_alpha_bar_matches_improved_diffusion_formula():
    n = 1000
    schedule = DiscreteSchedule.cosine(n)
    expected = torch.tensor(
        [improved_diffusion_alpha_bar((t + 1) / n) / improved_diffusion_alpha_bar(0.0) for t in range(n)],
        dtype=torch.float64,
    )
    # The last beta is clipped to 0.999 (f(1) = 0), so compare everything before it tightly ...
    torch.testing.assert_close(schedule.alpha_bar[:-1], expected[:-1], rtol=1e-9, atol=1e-12)
    # ... and the end of the chain is (almost) pure noise.
    assert schedule.alpha_bar[-1].item() < 1e-6


def test_cosine_betas_are_clipped_at_max_beta():
    betas = cosine_betas(100)
    assert betas.max().item() == pytest.approx(0.999)
    assert torch.all((betas > 0) & (betas <= 0.999))


@pytest.mark.parametrize("factory", [DiscreteSchedule.linear, DiscreteSchedule.cosine])
def test_discrete_alpha_bar_is_strictly_decreasing(factory):
    alpha_bar = factory(1000).alpha_bar
    assert alpha_bar[0].item() < 1.0
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1])


@pytest.mark.parametrize("bad", [torch.tensor([0.1, 1.0]), torch.tensor([0.0, 0.1]), torch.full((2, 2), 0.1)])
def test_discrete_schedule_rejects_invalid_betas(bad):
    with pytest.raises(ValueError, match="betas"):
        DiscreteSchedule(bad)


# ----------------------------------------------------------------------------- alpha / sigma


@pytest.mark.parametrize("factory", [DiscreteSchedule.linear, DiscreteSchedule.cosine])
def test_discrete_alpha_sigma_on_vp_circle(factory):
    schedule = factory(1000)
    t = torch.arange(-1, 1000)
    alpha, sigma = schedule.alpha_sigma(t)
    assert alpha.dtype == torch.float32 and alpha.shape == t.shape
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), rtol=0, atol=1e-6)
    torch.testing.assert_close(alpha[1:].double() ** 2, schedule.alpha_bar, rtol=1e-5, atol=1e-7)


def test_discrete_alpha_sigma_keeps_input_shape():
    schedule = DiscreteSchedule.linear(50)
    alpha, sigma = schedule.alpha_sigma(torch.tensor([[0, 49], [3, -1]]))
    assert alpha.shape == (2, 2) and sigma.shape == (2, 2)


@pytest.mark.parametrize("factory", [DiscreteSchedule.linear, DiscreteSchedule.cosine])
def test_discrete_clean_time_is_exactly_clean(factory):
    schedule = factory(1000)
    clean = schedule.sampling_times(10)[-1]
    assert clean.item() == CLEAN_DISCRETE_TIME == -1
    alpha, sigma = schedule.alpha_sigma(clean.reshape(1))
    assert alpha.item() == 1.0
    assert sigma.item() == 0.0


def test_continuous_alpha_sigma_on_vp_circle():
    schedule = CosineLogSNRSchedule()
    t = torch.linspace(0, 1, 101)
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), rtol=0, atol=1e-6)
    torch.testing.assert_close(alpha**2, torch.sigmoid(schedule.log_snr(t)), rtol=1e-5, atol=1e-7)


def test_continuous_clean_end_is_nearly_clean():
    alpha, sigma = CosineLogSNRSchedule().alpha_sigma(torch.tensor([0.0]))
    assert alpha.item() == pytest.approx(1.0, abs=1e-6)
    assert sigma.item() == pytest.approx(math.sqrt(torch.sigmoid(torch.tensor(-20.0)).item()), rel=1e-3)


def test_base_log_snr_of_discrete_schedule():
    schedule = DiscreteSchedule.linear(1000)
    t = torch.tensor([0, 250, 999])
    alpha_bar = schedule.alpha_bar[t]
    expected = torch.log(alpha_bar / (1 - alpha_bar)).float()
    torch.testing.assert_close(schedule.log_snr(t), expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- continuous log-SNR


def test_cosine_logsnr_endpoints():
    schedule = CosineLogSNRSchedule()
    # float32 tan near pi / 2 costs about 1e-3 at t = 1 (measured -20.0011).
    assert schedule.log_snr(torch.tensor(0.0)).item() == pytest.approx(20.0, abs=1e-3)
    assert schedule.log_snr(torch.tensor(1.0)).item() == pytest.approx(-20.0, abs=5e-3)


def test_cosine_logsnr_custom_endpoints():
    schedule = CosineLogSNRSchedule(logsnr_min=-5.0, logsnr_max=8.0)
    assert schedule.log_snr(torch.tensor(0.0)).item() == pytest.approx(8.0, abs=1e-4)
    assert schedule.log_snr(torch.tensor(1.0)).item() == pytest.approx(-5.0, abs=1e-4)


def test_cosine_logsnr_strictly_decreasing():
    logsnr = CosineLogSNRSchedule().log_snr(torch.linspace(0, 1, 1001))
    assert torch.all(logsnr[1:] < logsnr[:-1])


def test_cosine_logsnr_matches_vdm_formula_in_the_middle():
    # The unclipped VDM schedule is lambda = -2 log tan(pi t / 2); the clipping only reparametrises t slightly,
    # so at t = 0.5 lambda is close to 0.
    assert CosineLogSNRSchedule().log_snr(torch.tensor(0.5)).abs().item() < 1e-3


def test_cosine_logsnr_rejects_inverted_range():
    with pytest.raises(ValueError, match="logsnr_min"):
        CosineLogSNRSchedule(logsnr_min=5.0, logsnr_max=5.0)


# ----------------------------------------------------------------------------- sampling and training times


@pytest.mark.parametrize("steps", [1, 2, 7, 250, 999, 1000])
def test_discrete_sampling_times_grid(steps):
    times = DiscreteSchedule.linear(1000).sampling_times(steps)
    assert times.shape == (steps + 1,)
    assert times.dtype == torch.long
    assert times[0].item() == 999
    assert times[-1].item() == -1
    assert torch.all(times[1:] < times[:-1])


def test_discrete_sampling_times_full_chain():
    times = DiscreteSchedule.linear(50).sampling_times(50)
    assert times.tolist() == list(range(49, -2, -1))


@pytest.mark.parametrize("steps", [0, 51])
def test_discrete_sampling_times_out_of_range(steps):
    with pytest.raises(ValueError, match="steps"):
        DiscreteSchedule.linear(50).sampling_times(steps)


def test_continuous_sampling_times_grid():
    times = CosineLogSNRSchedule().sampling_times(8)
    assert times.shape == (9,)
    assert times[0].item() == 1.0 and times[-1].item() == 0.0
    assert torch.all(times[1:] < times[:-1])
    with pytest.raises(ValueError, match="steps"):
        CosineLogSNRSchedule().sampling_times(0)


def test_training_times_cover_the_process():
    torch.manual_seed(0)
    discrete = DiscreteSchedule.linear(50).sample_training_times(5000)
    assert discrete.dtype == torch.long
    assert set(discrete.tolist()) == set(range(50))
    continuous = CosineLogSNRSchedule().sample_training_times(2000)
    assert continuous.min().item() >= 0.0 and continuous.max().item() < 1.0
    assert continuous.std().item() == pytest.approx(math.sqrt(1 / 12), rel=0.1)


def test_network_time():
    discrete = DiscreteSchedule.linear(500)
    torch.testing.assert_close(discrete.network_time(torch.tensor([0, 250, 499])), torch.tensor([0.0, 500.0, 998.0]))
    continuous = CosineLogSNRSchedule()
    t = torch.tensor([0.2, 0.7])
    torch.testing.assert_close(continuous.network_time(t), continuous.log_snr(t))


def test_default_sampling_steps():
    assert DiscreteSchedule.linear(123).default_sampling_steps == 123
    assert CosineLogSNRSchedule().default_sampling_steps == 256


# ----------------------------------------------------------------------------- build_schedule


@pytest.mark.parametrize(
    "name,cls,discrete",
    [
        ("linear", DiscreteSchedule, True),
        ("cosine", DiscreteSchedule, True),
        ("cosine_logsnr", CosineLogSNRSchedule, False),
    ],
)
def test_build_schedule_known_names(name, cls, discrete):
    schedule = build_schedule(name, num_steps=100)
    assert isinstance(schedule, cls)
    assert schedule.discrete is discrete
    if discrete:
        assert schedule.num_steps == 100


def test_build_schedule_unknown_name():
    with pytest.raises(ValueError, match="schedule"):
        build_schedule("quadratic")


# ----------------------------------------------------------------------------- fractional times and the inverse


def test_discrete_log_snr_is_the_chains_at_integers_and_linear_between():
    schedule = DiscreteSchedule.cosine(1000)
    table = torch.log(schedule.alpha_bar / (1 - schedule.alpha_bar))
    t = torch.arange(1000, dtype=torch.float64)
    torch.testing.assert_close(schedule.log_snr(t), table, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        schedule.log_snr(t[:-1] + 0.25), 0.75 * table[:-1] + 0.25 * table[1:], rtol=0, atol=1e-12
    )
    fine = schedule.log_snr(torch.linspace(0, 999, 20001, dtype=torch.float64))
    assert torch.all(fine[1:] < fine[:-1])
    alpha, sigma = schedule.alpha_sigma(torch.tensor([3.5, 500.25], dtype=torch.float64))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    # t < 0 is the clean state; beyond the chain the last step.
    clean_alpha, clean_sigma = schedule.alpha_sigma(torch.tensor([-1.0, -0.5]))
    assert clean_alpha.tolist() == [1.0, 1.0] and clean_sigma.tolist() == [0.0, 0.0]
    assert schedule.log_snr(torch.tensor([1500.0])).item() == pytest.approx(table[-1].item())


def test_coefficient_precision_follows_the_time_dtype():
    for schedule in (DiscreteSchedule.linear(100), CosineLogSNRSchedule()):
        assert schedule.alpha_sigma(torch.tensor([0.5], dtype=torch.float64))[0].dtype == torch.float64
        assert schedule.alpha_sigma(torch.tensor([0.5]))[0].dtype == torch.float32
        assert schedule.network_time(torch.tensor([0.5])).dtype == torch.float32
    assert DiscreteSchedule.linear(100).alpha_sigma(torch.tensor([5]))[0].dtype == torch.float32


def test_network_time_of_fractional_discrete_times():
    schedule = DiscreteSchedule.linear(500)
    torch.testing.assert_close(
        schedule.network_time(torch.tensor([0.5, 249.25], dtype=torch.float64)),
        torch.tensor([1.0, 498.5], dtype=torch.float64),
    )


@pytest.mark.parametrize(
    "schedule",
    [DiscreteSchedule.linear(1000), DiscreteSchedule.cosine(100), CosineLogSNRSchedule()],
    ids=["linear", "cosine", "cosine_logsnr"],
)
def test_time_from_log_snr_inverts_log_snr(schedule):
    t = torch.linspace(0, schedule.noisiest_time, 37, dtype=torch.float64)
    torch.testing.assert_close(schedule.time_from_log_snr(schedule.log_snr(t)), t, rtol=0, atol=1e-7)
    if schedule.discrete:
        assert schedule.time_from_log_snr(torch.tensor([math.inf])).item() == CLEAN_DISCRETE_TIME


# ----------------------------------------------------------------------------- grids


SCHEDULE_FACTORIES = {
    "linear": lambda: DiscreteSchedule.linear(1000),
    "cosine": lambda: DiscreteSchedule.cosine(1000),
    "cosine_logsnr": CosineLogSNRSchedule,
}


@pytest.mark.parametrize("name", list(SCHEDULE_FACTORIES))
@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("steps", [1, 2, 9])
def test_every_grid_runs_from_the_noisiest_time_to_the_clean_end(name, grid, steps):
    schedule = SCHEDULE_FACTORIES[name]()
    times = GRIDS[grid](schedule, steps)
    assert times.shape == (steps + 1,)
    assert torch.all(times[1:] < times[:-1])
    assert times[0].item() == schedule.noisiest_time
    if schedule.discrete:
        assert times[-1].item() == CLEAN_DISCRETE_TIME
        assert times[-2].item() == (0 if steps > 1 else schedule.noisiest_time)  # the least noisy step is visited
    else:
        assert times[-1].item() == 0.0


def test_uniform_grid_is_the_schedules_sampling_times():
    for schedule in (DiscreteSchedule.linear(1000), CosineLogSNRSchedule()):
        assert torch.equal(uniform_grid(schedule, 7), schedule.sampling_times(7))
    assert uniform_grid(DiscreteSchedule.linear(1000), 4).tolist() == [999, 666, 333, 0, -1]


@pytest.mark.parametrize("name", list(SCHEDULE_FACTORIES))
def test_logsnr_grid_is_evenly_spaced_in_log_snr(name):
    schedule = SCHEDULE_FACTORIES[name]()
    times = logsnr_grid(schedule, 8)
    noisy = times[:-1] if schedule.discrete else times
    steps = schedule.log_snr(noisy).diff()
    torch.testing.assert_close(steps, steps.mean().expand_as(steps), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", list(SCHEDULE_FACTORIES))
def test_karras_grid_is_evenly_spaced_in_s_to_the_one_over_rho(name):
    schedule = SCHEDULE_FACTORIES[name]()
    for rho in (3.0, 7.0):
        times = karras_grid(schedule, 8, rho=rho)
        noisy = times[:-1] if schedule.discrete else times
        alpha, sigma = schedule.alpha_sigma(noisy)
        spacing = ((sigma / alpha) ** (1 / rho)).diff()
        torch.testing.assert_close(spacing, spacing.mean().expand_as(spacing), rtol=1e-6, atol=1e-9)
    assert not torch.equal(karras_grid(schedule, 8, rho=3.0), karras_grid(schedule, 8, rho=7.0))
    with pytest.raises(ValueError, match="rho"):
        karras_grid(schedule, 8, rho=0.0)


@pytest.mark.parametrize("grid", list(GRIDS))
def test_sigma_max_starts_the_grid_at_that_noise_level(grid):
    for schedule in (DiscreteSchedule.linear(1000), CosineLogSNRSchedule()):
        times = GRIDS[grid](schedule, 6, sigma_max=20.0)
        alpha, sigma = schedule.alpha_sigma(times[:1].double())
        rounding = 0.05 if schedule.discrete and grid == "uniform" else 1e-9  # rounded to an integer step
        assert (sigma / alpha).item() == pytest.approx(20.0, rel=rounding)
        assert times[-1].item() == (CLEAN_DISCRETE_TIME if schedule.discrete else 0.0)
        # Above the schedule's largest level the grid starts where it always does.
        assert torch.equal(GRIDS[grid](schedule, 6, sigma_max=1e9), GRIDS[grid](schedule, 6))
        with pytest.raises(ValueError, match="sigma_max"):
            GRIDS[grid](schedule, 6, sigma_max=1e-6)


def test_grid_steps_are_checked_and_names_are_known():
    for grid in GRIDS.values():
        with pytest.raises(ValueError, match="steps"):
            grid(DiscreteSchedule.linear(50), 51)
        with pytest.raises(ValueError, match="steps"):
            grid(CosineLogSNRSchedule(), 0)
    assert get_grid("karras") is karras_grid
    with pytest.raises(ValueError, match="grid.*logsnr"):
        get_grid("exponential")
