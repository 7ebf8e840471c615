"""Guided denoisers: reconstruction guidance against finite differences, given frames kept exactly, replacement's
noised copy, classifier-free guidance at weight 0 and w, spatial guidance and the frame-conditioning error."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion import CosineLogSNRSchedule, Denoiser, FrameMask, NoiseSource, sample, task_mask
from video_diffusion_lab.diffusion.guidance import (
    ClassifierFreeGuidanceDenoiser,
    ReconstructionGuidedDenoiser,
    ReplacementDenoiser,
    SpatialGuidedDenoiser,
    downsample_video,
    raw_x0,
)
from video_diffusion_lab.networks.vdm_unet import VDMUNet, VDMUNetConfig


def tiny_denoiser(dtype=torch.float32, clip: bool = False, **kwargs) -> Denoiser:
    torch.manual_seed(0)
    config = VDMUNetConfig(
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        attention_head_dim=8,
        dropout=0.0,
        **kwargs,
    )
    net = VDMUNet(config, image_size=8, channels=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return Denoiser(net.eval().to(dtype), CosineLogSNRSchedule(), "v", clip_denoised=clip)


def test_reconstruction_gradient_matches_finite_differences_and_moves_only_latent_frames() -> None:
    denoiser = tiny_denoiser(torch.float64)
    b, t = 2, 4
    mask = task_mask("prediction", b, t, 2)
    given = torch.randn(b, t, 1, 8, 8, dtype=torch.float64)
    z = torch.randn_like(given)
    time = torch.tensor([0.4, 0.7], dtype=torch.float64)
    weight = 3.0
    guided = ReconstructionGuidedDenoiser(denoiser, weight, generator=torch.Generator().manual_seed(1))
    z_in = mask.keep_observed(z, given)  # what a sampler passes: clean given frames in the observed slots
    out = guided(z_in, time, mask)
    # The replaced z_t the wrapper built (same generator draw) and the unguided estimate there.
    replacement = ReplacementDenoiser(denoiser, generator=torch.Generator().manual_seed(1))
    z_t = replacement.replaced(z_in, time, mask)
    plain = raw_x0(denoiser, z_t, time, mask)
    alpha, _ = denoiser.schedule.alpha_sigma(time)
    observed = FrameMask.per_frame(mask.observed, z).double()

    def error(z_: torch.Tensor) -> torch.Tensor:  # per example ||x^a - x^a_hat(z)||^2
        return (((given - raw_x0(denoiser, z_, time, mask)) * observed) ** 2).flatten(1).sum(1)

    # out^b = plain^b - (w alpha / 2) g^b  =>  g^b = 2 (plain^b - out^b) / (w alpha)
    grad = 2 * (plain - out) / (weight * alpha.reshape(-1, 1, 1, 1, 1))
    assert torch.equal(grad[mask.observed], torch.zeros_like(grad[mask.observed]))
    assert grad[mask.latent].abs().max() > 1e-4
    direction = torch.randn_like(z) * FrameMask.per_frame(mask.latent, z).double()
    h = 1e-5
    finite = (error(z_t + h * direction) - error(z_t - h * direction)) / (2 * h)
    analytic = (grad * direction).flatten(1).sum(1)
    torch.testing.assert_close(analytic, finite, rtol=1e-5, atol=1e-8)

    samples = sample(guided, given, mask, sampler="ddpm", steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples[mask.observed], given[mask.observed])


def test_guidance_works_under_inference_mode_and_keeps_given_frames_exact() -> None:
    denoiser = tiny_denoiser(clip=True)
    mask = task_mask("infilling", 2, 5, 2)
    given = torch.rand(2, 5, 1, 8, 8) * 2 - 1
    with torch.inference_mode():
        given_inf = given.clone()
        reconstruction, replacement = ReconstructionGuidedDenoiser(denoiser, 50.0), ReplacementDenoiser(denoiser)
        pairs = [
            (reconstruction, "predictor_corrector"),
            (replacement, "ddpm"),
            (reconstruction, "heun"),
            (replacement, "dpmpp_2m_sde"),
            (reconstruction, "dpmpp_3m"),
        ]
        for guided, sampler in pairs:
            out = sample(guided, given_inf, mask, sampler=sampler, steps=2, generator=torch.Generator().manual_seed(0))
            assert torch.equal(out[mask.observed], given[mask.observed])
            assert out.abs().max() <= 1.0


class RecordingNetwork(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, z, time, mask=None, **cond):
        self.seen.append(z.clone())
        return torch.zeros_like(z)


def test_replacement_feeds_a_noised_copy_of_the_given_frames() -> None:
    net = RecordingNetwork()
    schedule = CosineLogSNRSchedule()
    denoiser = Denoiser(net, schedule, "eps", clip_denoised=False)
    mask = task_mask("prediction", 1, 3, 1)
    given = torch.rand(1, 3, 1, 4, 4)
    z = mask.keep_observed(torch.randn_like(given), given)
    time = torch.tensor([0.3])
    ReplacementDenoiser(denoiser, generator=torch.Generator().manual_seed(5))(z, time, mask)
    alpha, sigma = schedule.alpha_sigma(time)
    eps = torch.randn(given.shape, generator=torch.Generator().manual_seed(5))
    seen = net.seen[0]
    torch.testing.assert_close(seen[:, 0], alpha * given[:, 0] + sigma * eps[:, 0])
    assert torch.equal(seen[:, 1:], z[:, 1:])  # latent slots untouched


def test_replacement_draws_each_rows_noise_from_its_own_stream() -> None:
    net = RecordingNetwork()
    schedule = CosineLogSNRSchedule()
    mask = task_mask("prediction", 2, 3, 1)
    given = torch.rand(2, 3, 1, 4, 4)
    z = mask.keep_observed(torch.randn_like(given), given)
    time = torch.tensor([0.3, 0.6])
    ReplacementDenoiser(Denoiser(net, schedule, "eps"), generator=NoiseSource.for_examples([11, 12]))(z, time, mask)
    alpha, sigma = schedule.alpha_sigma(time)
    for b, seed in enumerate((11, 12)):
        eps = torch.randn(given.shape[1:], generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(net.seen[0][b, 0], alpha[b] * given[b, 0] + sigma[b] * eps[0])


def test_classifier_free_guidance_weight_zero_is_the_conditional_model() -> None:
    denoiser = tiny_denoiser(num_classes=3)
    z, time = torch.randn(2, 3, 1, 8, 8), torch.tensor([0.2, 0.9])
    mask = task_mask("unconditional", 2, 3, 0)
    label = torch.tensor([0, 2])
    with torch.no_grad():
        conditional = denoiser(z, time, mask, label=label)
        unconditional = denoiser(z, time, mask, label=label, drop_cond=torch.ones(2, dtype=torch.bool))
        assert torch.equal(ClassifierFreeGuidanceDenoiser(denoiser, 0.0)(z, time, mask, label=label), conditional)
        guided = ClassifierFreeGuidanceDenoiser(denoiser, 2.0)(z, time, mask, label=label)
        # eps-space combination (1 + w) eps_c - w eps_u gives the same x0 as the x0-space one.
        alpha, sigma = (c.reshape(-1, 1, 1, 1, 1) for c in denoiser.schedule.alpha_sigma(time))
        eps = [
            (z - alpha * raw_x0(denoiser, z, time, mask, label=label, drop_cond=torch.tensor([d, d]))) / sigma
            for d in (False, True)
        ]
        from_eps = (z - sigma * (3.0 * eps[0] - 2.0 * eps[1])) / alpha
    torch.testing.assert_close(guided, 3.0 * conditional - 2.0 * unconditional)
    torch.testing.assert_close(guided, from_eps, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(guided, conditional)


def test_spatial_guidance_gradient_matches_finite_differences() -> None:
    denoiser = tiny_denoiser(torch.float64)
    mask = task_mask("unconditional", 1, 3, 0)
    low_res = torch.rand(1, 3, 1, 4, 4, dtype=torch.float64)
    z, time, weight = torch.randn(1, 3, 1, 8, 8, dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64), 2.0
    out = SpatialGuidedDenoiser(denoiser, low_res, weight, factor=2)(z, time, mask)
    plain = raw_x0(denoiser, z, time, mask)
    alpha, _ = denoiser.schedule.alpha_sigma(time)
    grad = 2 * (plain - out) / (weight * alpha)

    def error(z_):
        return ((low_res - downsample_video(raw_x0(denoiser, z_, time, mask), 2)) ** 2).sum()

    direction, h = torch.randn_like(z), 1e-5
    finite = (error(z + h * direction) - error(z - h * direction)) / (2 * h)
    torch.testing.assert_close((grad * direction).sum(), finite, rtol=1e-5, atol=1e-8)


def test_spatial_guidance_pulls_samples_towards_the_low_resolution_video() -> None:
    denoiser = tiny_denoiser(clip=True)
    mask = task_mask("unconditional", 1, 3, 0)
    low_res = downsample_video(torch.rand(1, 3, 1, 8, 8) * 2 - 1, 2)
    blank = torch.zeros(1, 3, 1, 8, 8)
    kwargs = dict(sampler="ddpm", steps=4, generator=None)
    torch.manual_seed(0)
    free = sample(denoiser, blank, mask, **kwargs)
    torch.manual_seed(0)
    guided = sample(SpatialGuidedDenoiser(denoiser, low_res, 3.0, 2), blank, mask, **kwargs)
    err = [((downsample_video(x, 2) - low_res) ** 2).mean().item() for x in (free, guided)]
    assert err[1] < 0.5 * err[0]


def test_downsample_video_averages_blocks() -> None:
    video = torch.arange(16.0).reshape(1, 1, 1, 4, 4)
    assert downsample_video(video, 2).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    with pytest.raises(ValueError, match="spatial_factor"):
        downsample_video(video, 3)


def test_guidance_refuses_a_model_with_frame_conditioning_channels() -> None:
    denoiser = tiny_denoiser(frame_conditioning=True)
    for wrapper in (ReplacementDenoiser, lambda d: ReconstructionGuidedDenoiser(d, 1.0)):
        with pytest.raises(ValueError, match="conditioning_method"):
            wrapper(ClassifierFreeGuidanceDenoiser(denoiser, 0.0))
