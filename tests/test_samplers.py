"""Samplers: exactness with a perfect denoiser, bit-exact observed frames, seeding, step counts, padding, the option
dispatch of ``sample``, network-call counts, and improved-diffusion's p_sample chain written out independently."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from video_diffusion_lab.diffusion.denoiser import Denoiser, MaskedDenoiser
from video_diffusion_lab.diffusion.masks import FrameMask, default_frame_indices, task_mask
from video_diffusion_lab.diffusion.samplers import (
    SAMPLERS,
    get_sampler,
    network_calls,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_heun,
    sampling_options,
)
from video_diffusion_lab.diffusion.schedules import GRIDS, CosineLogSNRSchedule, DiscreteSchedule, build_schedule

SHAPE = (2, 5, 2, 4, 4)  # B, T, C, H, W

SAMPLER_OPTIONS = [
    ("ddim", {"eta": 0.0}),
    ("ddim", {"eta": 1.0}),
    ("ddpm", {"gamma": 0.0}),
    ("ddpm", {"gamma": 1.0}),
    ("predictor_corrector", {"corrector_steps": 2}),
    ("heun", {}),
    ("heun", {"s_churn": 2.0}),
    ("dpmpp_2m", {}),
    ("dpmpp_2m_sde", {}),
    ("dpmpp_3m", {}),
    ("dpmpp_3m_sde", {"sde_eta": 0.5}),
]
STOCHASTIC = [
    (name, options)
    for name, options in SAMPLER_OPTIONS
    if name not in ("heun", "dpmpp_2m", "dpmpp_3m") and options.get("eta", 1) != 0
] + [("heun", {"s_churn": 2.0})]
SCHEDULES = {"linear": lambda: DiscreteSchedule.linear(100), "cosine_logsnr": CosineLogSNRSchedule}


pytestmark = pytest.mark.usefixtures("single_thread")


def clip(seed: int = 0) -> torch.Tensor:
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perfect_denoiser(x0: torch.Tensor, schedule) -> Denoiser:
    return Denoiser(lambda z, time, mask: x0, schedule, prediction="x0", clip_denoised=False)


class TinyNet(nn.Module):
    """A random eps-network: one 3D convolution plus a time-dependent bias."""

    def __init__(self, channels: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)
        self.time = nn.Linear(1, channels)

    def forward(self, z, time, mask):
        h = self.conv(z.transpose(1, 2)).transpose(1, 2)
        bias = self.time(torch.tanh(time.float()[:, None] / 1000))
        return h + bias[:, None, :, None, None]


class Counting:
    def __init__(self, network):
        self.network, self.calls = network, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.network(*args, **kwargs)


def mixed_mask() -> FrameMask:
    """Example 0: prediction from 2 frames; example 1: infilling (first and last given)."""
    observed = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    return FrameMask.from_observed(observed)


# ----------------------------------------------------------------------------- perfect denoiser


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_perfect_denoiser_gives_x0_exactly_on_discrete_schedules(name, sampler, options):
    x0 = clip()
    schedule = build_schedule(name, 100)
    out = sample(
        perfect_denoiser(x0, schedule),
        clip(1),
        mixed_mask(),
        sampler=sampler,
        steps=10,
        generator=torch.Generator().manual_seed(0),
        **options,
    )
    latent = FrameMask.per_frame(mixed_mask().latent, out).expand_as(out)
    assert torch.equal(out[latent], x0[latent])


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_perfect_denoiser_recovers_x0_on_continuous_schedule(sampler, options):
    x0 = clip()
    schedule = CosineLogSNRSchedule()
    out = sample(
        perfect_denoiser(x0, schedule),
        clip(1),
        mixed_mask(),
        sampler=sampler,
        steps=10,
        generator=torch.Generator().manual_seed(0),
        **options,
    )
    latent = FrameMask.per_frame(mixed_mask().latent, out).expand_as(out)
    # Every sampler's last step lands on x_hat = x0 itself.
    assert torch.equal(out[latent], x0[latent])


def test_perfect_denoiser_ddim_with_eta_zero_is_deterministic_given_noise():
    x0 = clip()
    schedule = DiscreteSchedule.linear(100)
    times = schedule.sampling_times(5)
    mask = task_mask("prediction", 2, 5, 1)
    model = MaskedDenoiser(perfect_denoiser(x0, schedule), clip(1), mask)
    noise = torch.randn(SHAPE)
    a = sample_ddim(model, noise, times, eta=0.0)
    b = sample_ddim(model, noise.clone(), times, eta=0.0)
    assert torch.equal(a, b)
    assert torch.equal(a[:, 1:], x0[:, 1:]) and torch.equal(a[:, :1], clip(1)[:, :1])


# ----------------------------------------------------------------------------- observed frames and finiteness


@pytest.mark.parametrize("schedule_name", list(SCHEDULES))
@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_observed_frames_are_kept_bit_exactly(schedule_name, sampler, options):
    given = clip()
    mask = mixed_mask()
    denoiser = Denoiser(TinyNet(), SCHEDULES[schedule_name](), prediction="eps")
    out = sample(denoiser, given, mask, sampler=sampler, steps=6, generator=torch.Generator().manual_seed(0), **options)
    observed = FrameMask.per_frame(mask.observed, out).expand_as(out)
    assert out.shape == given.shape
    assert torch.equal(out[observed], given[observed])
    assert torch.isfinite(out).all()
    assert not torch.equal(out[~observed], given[~observed])


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_samplers_themselves_return_the_given_frames_exactly(sampler, options):
    """Not only ``sample``: a sampler called on a masked denoiser ends on its estimate, which holds the given frames."""
    given, mask = clip(), mixed_mask()
    schedule = DiscreteSchedule.cosine(100)
    model = MaskedDenoiser(Denoiser(TinyNet(), schedule, "v"), given, mask)
    out = get_sampler(sampler)(
        model, torch.randn(SHAPE), GRIDS["karras"](schedule, 5), generator=torch.Generator().manual_seed(0), **options
    )
    observed = FrameMask.per_frame(mask.observed, out).expand_as(out)
    assert torch.equal(out[observed], given[observed])


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_latent_slots_of_given_are_ignored(sampler, options):
    mask = mixed_mask()
    given = clip()
    poisoned = mask.keep_observed(torch.full(SHAPE, float("nan")), given)
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(100), prediction="eps")
    a = sample(denoiser, given, mask, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0), **options)
    b = sample(
        denoiser, poisoned, mask, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0), **options
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_denoiser_always_sees_the_given_frames(sampler, options):
    mask = mixed_mask()
    given = clip()
    seen = []

    def network(z, time, mask_):
        seen.append(z.clone())
        return torch.zeros_like(z)

    schedule = DiscreteSchedule.linear(100)
    sample(Denoiser(network, schedule, "eps"), given, mask, sampler=sampler, steps=5, **options)
    observed = FrameMask.per_frame(mask.observed, given).expand_as(given)
    assert len(seen) == network_calls(sampler, 5, schedule=schedule, **options)
    for z in seen:
        assert torch.equal(z[observed], given[observed])


@pytest.mark.parametrize("grid", list(GRIDS))
@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_padding_slots_do_not_break_samplers(sampler, options, grid):
    observed = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    latent = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)  # example 0 has two padding slots
    mask = FrameMask(observed, latent, default_frame_indices(2, 5))
    given = clip()
    for schedule in (DiscreteSchedule.linear(100), CosineLogSNRSchedule()):
        out = sample(Denoiser(TinyNet(), schedule, "eps"), given, mask, sampler=sampler, steps=5, grid=grid, **options)
        assert torch.isfinite(out).all()
        obs = FrameMask.per_frame(observed, out).expand_as(out)
        assert torch.equal(out[obs], given[obs])


def test_unconditional_sampling_is_finite():
    mask = task_mask("unconditional", 2, 5, 0)
    out = sample(Denoiser(TinyNet(), CosineLogSNRSchedule(), "v"), clip(), mask, sampler="ddpm", steps=4)
    assert out.shape == SHAPE and torch.isfinite(out).all()


def test_mask_that_does_not_fit_the_clips_is_an_error():
    with pytest.raises(ValueError, match="mask"):
        sample(
            Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), task_mask("prediction", 2, 4, 1), steps=2
        )


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("sampler,options", STOCHASTIC)
def test_same_seed_same_sample_different_seed_different_sample(sampler, options):
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(100), "eps")
    given, mask = clip(), mixed_mask()

    def run(seed):
        return sample(
            denoiser, given, mask, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(seed), **options
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m", "dpmpp_3m"])
def test_deterministic_samplers_draw_only_the_initial_noise(sampler):
    """Two generators that agree on the first draw only give the same sample: no further noise is used."""
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(100), "eps")
    first = torch.Generator().manual_seed(0)
    noise = torch.randn(SHAPE, generator=first)
    model = MaskedDenoiser(denoiser, clip(), mixed_mask())
    times = DiscreteSchedule.linear(100).sampling_times(4)
    a = get_sampler(sampler)(model, noise, times, generator=torch.Generator().manual_seed(1))
    b = get_sampler(sampler)(model, noise, times, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- step counts, callbacks, progress


def test_steps_none_runs_the_full_discrete_chain():
    net = Counting(TinyNet())
    sample(Denoiser(net, DiscreteSchedule.linear(30), "eps"), clip(), mixed_mask(), steps=None)
    assert net.calls == 30


def test_steps_none_on_continuous_schedule_uses_default_steps():
    net = Counting(lambda z, time, mask: torch.zeros_like(z))
    sample(Denoiser(net, CosineLogSNRSchedule(), "eps"), clip(), mixed_mask(), sampler="ddpm", steps=None)
    assert net.calls == 256


@pytest.mark.parametrize("grid", ["uniform", "karras"])
@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
@pytest.mark.parametrize("steps", [1, 3, 7, 20])
def test_network_calls_counts_the_denoiser_calls(sampler, options, steps, grid):
    net = Counting(TinyNet())
    schedule = DiscreteSchedule.cosine(50)
    sample(Denoiser(net, schedule, "eps"), clip(), mixed_mask(), sampler=sampler, steps=steps, grid=grid, **options)
    assert net.calls == network_calls(sampler, steps, schedule=schedule, grid=grid, **options)


def test_network_calls_of_each_family():
    assert network_calls("ddim", 10) == network_calls("dpmpp_2m", 10) == network_calls("dpmpp_3m_sde", 10) == 10
    schedule = DiscreteSchedule.cosine(1000)  # its top noise level s = sigma / alpha is ~ 1e4, above 80
    capped = {"grid": "karras", "sigma_max": 80.0}
    assert network_calls("heun", 10, schedule=schedule, **capped) == 19  # two per step, one on the last
    # From the top of the chain, steps above s = 80 are Euler steps (one call); a cap of inf corrects them all.
    assert network_calls("heun", 10, schedule=schedule) < 19
    assert network_calls("heun", 10, schedule=schedule, second_order_max=float("inf")) == 19
    with pytest.raises(ValueError, match="schedule"):
        network_calls("heun", 10)
    assert network_calls("predictor_corrector", 10) == 19  # default: one correction per step but the last
    assert network_calls("predictor_corrector", 10, corrector_steps=3) == 10 + 27
    with pytest.raises(ValueError, match="sampler"):
        network_calls("euler", 10)


@pytest.mark.parametrize("sampler_fn", [sample_ddim, sample_ddpm, sample_heun, sample_dpmpp_2m])
def test_callback_sees_every_step(sampler_fn):
    schedule = DiscreteSchedule.linear(50)
    times = schedule.sampling_times(4)
    events = []
    model = MaskedDenoiser(Denoiser(TinyNet(), schedule, "eps"), clip(), mixed_mask())
    sampler_fn(model, torch.randn(SHAPE), times, callback=events.append)
    assert [e["i"] for e in events] == [0, 1, 2, 3]
    assert [e["t"].item() for e in events] == times[:-1].tolist()
    assert all(e["z"].shape == SHAPE and e["x0"].shape == SHAPE for e in events)


def test_progress_path_matches_quiet_path():
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps")
    a = sample(denoiser, clip(), mixed_mask(), steps=3, progress=True, generator=torch.Generator().manual_seed(0))
    b = sample(denoiser, clip(), mixed_mask(), steps=3, progress=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_extra_args_reach_the_network():
    seen = []

    def network(z, time, mask, context=None):
        seen.append(context)
        return torch.zeros_like(z)

    sample(
        Denoiser(network, DiscreteSchedule.linear(50), "eps"),
        clip(),
        mixed_mask(),
        steps=2,
        extra_args={"context": "label"},
    )
    assert seen == ["label", "label"]


def test_get_sampler():
    assert get_sampler("ddim") is sample_ddim
    assert get_sampler("ddpm") is sample_ddpm
    assert get_sampler("heun") is sample_heun
    with pytest.raises(ValueError, match="sampler"):
        get_sampler("euler")
    with pytest.raises(ValueError, match="sampler.*dpmpp_2m"):
        sample(Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), sampler="lms", steps=2)
    with pytest.raises(ValueError, match="grid.*karras"):
        sample(Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), grid="cosine", steps=2)


def test_too_many_steps_for_discrete_schedule():
    with pytest.raises(ValueError, match="steps"):
        sample(Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), steps=51)


def test_zero_steps_is_an_error_not_the_full_chain():
    # BUG (diffusion/samplers.py, sample): `steps or default_sampling_steps` turns steps=0 into the full chain.
    net = Counting(lambda z, time, mask: torch.zeros_like(z))
    with pytest.raises(ValueError, match="steps"):
        sample(Denoiser(net, DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), steps=0)
    assert net.calls == 0


# ----------------------------------------------------------------------------- options from one config group


def test_every_option_is_listed_with_its_default():
    assert sampling_options() == {
        "eta": 0.0,
        "gamma": 0.0,
        "delta": 0.1,
        "corrector_steps": 1,
        "s_churn": 0.0,
        "second_order_max": 80.0,
        "sde_eta": 1.0,
        "rho": 7.0,
        "sigma_max": None,
    }


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_one_config_group_of_options_serves_every_sampler(sampler):
    """``sample`` hands each sampler only its own options: the full group equals the sampler's own ones alone."""
    group = {
        "eta": 0.5,
        "gamma": 0.3,
        "delta": 0.05,
        "corrector_steps": 2,
        "s_churn": 1.0,
        "second_order_max": 9.0,
        "sde_eta": 0.7,
        "rho": 5.0,
    }
    own = {
        k: v
        for k, v in group.items()
        if k in {"eta"}
        and sampler == "ddim"
        or k in {"gamma"}
        and sampler in ("ddpm", "predictor_corrector")
        or k in {"delta", "corrector_steps"}
        and sampler == "predictor_corrector"
        or k in {"s_churn", "second_order_max"}
        and sampler == "heun"
        or k == "sde_eta"
        and sampler.endswith("_sde")
    }
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps")
    a = sample(
        denoiser,
        clip(),
        mixed_mask(),
        sampler=sampler,
        steps=4,
        grid="karras",
        generator=torch.Generator().manual_seed(0),
        **group,
    )
    b = sample(
        denoiser,
        clip(),
        mixed_mask(),
        sampler=sampler,
        steps=4,
        grid="karras",
        rho=5.0,
        generator=torch.Generator().manual_seed(0),
        **own,
    )
    c = sample(
        denoiser,
        clip(),
        mixed_mask(),
        sampler=sampler,
        steps=4,
        grid="karras",
        generator=torch.Generator().manual_seed(0),
        **own,
    )
    assert torch.equal(a, b)
    assert not torch.equal(b, c)  # rho reached the grid


