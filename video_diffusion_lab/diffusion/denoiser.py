"""The denoiser: one interface over any video network, whatever it predicts.

A network is called as ``network(z, time, mask, **cond)`` with z of shape (B, T, C, H, W), one time per example and the
``FrameMask``; it returns a tensor of z's shape in its own parameterization (eps, x0 or v). ``Denoiser`` hides that
parameterization (k-diffusion's model wrapper): samplers only ever see x0_hat = D(z, t, mask), and the training loss
is written once here for every method.

``MaskedDenoiser`` binds the given frames, the frame mask and the conditioning to a denoiser (or any guided wrapper
of one), so that a sampler sees one function of (z, t) and the noise levels of the schedule, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.parameterization import Prediction, check_prediction, training_target, x0_from_output
from video_diffusion_lab.diffusion.schedules import NoiseSchedule, coefficient_dtype

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
        """The network's raw output, in z's precision (or the output's, if higher).

        Under mixed precision (``torch.autocast``: Lightning's ``bf16-mixed`` / ``16-mixed``) the network returns a
        half-precision tensor; it is cast back here, so that everything around the network (the loss and its
        reduction, the parameterization conversions, every sampler's and guidance wrapper's arithmetic) runs on
        float32 z, float32 schedule coefficients and a float32 output.
        """
        # The network sees its time in float32 (float64 only for a float64 z), whatever dtype the time grid has.
        time = self.schedule.network_time(t).to(coefficient_dtype(z))
        output = self.network(z, time, mask, **cond)
        return output.to(torch.promote_types(output.dtype, z.dtype))

    def __call__(self, z: Tensor, t: Tensor, mask: FrameMask, **cond) -> Tensor:
        alpha, sigma = (per_example(c, z).to(z.dtype) for c in self.schedule.alpha_sigma(t))
        x0 = x0_from_output(self.network_output(z, t, mask, **cond), z, alpha, sigma, self.prediction)
        return x0.clamp(-1, 1) if self.clip_denoised else x0

    def loss(
        self,
        x0: Tensor,
        mask: FrameMask,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        loss_type: LossType = "mse",
        *,
        loss_frames: Tensor | None = None,
        average_over_slots: bool = False,
        **cond,
    ) -> Tensor:
        """The denoising loss on latent frames only.

        Draw t and eps, form z_t = alpha_t x0 + sigma_t eps where frames are not observed (observed frames stay
        clean), and regress the network output on its target over ``loss_frames`` (B, T) (default: the latent
        frames). Each example's error is averaged over its loss frames (padding and observed frames count for
        nothing), then over the examples that have any; with ``average_over_slots`` it is divided by all T slots
        instead (improved-diffusion's ``mean_flat`` with a mask, as FDM's released trainer does). Under mixed
        precision only the network runs in half precision: z, the target, the error and its reduction are float32
        (``network_output`` casts the output back).
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
        counted = (mask.latent if loss_frames is None else loss_frames).to(per_frame.device, per_frame.dtype)
        frames = counted.sum(dim=1)
        if average_over_slots:
            return ((per_frame * counted).sum(dim=1) / per_frame.shape[1]).mean()
        per_video = (per_frame * counted).sum(dim=1) / frames.clamp(min=1)
        return per_video.sum() / (frames > 0).sum().clamp(min=1)


class MaskedDenoiser:
    """x0_hat = D(z, t) for one batch of clips: the given frames, the mask and the conditioning bound.

    Before every call the observed slots of z are set to the given frames (what a guided wrapper or a network with
    frame conditioning expects), and the estimate returned holds the given frames exactly, so a sampler that ends on
    the denoised estimate returns them bit for bit. ``t`` is one time (a 0-d tensor of the grid) for the whole batch.
    The noise levels a sampler needs come from here too, as Python floats computed in float64: samplers never ask
    which schedule or parameterization they run on. ``calls`` counts the denoiser calls made so far.
    """

    def __init__(
        self, denoiser: Callable[..., Tensor], given: Tensor, mask: FrameMask, extra_args: dict[str, Any] | None = None
    ):
        if given.shape[:2] != mask.shape:
            raise ValueError(f"mask: a FrameMask of shape {tuple(mask.shape)} does not fit clips {tuple(given.shape)}")
        self.denoiser, self.given, self.mask = denoiser, given, mask.to(given.device)
        self.extra_args = extra_args or {}
        self.schedule: NoiseSchedule = denoiser.schedule
        self.calls = 0

    def __call__(self, z: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        z = self.mask.keep_observed(z, self.given)
        time = torch.as_tensor(t).to(z.device).reshape(()).expand(z.shape[0])
        return self.mask.keep_observed(self.denoiser(z, time, self.mask, **self.extra_args), self.given)

    def alpha_sigma(self, t: Tensor) -> tuple[float, float]:
        alpha, sigma = self.schedule.alpha_sigma(torch.as_tensor(t, dtype=torch.float64).reshape(1))
        return alpha.item(), sigma.item()

    def half_log_snr(self, t: Tensor) -> float:
        """lambda = log(alpha_t / sigma_t), DPM-Solver's time variable (+inf at the clean state)."""
        alpha, sigma = self.alpha_sigma(t)
        return math.inf if sigma == 0 else math.log(alpha) - math.log(sigma)

    def time_at(self, half_log_snr: float) -> Tensor:
        """The time (float64, 0-d) whose log(alpha / sigma) is ``half_log_snr``."""
        return self.schedule.time_from_log_snr(torch.tensor([2 * half_log_snr], dtype=torch.float64))[0]
