"""The denoiser: one interface over any video network, whatever it predicts.

A network is called as ``network(z, time, mask, **cond)`` with z of shape (B, T, C, H, W), one time per example and the
``FrameMask``; it returns a tensor of z's shape in its own parameterization (eps, x0 or v). ``Denoiser`` hides that
parameterization (k-diffusion's model wrapper): samplers only ever see x0_hat = D(z, t, mask), and the training loss
is written once here for every method.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from diffusion.masks import FrameMask
from diffusion.parameterization import Prediction, check_prediction, training_target, x0_from_output
from diffusion.schedules import NoiseSchedule

LossType = Literal["mse", "l1"]
VideoNetwork = Callable[..., Tensor]


def per_example(values: Tensor, like: Tensor) -> Tensor:
    """Reshape (B,) values to broadcast against a (B, ...) tensor."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


class Denoiser:
    """x0_hat = D(z_t, t, mask): the network's output turned into a clean-video estimate.

    Observed frames enter the network exactly as they are in z (samplers put the given frames there); how a method
    treats them (clean input, replacement, reconstruction guidance) is the business of the method's network or of a
    guided denoiser wrapping this one.
    """

    def __init__(
        self,
        network: VideoNetwork,
        schedule: NoiseSchedule,
        prediction: Prediction = "eps",
        clip_denoised: bool = True,
    ):
        check_prediction(prediction)
        self.network = network
        self.schedule = schedule
        self.prediction = prediction
        self.clip_denoised = clip_denoised

    def network_output(self, z: Tensor, t: Tensor, mask: FrameMask, **cond) -> Tensor:
        return self.network(z, self.schedule.network_time(t), mask, **cond)

    def __call__(self, z: Tensor, t: Tensor, mask: FrameMask, **cond) -> Tensor:
        alpha, sigma = (per_example(c, z) for c in self.schedule.alpha_sigma(t))
        x0 = x0_from_output(self.network_output(z, t, mask, **cond), z, alpha, sigma, self.prediction)
        return x0.clamp(-1, 1) if self.clip_denoised else x0

    def loss(
        self,
        x0: Tensor,
        mask: FrameMask,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        loss_type: LossType = "mse",
        **cond,
    ) -> Tensor:
        """The denoising loss on latent frames only.

        Draw t and eps, form z_t = alpha_t x0 + sigma_t eps on latent frames while observed frames stay clean, and
        regress the network output on its target. Each example's error is averaged over its latent frames (padding and
        observed frames count for nothing), then over the examples that have latent frames.
        """
        batch = x0.shape[0]
        t = self.schedule.sample_training_times(batch, x0.device) if t is None else t
        noise = torch.randn_like(x0) if noise is None else noise
        alpha, sigma = (per_example(c, x0) for c in self.schedule.alpha_sigma(t))
        z = mask.keep_observed(alpha * x0 + sigma * noise, x0)
        output = self.network_output(z, t, mask, **cond)
        target = training_target(x0, noise, alpha, sigma, self.prediction)
        error = (output - target).abs() if loss_type == "l1" else (output - target) ** 2
        per_frame = error.flatten(2).mean(dim=2)  # (B, T)
        latent = mask.latent.to(per_frame.dtype)
        frames = latent.sum(dim=1)
        per_video = (per_frame * latent).sum(dim=1) / frames.clamp(min=1)
        return per_video.sum() / (frames > 0).sum().clamp(min=1)
