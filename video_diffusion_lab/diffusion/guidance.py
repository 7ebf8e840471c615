"""Guided denoisers: conditional generation from a model trained without that condition (VDM, Sec. 3.1 and 3.3).

Each wrapper has the ``Denoiser`` call interface ``(z, t, mask, **cond) -> x0_hat`` and a ``schedule``, so
``diffusion.sample`` binds it into a ``MaskedDenoiser`` like a plain ``Denoiser`` and every sampler runs it unchanged.
Wrappers compose (the inner denoiser may itself be a wrapper):

    ReconstructionGuidedDenoiser(ClassifierFreeGuidanceDenoiser(Denoiser(network, schedule, "v"), weight=2), 50)

Notation (Ho et al. 2022): x^a the given (observed) frames, x^b the generated (latent) frames, z_t = alpha_t x +
sigma_t eps. The samplers place the clean given frames in the observed slots of z before each call; the wrappers
below replace them by a noised copy before the network sees them, because the network was trained on noisy frames only.

Every wrapper also has ``raw(z, t, mask, **cond)``: the same estimate without clipping to [-1, 1] (clipping would
zero the gradients of reconstruction guidance where the estimate saturates). ``__call__`` clips iff the innermost
``Denoiser`` has ``clip_denoised``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from video_diffusion_lab.diffusion.denoiser import Denoiser, per_example
from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.noise import NoiseGenerator, randn_like
from video_diffusion_lab.diffusion.parameterization import x0_from_output
from video_diffusion_lab.diffusion.schedules import NoiseSchedule

DenoiserLike = Callable[..., Tensor]


def raw_x0(denoiser: DenoiserLike, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
    """The denoiser's x0 estimate without clipping."""
    if isinstance(denoiser, Denoiser):
        alpha, sigma = (per_example(c, z).to(z.dtype) for c in denoiser.schedule.alpha_sigma(t))
        return x0_from_output(denoiser.network_output(z, t, mask, **cond), z, alpha, sigma, denoiser.prediction)
    if hasattr(denoiser, "raw"):
        return denoiser.raw(z, t, mask, **cond)
    return denoiser(z, t, mask, **cond)


def clips(denoiser: DenoiserLike) -> bool:
    if isinstance(denoiser, Denoiser):
        return denoiser.clip_denoised
    inner = getattr(denoiser, "inner", None)
    return clips(inner) if inner is not None else False


def base_network(denoiser: DenoiserLike) -> Any:
    """The network under any stack of wrappers (None when there is no ``Denoiser`` at the bottom)."""
    if isinstance(denoiser, Denoiser):
        return denoiser.network
    inner = getattr(denoiser, "inner", None)
    return base_network(inner) if inner is not None else None


def check_guidable(denoiser: DenoiserLike, field: str = "conditioning_method") -> None:
    """Guidance assumes a model trained on noisy frames only; a model with frame-conditioning channels expects the
    given frames clean in its extra input and must be sampled directly."""
    if getattr(base_network(denoiser), "frame_conditioning", False):
        raise ValueError(
            f"{field}: replacement / reconstruction guidance needs a model trained without frame conditioning; this "
            "network was trained with frame-conditioning channels (frame_conditioning=true): sample it directly"
        )


def _normal(x: Any) -> Any:
    """A copy usable by autograd when ``x`` was made under torch.inference_mode (Lightning's evaluation loops)."""
    if isinstance(x, Tensor) and x.is_inference():
        return x.clone()
    if isinstance(x, FrameMask):
        return FrameMask(_normal(x.observed), _normal(x.latent), _normal(x.frame_indices))
    return x