@pytest.mark.parametrize(
    "sampler,option,values",
    [
        ("ddim", "eta", (0.0, 1.0)),
        ("ddpm", "gamma", (0.0, 1.0)),
        ("predictor_corrector", "delta", (0.1, 0.3)),
        ("heun", "s_churn", (0.0, 5.0)),
        ("heun", "second_order_max", (1.0, float("inf"))),
        ("dpmpp_2m_sde", "sde_eta", (0.0, 1.0)),
        ("dpmpp_3m_sde", "sde_eta", (0.0, 1.0)),
    ],
)
def test_each_option_changes_its_sampler(sampler, option, values):
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps")
    a, b = (
        sample(
            denoiser,
            clip(),
            mixed_mask(),
            sampler=sampler,
            steps=4,
            generator=torch.Generator().manual_seed(0),
            **{option: v},
        )
        for v in values
    )
    assert not torch.allclose(a, b)


def test_unknown_option_is_an_error_naming_it():
    with pytest.raises(ValueError, match="etta"):
        sample(Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), steps=2, etta=0.5)


# ----------------------------------------------------------------------------- relations between samplers


@pytest.mark.parametrize("schedule_name,atol", [("linear", 1e-5), ("cosine_logsnr", 1e-4)])
def test_ddim_with_eta_one_is_ddpm_with_posterior_variance(schedule_name, atol):
    # Song et al.: eta = 1 gives DDPM's posterior q(z_s | z_t, x_hat); both samplers draw the same noise in the same
    # order, so they agree sample for sample.
    denoiser = Denoiser(TinyNet(), SCHEDULES[schedule_name](), "eps")
    ddim = sample(
        denoiser, clip(), mixed_mask(), sampler="ddim", eta=1.0, steps=8, generator=torch.Generator().manual_seed(0)
    )
    ddpm = sample(
        denoiser, clip(), mixed_mask(), sampler="ddpm", gamma=0.0, steps=8, generator=torch.Generator().manual_seed(0)
    )
    ddpm_large = sample(
        denoiser, clip(), mixed_mask(), sampler="ddpm", gamma=1.0, steps=8, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=atol)
    assert not torch.allclose(ddpm, ddpm_large, atol=1e-2)


