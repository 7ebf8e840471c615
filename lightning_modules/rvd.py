"""RVD: Diffusion Probabilistic Modeling for Video Generation (Yang, Srivastava, Mandt 2022).

A deterministic next-frame predictor mu_t = f(x_{<t}) (a ConvGRU U-Net) is corrected by a diffusion model of the
residual y_t = (x_t - mu_t) / sigma, whose denoiser is conditioned on the context c_t = g(x_{<t}) of a second ConvGRU
network. x_t = mu_t + sigma y_t.

Training (the released code's algorithm): both RNNs start from a reset state for every video and are fed its
ground-truth frames in order (teacher forcing); the first ``train_warmup`` frames (default ``num_given``) only warm
them up. For the other
frames, y_t is noised with one diffusion time per video shared by all its frames and the denoiser regresses epsilon
under an L1 loss, through the core's ``Denoiser.loss`` with the warm-up frames marked observed (outside the loss).
The loss trains all three networks end to end. Cosine schedule with 1600 steps.

Sampling is an autoregressive rollout: after the given frames, for each new frame the RNNs advance on the previous
frame, mu_t is predicted, a residual is sampled with the core's samplers on a one-frame clip (any sampler, any number
of steps; DDIM with 50 by default, where the paper runs the full 1600-step chain) and x_t = clamp(mu_t + sigma y_t)
is fed back. Only prediction from the first frames is possible: any other mask is an error naming ``task``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm.auto import trange

from diffusion import Denoiser, FrameMask, observed_for_task, sample
from diffusion.schedules import NoiseSchedule
from lightning_modules.video_diffusion import VideoDiffusionModule
from metrics.protocol import EvaluationProtocol
from networks.rvd import RVDNetwork


class ResidualDenoiser(Denoiser):
    """The core's denoiser for residuals: x0_hat = y0_hat is clipped to [-clip, clip] rather than to the data range
    (y = (x - mu) / sigma lies in [-2 / sigma, 2 / sigma]; the released code clips to [-2, 2])."""

    def __init__(self, network: Any, schedule: NoiseSchedule, prediction: str, clip: float):
        super().__init__(network, schedule, prediction, clip_denoised=False)
        self.clip = clip

    def __call__(self, z: Tensor, t: Tensor, mask: FrameMask, **cond: Any) -> Tensor:
        return super().__call__(z, t, mask, **cond).clamp(-self.clip, self.clip)


def prefix_length(mask: FrameMask) -> int:
    """k when every example's mask gives its first k >= 1 frames and generates all the others; else a ValueError."""
    observed, latent = mask.observed.cpu(), mask.latent.cpu()
    counts = observed.sum(dim=1)
    k = int(counts[0]) if counts.numel() else 0
    prefix = torch.arange(observed.shape[1]) < k
    if k < 1 or not (observed == prefix).all() or not (latent == ~prefix).all():
        raise ValueError(
            "task: RVD generates frames only by rolling forward from the first frames of a video (task='prediction' "
            "with num_given >= 1): the frame mask must give the same first k >= 1 frames of every clip and generate "
            f"all the rest; got observed={observed.int().tolist()}, latent={latent.int().tolist()}"
        )
    return k