class GuidedDenoiser:
    """Shared plumbing: the inner denoiser, its schedule, clipping."""

    def __init__(self, inner: DenoiserLike):
        self.inner = inner
        self.schedule: NoiseSchedule = inner.schedule

    def coefficients(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return tuple(per_example(c, z).to(z.device, z.dtype) for c in self.schedule.alpha_sigma(t))  # type: ignore

    def raw(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
        x0 = self.raw(z, t, mask, **cond)
        return x0.clamp(-1, 1) if clips(self) else x0


class ClassifierFreeGuidanceDenoiser(GuidedDenoiser):
    """Classifier-free guidance (Ho & Salimans): x0 = (1 + w) x0(z | c) - w x0(z | null).

    The combination in eps space, eps = (1 + w) eps_c - w eps_u, gives exactly the same x0 (and v) because the
    conversions are affine in the output with the same z and weights summing to one; ``space`` is therefore only
    recorded. w = 0 returns the conditional model itself (no unconditional pass). The unconditional pass sets
    ``drop_cond`` True for every example (the network's learned null condition).
    """

    def __init__(self, inner: DenoiserLike, weight: float, space: str = "eps"):
        super().__init__(inner)
        if space not in ("eps", "x0"):
            raise ValueError(f"guidance_space: choose 'eps' or 'x0', got {space!r}")
        if weight < 0:
            raise ValueError(f"guidance_weight: must be >= 0, got {weight}")
        self.weight, self.space = weight, space

    def raw(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
        conditional = raw_x0(self.inner, z, t, mask, **cond)
        if self.weight == 0:
            return conditional
        dropped = {**cond, "drop_cond": torch.ones(z.shape[0], dtype=torch.bool, device=z.device)}
        unconditional = raw_x0(self.inner, z, t, mask, **dropped)
        return (1 + self.weight) * conditional - self.weight * unconditional


class ReplacementDenoiser(GuidedDenoiser):
    """The replacement method: the observed slots of z_t hold a fresh noisy copy alpha_t x^a + sigma_t eps of the given
    frames (the samplers put x^a there) before the network call; x0_hat^b then follows the joint model. The noise comes
    from ``generator`` (None, a ``torch.Generator``, or the ``NoiseSource`` of the batch's rows, as the sampler's)."""

    def __init__(self, inner: DenoiserLike, generator: NoiseGenerator = None):
        super().__init__(inner)
        check_guidable(inner)
        self.generator = generator

    def replaced(self, z: Tensor, t: Tensor, mask: FrameMask) -> Tensor:
        alpha, sigma = self.coefficients(t, z)
        noised = alpha * z + sigma * randn_like(z, self.generator)  # z^a = alpha_t x^a + sigma_t eps
        return mask.keep_observed(z, noised)

    def raw(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
        return raw_x0(self.inner, self.replaced(z, t, mask), t, mask, **cond)


class ReconstructionGuidedDenoiser(ReplacementDenoiser):
    """Reconstruction guidance (Ho et al. 2022, Eq. 7), on top of replacement of z^a:

        x~^b = x^b_hat(z_t) - (w_r alpha_t / 2) grad_{z^b} || x^a - x^a_hat(z_t) ||^2

    The gradient is taken by autograd through the network, under ``torch.enable_grad`` (samplers run under no_grad,
    Lightning's evaluation under inference mode). The observed part of the returned estimate is x^a_hat; samplers
    overwrite it with x^a exactly.
    """

    def __init__(self, inner: DenoiserLike, weight: float, generator: NoiseGenerator = None):
        super().__init__(inner, generator)
        if weight < 0:
            raise ValueError(f"reconstruction_weight: must be >= 0, got {weight}")
        self.weight = weight

    def raw(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
        if not mask.observed.any() or self.weight == 0:
            return super().raw(z, t, mask, **cond)
        with torch.inference_mode(False), torch.enable_grad():
            z, t, mask = _normal(z), _normal(t), _normal(mask)
            cond = {k: _normal(v) for k, v in cond.items()}
            given = z
            z_t = self.replaced(z, t, mask).detach().requires_grad_(True)
            x0 = raw_x0(self.inner, z_t, t, mask, **cond)
            observed = FrameMask.per_frame(mask.observed, z_t).to(z_t.dtype)
            error = (((given - x0) * observed) ** 2).sum()  # sum over examples: each example's gradient is its own
            (grad,) = torch.autograd.grad(error, z_t)
        alpha, _ = self.coefficients(t, z_t)
        latent = FrameMask.per_frame(mask.latent, z_t).to(z_t.dtype)
        return (x0 - (self.weight * alpha / 2) * grad * latent).detach()


def downsample_video(video: Tensor, factor: int) -> Tensor:
    """Average pooling of each frame by ``factor`` (B, T, C, H, W) -> (B, T, C, H / factor, W / factor):
    the differentiable operator of spatial guidance."""
    if factor < 1 or video.shape[-1] % factor or video.shape[-2] % factor:
        raise ValueError(f"spatial_factor: {factor} must divide the frame size {tuple(video.shape[-2:])}")
    b = video.shape[0]
    frames = F.avg_pool2d(video.flatten(0, 1), factor)
    return frames.unflatten(0, (b, -1))


class SpatialGuidedDenoiser(GuidedDenoiser):
    """Spatial extension by reconstruction guidance towards a given low-resolution video y:

        x~ = x_hat(z_t) - (w_r alpha_t / 2) grad_z || y - down(x_hat(z_t)) ||^2

    with ``down`` = ``downsample_video`` (average pooling by ``factor``), on the latent slots. y is (B, T, C, h, w)
    with h = H / factor, aligned with z's slots.
    """

    def __init__(self, inner: DenoiserLike, low_res: Tensor, weight: float, factor: int):
        super().__init__(inner)
        if weight < 0:
            raise ValueError(f"reconstruction_weight: must be >= 0, got {weight}")
        self.low_res, self.weight, self.factor = low_res, weight, factor

    def raw(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
        if self.low_res.shape[:3] != z.shape[:3] or self.low_res.shape[-1] * self.factor != z.shape[-1]:
            raise ValueError(
                f"spatial_factor: low-resolution video {tuple(self.low_res.shape)} does not match z {tuple(z.shape)} "
                f"downsampled by {self.factor}"
            )
        with torch.inference_mode(False), torch.enable_grad():
            z, t, mask = _normal(z), _normal(t), _normal(mask)
            cond = {k: _normal(v) for k, v in cond.items()}
            z_t = z.detach().requires_grad_(True)
            x0 = raw_x0(self.inner, z_t, t, mask, **cond)
            error = ((_normal(self.low_res).to(x0) - downsample_video(x0, self.factor)) ** 2).sum()
            (grad,) = torch.autograd.grad(error, z_t)
        alpha, _ = self.coefficients(t, z_t)
        latent = FrameMask.per_frame(mask.latent, z_t).to(z_t.dtype)
        return (x0 - (self.weight * alpha / 2) * grad * latent).detach()
