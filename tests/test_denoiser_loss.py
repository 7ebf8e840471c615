"""The masks reach the loss correctly: what the network sees, which frames count, how examples are normalised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from video_diffusion_lab.diffusion.denoiser import Denoiser
from video_diffusion_lab.diffusion.masks import FrameMask, default_frame_indices
from video_diffusion_lab.diffusion.parameterization import PREDICTIONS
from video_diffusion_lab.diffusion.schedules import CosineLogSNRSchedule, DiscreteSchedule

SHAPE = (3, 4, 2, 3, 3)  # B, T, C, H, W


def make_mask() -> FrameMask:
    """Example 0: prediction; example 1: infilling with a padding slot; example 2: one latent frame."""
    observed = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 1], [1, 1, 0, 1]], dtype=torch.bool)
    latent = torch.tensor([[0, 1, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)
    return FrameMask(observed, latent, default_frame_indices(3, 4))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(SHAPE, generator=g) * 2 - 1
    noise = torch.randn(SHAPE, generator=g)
    return x0, noise


class Recorder:
    """A fake network that records its inputs and returns a fixed output."""

    def __init__(self, output=None):
        self.calls = []
        self.output = output

    def __call__(self, z, time, mask, **cond):
        self.calls.append({"z": z.clone(), "time": time, "mask": mask, "cond": cond})
        return torch.zeros_like(z) if self.output is None else self.output(z)


def coefficients(schedule, t, like):
    alpha, sigma = schedule.alpha_sigma(t)
    shape = (-1,) + (1,) * (like.ndim - 1)
    return alpha.reshape(shape), sigma.reshape(shape)


def per_frame(flags, video):
    return FrameMask.per_frame(flags, video).expand_as(video)


# ----------------------------------------------------------------------------- (a) what the network sees


@pytest.mark.parametrize(
    "schedule,t",
    [
        (DiscreteSchedule.linear(1000), torch.tensor([5, 500, 999])),
        (CosineLogSNRSchedule(), torch.tensor([0.1, 0.5, 0.9])),
    ],
)
def test_network_sees_clean_observed_and_noised_latent_frames(data, schedule, t):
    x0, noise = data
    mask = make_mask()
    net = Recorder()
    Denoiser(net, schedule, "eps").loss(x0, mask, t=t, noise=noise, context="c")
    (call,) = net.calls
    z = call["z"]
    alpha, sigma = coefficients(schedule, t, x0)
    observed = per_frame(mask.observed, x0)
    assert torch.equal(z[observed], x0[observed])
    torch.testing.assert_close(z[~observed], (alpha * x0 + sigma * noise)[~observed], rtol=0, atol=1e-6)
    assert not torch.allclose(z[~observed], x0[~observed], atol=1e-2)
    torch.testing.assert_close(call["time"], schedule.network_time(t))
    assert call["mask"] is mask
    assert call["cond"] == {"context": "c"}


def test_loss_draws_t_and_noise_when_not_given(data):
    x0, _ = data
    net = Recorder()
    torch.manual_seed(0)
    loss = Denoiser(net, DiscreteSchedule.linear(100), "eps").loss(x0, make_mask())
    assert torch.isfinite(loss) and loss.item() > 0
    z = net.calls[0]["z"]
    observed = per_frame(make_mask().observed, x0)
    assert torch.equal(z[observed], x0[observed])
    assert not torch.equal(z[~observed], x0[~observed])


# ----------------------------------------------------------------------------- (b) which frames count


def target_for(prediction, x0, noise, schedule, t):
    alpha, sigma = coefficients(schedule, t, x0)
    return {"eps": noise, "x0": x0, "v": alpha * noise - sigma * x0}[prediction]


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("loss_type", ["mse", "l1"])
def test_perfect_on_latent_garbage_elsewhere_gives_zero_loss(data, prediction, loss_type):
    x0, noise = data
    schedule, t = DiscreteSchedule.linear(1000), torch.tensor([10, 400, 900])
    mask = make_mask()
    target = target_for(prediction, x0, noise, schedule, t)
    garbage = torch.full(SHAPE, 1e3)
    net = Recorder(lambda z: torch.where(per_frame(mask.latent, z), target, garbage))
    loss = Denoiser(net, schedule, prediction).loss(x0, mask, t=t, noise=noise, loss_type=loss_type)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_garbage_on_latent_gives_positive_loss(data, prediction):
    x0, noise = data
    schedule, t = DiscreteSchedule.linear(1000), torch.tensor([10, 400, 900])
    mask = make_mask()
    target = target_for(prediction, x0, noise, schedule, t)
    net = Recorder(lambda z: torch.where(per_frame(mask.latent, z), target + 1.0, target))
    loss = Denoiser(net, schedule, prediction).loss(x0, mask, t=t, noise=noise)
    assert loss.item() == pytest.approx(1.0, rel=1e-5)


# ----------------------------------------------------------------------------- (c) gradients


class FixedOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.out = nn.Parameter(torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)))

    def forward(self, z, time, mask):
        return self.out


@pytest.mark.parametrize("loss_type", ["mse", "l1"])
def test_gradient_vanishes_on_observed_and_padding_frames(data, loss_type):
    x0, noise = data
    mask = make_mask()
    net = FixedOutput()
    Denoiser(net, DiscreteSchedule.linear(1000), "eps").loss(
        x0, mask, t=torch.tensor([1, 2, 3]), noise=noise, loss_type=loss_type
    ).backward()
    grad = net.out.grad
    latent = per_frame(mask.latent, grad)
    assert (grad[~latent] == 0).all()
    assert (grad[latent] != 0).all()


# ----------------------------------------------------------------------------- (d) normalisation


def offsets_network(x0, offsets):
    """An x0-predicting network whose error on frame (b, t) is offsets[b, t] at every pixel."""
    return Recorder(lambda z: x0 + offsets.reshape(*offsets.shape, 1, 1, 1))


def test_loss_is_averaged_per_example_over_latent_frames(data):
    x0, _ = data
    # Example 0 has one latent frame (error 2), example 1 three (errors 1, 2, 3).
    mask = FrameMask.from_observed(torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool))
    offsets = torch.tensor([[9.0, 9.0, 2.0, 9.0], [9.0, 1.0, 2.0, 3.0]])
    x0 = x0[:2]
    denoiser = Denoiser(offsets_network(x0, offsets), DiscreteSchedule.linear(1000), "x0")
    loss = denoiser.loss(x0, mask, t=torch.tensor([3, 7]))
    # mean over examples of (mean over each example's latent frames): (4 + (1 + 4 + 9) / 3) / 2 = 13 / 3,
    # not the mean over all latent frames (4 + 1 + 4 + 9) / 4 = 4.5.
    assert loss.item() == pytest.approx(13 / 3, rel=1e-6)
    l1 = denoiser.loss(x0, mask, t=torch.tensor([3, 7]), loss_type="l1")
    assert l1.item() == pytest.approx((2 + (1 + 2 + 3) / 3) / 2, rel=1e-6)


def test_examples_without_latent_frames_do_not_count(data):
    x0, _ = data
    observed = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    mask = FrameMask.from_observed(observed)
    offsets = torch.tensor([[9.0, 9.0, 2.0, 9.0], [9.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    loss = Denoiser(offsets_network(x0, offsets), DiscreteSchedule.linear(1000), "x0").loss(
        x0, mask, t=torch.tensor([3, 7, 9])
    )
    assert loss.item() == pytest.approx(13 / 3, rel=1e-6)


def test_padding_frames_do_not_count_towards_normalisation(data):
    x0, _ = data
    x0 = x0[:1]
    mask = FrameMask(
        torch.tensor([[True, False, False, False]]),
        torch.tensor([[False, True, False, False]]),  # slots 2 and 3 are padding
        default_frame_indices(1, 4),
    )
    offsets = torch.tensor([[7.0, 2.0, 7.0, 7.0]])
    denoiser = Denoiser(offsets_network(x0, offsets), DiscreteSchedule.linear(1000), "x0")
    loss = denoiser.loss(x0, mask, t=torch.tensor([0]))
    assert loss.item() == pytest.approx(4.0, rel=1e-6)


def test_loss_is_zero_when_nothing_is_latent(data):
    x0, noise = data
    mask = FrameMask.from_observed(torch.ones(3, 4, dtype=torch.bool))
    loss = Denoiser(Recorder(lambda z: z + 5), DiscreteSchedule.linear(1000), "eps").loss(
        x0, mask, t=torch.tensor([1, 2, 3]), noise=noise
    )
    assert loss.item() == 0.0


# ----------------------------------------------------------------------------- (e) targets and loss types


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("loss_type", ["mse", "l1"])
def test_loss_regresses_on_the_parameterization_target(data, prediction, loss_type):
    x0, noise = data
    schedule, t = CosineLogSNRSchedule(), torch.tensor([0.2, 0.5, 0.8])
    mask = make_mask()
    target = target_for(prediction, x0, noise, schedule, t)
    loss = Denoiser(Recorder(), schedule, prediction).loss(x0, mask, t=t, noise=noise, loss_type=loss_type)
    error = target.abs() if loss_type == "l1" else target**2
    per_example = []
    for b in range(3):
        per_example.append(error[b][mask.latent[b]].mean())
    expected = torch.stack(per_example).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_l1_and_mse_differ():
    x0 = torch.zeros(1, 2, 1, 1, 2)
    mask = FrameMask.from_observed(torch.tensor([[True, False]]))
    # x0-prediction with pixel errors 1 and 3 on the latent frame: mse 5, l1 2.
    net = Recorder(lambda z: torch.tensor([0.0, 0.0, 1.0, 3.0]).reshape(1, 2, 1, 1, 2))
    denoiser = Denoiser(net, DiscreteSchedule.linear(1000), "x0")
    assert denoiser.loss(x0, mask, t=torch.tensor([0]), loss_type="mse").item() == pytest.approx(5.0)
    assert denoiser.loss(x0, mask, t=torch.tensor([0]), loss_type="l1").item() == pytest.approx(2.0)


# ----------------------------------------------------------------------------- the denoiser itself


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_denoiser_turns_the_target_into_x0(data, prediction):
    x0, noise = data
    schedule, t = DiscreteSchedule.linear(1000), torch.tensor([10, 400, 900])
    alpha, sigma = coefficients(schedule, t, x0)
    z = alpha * x0 + sigma * noise
    target = target_for(prediction, x0, noise, schedule, t)
    x0_hat = Denoiser(Recorder(lambda _: target), schedule, prediction)(z, t, make_mask())
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-3)


def test_denoiser_clips_unless_told_not_to():
    z = torch.zeros(1, 2, 1, 1, 1)
    mask = FrameMask.from_observed(torch.tensor([[False, False]]))
    net = Recorder(lambda z: torch.full_like(z, 3.0))
    schedule, t = DiscreteSchedule.linear(1000), torch.tensor([0])
    assert Denoiser(net, schedule, "x0")(z, t, mask).max().item() == 1.0
    assert Denoiser(net, schedule, "x0", clip_denoised=False)(z, t, mask).max().item() == 3.0


def test_denoiser_rejects_unknown_prediction():
    with pytest.raises(ValueError, match="prediction"):
        Denoiser(Recorder(), DiscreteSchedule.linear(1000), "score")


def test_released_fdm_loss_counts_padding_and_averages_over_all_slots(data):
    """improved-diffusion's ``mean_flat(err, mask=1 - obs)``: the padding slot is in the loss, and each example's
    sum is divided by every slot (T = 4), not by the slots counted."""
    x0, _ = data
    x0 = x0[:2]
    mask = FrameMask(
        torch.tensor([[True, False, False, False], [True, True, False, False]]),
        torch.tensor([[False, True, False, False], [False, False, True, True]]),  # example 0: slots 2, 3 padding
        default_frame_indices(2, 4),
    )
    offsets = torch.tensor([[7.0, 2.0, 1.0, 3.0], [7.0, 7.0, 1.0, 1.0]])
    denoiser = Denoiser(offsets_network(x0, offsets), DiscreteSchedule.linear(1000), "x0")
    loss = denoiser.loss(x0, mask, t=torch.tensor([0, 0]), loss_frames=~mask.observed, average_over_slots=True)
    assert loss.item() == pytest.approx(((4 + 1 + 9) / 4 + (1 + 1) / 4) / 2, rel=1e-6)
    ours = denoiser.loss(x0, mask, t=torch.tensor([0, 0]))
    assert ours.item() == pytest.approx((4 + (1 + 1) / 2) / 2, rel=1e-6)