@pytest.mark.parametrize("schedule_name", list(SCHEDULES))
def test_first_steps_of_dpm_solver_are_ddim_and_ddpm(schedule_name):
    """DPM-Solver++'s first step is first order: with eta = 0 the DDIM step, with eta = 1 DDPM's posterior step.
    With two steps (one step, then the landing) the samplers must agree; with more they must not (higher order)."""
    denoiser = Denoiser(TinyNet(), SCHEDULES[schedule_name](), "eps")

    def run(sampler, steps, **options):
        return sample(
            denoiser,
            clip(),
            mixed_mask(),
            sampler=sampler,
            steps=steps,
            generator=torch.Generator().manual_seed(0),
            **options,
        )

    for steps, agree in ((2, True), (4, False)):
        ddim, ddpm = run("ddim", steps), run("ddpm", steps, gamma=0.0)
        for sampler in ("dpmpp_2m", "dpmpp_3m"):
            assert torch.allclose(run(sampler, steps), ddim, rtol=0, atol=1e-5) is agree
        for sampler in ("dpmpp_2m_sde", "dpmpp_3m_sde"):
            assert torch.allclose(run(sampler, steps, sde_eta=1.0), ddpm, rtol=0, atol=1e-5) is agree


def test_network_sees_fractional_discrete_times_on_the_log_snr_grid():
    seen = []

    def network(z, time, mask):
        seen.append(time[0].item())
        return torch.zeros_like(z)

    schedule = DiscreteSchedule.linear(100)
    sample(Denoiser(network, schedule, "eps"), clip(), mixed_mask(), sampler="ddim", steps=6, grid="logsnr")
    times = GRIDS["logsnr"](schedule, 6)[:-1]
    torch.testing.assert_close(torch.tensor(seen, dtype=torch.float64), times * 10, rtol=0, atol=1e-4)
    assert any(abs(t - round(t)) > 0.01 for t in seen)


