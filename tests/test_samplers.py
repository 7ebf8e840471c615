"""Samplers: exactness with a perfect denoiser, bit-exact observed frames, seeding, step counts, padding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffusion.denoiser import Denoiser
from diffusion.masks import FrameMask, default_frame_indices, task_mask
from diffusion.samplers import get_sampler, sample, sample_ddim, sample_ddpm
from diffusion.schedules import CosineLogSNRSchedule, DiscreteSchedule, build_schedule

SHAPE = (2, 5, 2, 4, 4)  # B, T, C, H, W

SAMPLER_OPTIONS = [("ddim", {"eta": 0.0}), ("ddim", {"eta": 1.0}), ("ddpm", {"gamma": 0.0}), ("ddpm", {"gamma": 1.0})]
SCHEDULES = {"linear": lambda: DiscreteSchedule.linear(100), "cosine_logsnr": CosineLogSNRSchedule}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP spinning costs seconds."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
@pytest.mark.parametrize(
    "sampler,options", [("ddim", {"eta": 0.0}), ("ddpm", {"gamma": 0.0}), ("ddpm", {"gamma": 1.0})]
)
def test_perfect_denoiser_gives_x0_exactly_on_discrete_schedules(name, sampler, options):
    x0 = clip()
    schedule = build_schedule(name, 100)
    out = sample(perfect_denoiser(x0, schedule), clip(1), mixed_mask(), sampler=sampler, steps=10,
                 generator=torch.Generator().manual_seed(0), **options)
    latent = FrameMask.per_frame(mixed_mask().latent, out).expand_as(out)
    assert torch.equal(out[latent], x0[latent])


def test_perfect_denoiser_ddim_recovers_x0_on_continuous_schedule():
    x0 = clip()
    schedule = CosineLogSNRSchedule()
    out = sample(perfect_denoiser(x0, schedule), clip(1), mixed_mask(), sampler="ddim", steps=10, eta=0.0,
                 generator=torch.Generator().manual_seed(0))
    latent = FrameMask.per_frame(mixed_mask().latent, out).expand_as(out)
    # The grid ends at t = 0 where sigma = sqrt(sigmoid(-20)) ~ 4.5e-5, so a residual of that size remains.
    torch.testing.assert_close(out[latent], x0[latent], rtol=0, atol=1e-3)


def test_perfect_denoiser_ddim_with_eta_zero_is_deterministic_given_noise():
    x0 = clip()
    schedule = DiscreteSchedule.linear(100)
    times = schedule.sampling_times(5)
    mask = task_mask("prediction", 2, 5, 1)
    a = sample_ddim(perfect_denoiser(x0, schedule), torch.randn(SHAPE), clip(1), mask, times, eta=0.0)
    b = sample_ddim(perfect_denoiser(x0, schedule), torch.randn(SHAPE), clip(1), mask, times, eta=0.0)
    assert torch.equal(a, b)


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
def test_latent_slots_of_given_are_ignored(sampler, options):
    mask = mixed_mask()
    given = clip()
    poisoned = mask.keep_observed(torch.full(SHAPE, float("nan")), given)
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(100), prediction="eps")
    a = sample(denoiser, given, mask, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0),
               **options)
    b = sample(denoiser, poisoned, mask, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(0),
               **options)
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_denoiser_always_sees_the_given_frames(sampler, options):
    mask = mixed_mask()
    given = clip()
    seen = []

    def network(z, time, mask_):
        seen.append(z.clone())
        return torch.zeros_like(z)

    sample(Denoiser(network, DiscreteSchedule.linear(100), "eps"), given, mask, sampler=sampler, steps=5, **options)
    observed = FrameMask.per_frame(mask.observed, given).expand_as(given)
    assert len(seen) == 5
    for z in seen:
        assert torch.equal(z[observed], given[observed])


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_padding_slots_do_not_break_samplers(sampler, options):
    observed = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    latent = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)  # example 0 has two padding slots
    mask = FrameMask(observed, latent, default_frame_indices(2, 5))
    given = clip()
    for schedule in (DiscreteSchedule.linear(100), CosineLogSNRSchedule()):
        out = sample(Denoiser(TinyNet(), schedule, "eps"), given, mask, sampler=sampler, steps=5, **options)
        assert torch.isfinite(out).all()
        obs = FrameMask.per_frame(observed, out).expand_as(out)
        assert torch.equal(out[obs], given[obs])


def test_unconditional_sampling_is_finite():
    mask = task_mask("unconditional", 2, 5, 0)
    out = sample(Denoiser(TinyNet(), CosineLogSNRSchedule(), "v"), clip(), mask, sampler="ddpm", steps=4)
    assert out.shape == SHAPE and torch.isfinite(out).all()


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("sampler,options", SAMPLER_OPTIONS)
def test_same_seed_same_sample_different_seed_different_sample(sampler, options):
    denoiser = Denoiser(TinyNet(), DiscreteSchedule.linear(100), "eps")
    given, mask = clip(), mixed_mask()

    def run(seed):
        return sample(denoiser, given, mask, sampler=sampler, steps=4, generator=torch.Generator().manual_seed(seed),
                      **options)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ----------------------------------------------------------------------------- step counts, callbacks, progress


def test_steps_none_runs_the_full_discrete_chain():
    net = Counting(TinyNet())
    sample(Denoiser(net, DiscreteSchedule.linear(30), "eps"), clip(), mixed_mask(), steps=None)
    assert net.calls == 30


def test_steps_none_on_continuous_schedule_uses_default_steps():
    net = Counting(lambda z, time, mask: torch.zeros_like(z))
    sample(Denoiser(net, CosineLogSNRSchedule(), "eps"), clip(), mixed_mask(), sampler="ddpm", steps=None)
    assert net.calls == 256


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])  # predictor-corrector adds a corrector call per step
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_one_denoiser_call_per_step(sampler, steps):
    net = Counting(TinyNet())
    sample(Denoiser(net, DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), sampler=sampler, steps=steps)
    assert net.calls == steps


@pytest.mark.parametrize("sampler_fn", [sample_ddim, sample_ddpm])
def test_callback_sees_every_step(sampler_fn):
    schedule = DiscreteSchedule.linear(50)
    times = schedule.sampling_times(4)
    events = []
    sampler_fn(Denoiser(TinyNet(), schedule, "eps"), torch.randn(SHAPE), clip(), mixed_mask(), times,
               callback=events.append)
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

    sample(Denoiser(network, DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), steps=2,
           extra_args={"context": "label"})
    assert seen == ["label", "label"]


def test_get_sampler():
    assert get_sampler("ddim") is sample_ddim
    assert get_sampler("ddpm") is sample_ddpm
    with pytest.raises(ValueError, match="sampler"):
        get_sampler("euler")
    with pytest.raises(ValueError, match="sampler"):
        sample(Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), sampler="heun", steps=2)


def test_too_many_steps_for_discrete_schedule():
    with pytest.raises(ValueError, match="steps"):
        sample(Denoiser(TinyNet(), DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), steps=51)


@pytest.mark.parametrize("schedule_name,atol", [("linear", 1e-5), ("cosine_logsnr", 1e-2)])
def test_ddim_with_eta_one_is_ddpm_with_posterior_variance(schedule_name, atol):
    # Song et al.: eta = 1 gives DDPM's posterior q(z_s | z_t, x_hat); both samplers draw the same noise in the same
    # order, so they agree sample for sample (the continuous grid loses float32 precision near t = 1).
    denoiser = Denoiser(TinyNet(), SCHEDULES[schedule_name](), "eps")
    ddim = sample(denoiser, clip(), mixed_mask(), sampler="ddim", eta=1.0, steps=8,
                  generator=torch.Generator().manual_seed(0))
    ddpm = sample(denoiser, clip(), mixed_mask(), sampler="ddpm", gamma=0.0, steps=8,
                  generator=torch.Generator().manual_seed(0))
    ddpm_large = sample(denoiser, clip(), mixed_mask(), sampler="ddpm", gamma=1.0, steps=8,
                        generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=atol)
    assert not torch.allclose(ddpm, ddpm_large, atol=1e-2)


def test_zero_steps_is_an_error_not_the_full_chain():
    # BUG (diffusion/samplers.py, sample): `steps or default_sampling_steps` turns steps=0 into the full chain.
    net = Counting(lambda z, time, mask: torch.zeros_like(z))
    with pytest.raises(ValueError, match="steps"):
        sample(Denoiser(net, DiscreteSchedule.linear(50), "eps"), clip(), mixed_mask(), steps=0)
    assert net.calls == 0