class RVD(VideoDiffusionModule):
    def __init__(
        self,
        # data
        num_frames: int = 20,
        image_size: int = 64,
        channels: int = 3,
        # networks (released code at 64x64: base 48, denoiser/context (1, 2, 4, 8), predictor (1, 2, 2, 4))
        model_channels: int = 48,
        channel_mult: tuple[int, ...] = (1, 2, 4, 8),
        predictor_mult: tuple[int, ...] = (1, 2, 2, 4),
        attention: bool = True,
        # residual y = (x - mu) / sigma; 1.0 = no scaling, as in the released code
        residual_scale: float = 1.0,
        # diffusion
        schedule: str = "cosine",
        diffusion_steps: int = 1600,
        prediction: str = "eps",
        loss_type: str = "l1",
        # sampling and evaluation
        sampler: str = "ddim",
        sampling_steps: int | None = 50,
        eta: float = 0.0,
        task: str = "prediction",
        num_given: int = 4,
        train_warmup: int | None = None,
        predict_length: int | None = None,
        eval_seed: int = 0,
        evaluation: EvaluationProtocol | None = None,
        # optimisation (Adam 5e-5; EMA 0.99 every 5 steps in the released code ~ 0.998 every step)
        lr: float = 5e-5,
        weight_decay: float = 0.0,
        ema_decay: float = 0.998,
    ):
        if task != "prediction":
            raise ValueError(
                f"task: RVD only predicts the next frames from the first ones (task='prediction'); its RNNs cannot "
                f"condition on later frames, so {task!r} is not possible"
            )
        if not 1 <= num_given < num_frames:
            raise ValueError(
                f"num_given: RVD needs 1 <= num_given < num_frames ({num_frames}) given frames, got {num_given}"
            )
        if train_warmup is not None and not 1 <= train_warmup < num_frames:
            raise ValueError(
                f"train_warmup: must be in [1, num_frames) = [1, {num_frames}) or null, got {train_warmup}"
            )
        if residual_scale <= 0:
            raise ValueError(f"residual_scale: must be > 0, got {residual_scale}")
        if loss_type not in ("l1", "mse"):
            raise ValueError(f"loss_type: choose 'l1' (the paper's) or 'mse', got {loss_type!r}")
        network = RVDNetwork(
            image_size=image_size,
            channels=channels,
            model_channels=model_channels,
            channel_mult=channel_mult,
            predictor_mult=predictor_mult,
            attention=attention,
        )
        super().__init__(
            network,
            num_frames=num_frames,
            image_size=image_size,
            channels=channels,
            schedule=schedule,
            diffusion_steps=diffusion_steps,
            prediction=prediction,
            sampler=sampler,
            sampling_steps=sampling_steps,
            eta=eta,
            task=task,
            num_given=num_given,
            predict_length=predict_length,
            ema_decay=ema_decay,
            lr=lr,
            weight_decay=weight_decay,
            eval_seed=eval_seed,
            evaluation=evaluation,
        )
        self.save_hyperparameters()
        self.residual_scale, self.loss_type = residual_scale, loss_type
        # Frames that only warm the RNNs up in training (the released code: 2, while sampling is given 4).
        self.train_warmup = train_warmup or num_given

    # ------------------------------------------------------------------------------------------------ the residual
    def to_residual(self, frames: Tensor, mu: Tensor) -> Tensor:
        """y = (x - mu) / sigma."""
        return (frames - mu) / self.residual_scale

    def from_residual(self, residual: Tensor, mu: Tensor) -> Tensor:
        """x = mu + sigma y (not clamped: the rollout clamps what it feeds back)."""
        return mu + self.residual_scale * residual

    def denoiser(self, use_ema: bool = True) -> Denoiser:
        network = self.ema.module if use_ema else self.network
        return ResidualDenoiser(network, self.schedule, self.prediction, clip=2.0 / self.residual_scale)

    # ------------------------------------------------------------------------------------------------------ training
    def warmup_mask(self, frame_indices: Tensor) -> FrameMask:
        """The first ``train_warmup`` frames are observed (they only warm the RNNs up); the rest are latent."""
        observed = observed_for_task("prediction", frame_indices.shape[1], self.train_warmup).to(frame_indices.device)
        return FrameMask.from_observed(observed.expand_as(frame_indices), frame_indices)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        video = batch["video"]
        mu, context = self.network.teacher_forcing(video)  # slot t: estimates from x_{<t}
        residual = self.to_residual(video, mu)
        mask = self.warmup_mask(batch["frame_indices"])
        # One diffusion time per video (drawn inside the loss), eps target, observed (warm-up) frames excluded.
        return self.denoiser(use_ema=False).loss(residual, mask, loss_type=self.loss_type, context=context)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["video"].shape[0])
        return loss

    # ------------------------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def rollout(
        self,
        given: Tensor,
        num_given: int,
        *,
        use_ema: bool = True,
        generator: torch.Generator | None = None,
        progress: bool = False,
        steps: int | None = None,
        sampler: str | None = None,
        mu_only: bool = False,
    ) -> Tensor:
        """Keep the first ``num_given`` frames of (B, T, C, H, W) ``given`` and generate the others in order.

        ``mu_only`` returns the deterministic predictor alone (x_t = mu_t, no residual), for comparison.
        """
        network = self.ema.module if use_ema else self.network
        denoiser = self.denoiser(use_ema)
        sampler = sampler or self.sampler
        options = self.sampler_options() if sampler == self.sampler else {}
        steps = self.sampling_steps if steps is None else steps
        video = given.clone()
        batch, frames = video.shape[:2]
        one_frame = FrameMask.from_observed(torch.zeros(batch, 1, dtype=torch.bool, device=video.device))
        state = None
        for t in trange(1, frames, disable=not progress, desc="RVD rollout", leave=False):
            mu, context, state = network.observe(video[:, t - 1], state)  # x_{t-1} in, mu_t and c_t out
            if t < num_given:
                continue  # warm-up: the given frame stays exactly as it is
            if mu_only:
                video[:, t] = mu
                continue
            residual = sample(
                denoiser,
                torch.zeros_like(video[:, t : t + 1]),
                one_frame,
                sampler=sampler,
                steps=steps,
                generator=generator,
                extra_args={"context": [c[:, None] for c in context]},
                **options,
            )
            video[:, t] = self.from_residual(residual[:, 0], mu).clamp(-1, 1)
        return video

    def sample(
        self,
        given: Tensor,
        mask: FrameMask,
        *,
        use_ema: bool = True,
        generator: torch.Generator | None = None,
        progress: bool = False,
        **cond: Any,
    ) -> Tensor:
        """The autoregressive rollout; ``mask`` must give the first k >= 1 frames and generate the rest."""
        if cond:
            raise ValueError(f"RVD takes no extra conditioning, got {sorted(cond)}")
        k = prefix_length(mask)
        return self.rollout(given, k, use_ema=use_ema, generator=generator, progress=progress)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Roll each clip forward from its first ``num_given`` frames to ``predict_length`` frames (default: the
        clip's length) in one pass: the RNN state carries over the whole video, with no windows."""
        video = batch["video"]
        length = self.predict_length or video.shape[1]
        long_video = video.new_zeros(video.shape[0], length, *video.shape[2:])
        long_video[:, : self.num_given] = video[:, : self.num_given]
        samples = self.rollout(
            long_video, self.num_given, generator=self.eval_generator(batch, batch_idx), progress=True
        )
        observed = observed_for_task("prediction", length, self.num_given).expand(video.shape[0], length)
        return {"samples": samples, "video": video, "observed": observed.to(video.device), "index": batch.get("index")}