# ----------------------------------------------------------------------------- improved-diffusion's p_sample


@pytest.mark.parametrize("gamma,variance", [(1.0, "FIXED_LARGE"), (0.0, "FIXED_SMALL")])
def test_full_chain_ancestral_sampler_is_improved_diffusions_p_sample(gamma, variance):
    """The 1000-step chain of ``sample_ddpm`` equals improved-diffusion's p_sample_loop, written here from Ho et al.'s
    formulas in float64: x_0 estimate from eps (clipped), posterior mean coefficients, variance beta_t (FIXED_LARGE)
    or the posterior variance (FIXED_SMALL), no noise at t = 0. Same noise draws in the same order."""
    schedule = DiscreteSchedule.linear(1000)
    net = TinyNet()
    mask = task_mask("unconditional", 2, 5, 0)
    given = torch.zeros(SHAPE)
    ours = sample(
        Denoiser(net, schedule, "eps", clip_denoised=True),
        given,
        mask,
        sampler="ddpm",
        gamma=gamma,
        generator=torch.Generator().manual_seed(0),
    )

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    coef1 = betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod)
    coef2 = (1 - alphas_cumprod_prev) * (1 - betas).sqrt() / (1 - alphas_cumprod)
    model_variance = betas if variance == "FIXED_LARGE" else posterior_variance
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=generator)
    with torch.no_grad():
        for t in range(999, -1, -1):
            eps = net(x, torch.full((2,), t * 1.0), mask).double()
            x0 = (x.double() / alphas_cumprod[t].sqrt() - (1 / alphas_cumprod[t] - 1).sqrt() * eps).clamp(-1, 1)
            mean = coef1[t] * x0 + coef2[t] * x.double()
            if t > 0:
                x = (mean + model_variance[t].sqrt() * torch.randn(SHAPE, generator=generator)).float()
            else:
                x = mean.float()
    torch.testing.assert_close(ours, x, rtol=0, atol=2e-5)
