"""RVD: Diffusion Probabilistic Modeling for Video Generation (Yang, Srivastava, Mandt 2022).

A deterministic next-frame predictor mu_t = f(x_{<t}) (a ConvGRU U-Net) is corrected by a diffusion model of the
residual y_t = (x_t - mu_t) / sigma, whose denoiser is conditioned on the context c_t = g(x_{<t}) of a second ConvGRU
network. x_t = mu_t + sigma y_t.

Training (the released code's algorithm): both RNNs start from a reset state for every video and are fed its
ground-truth frames in order (teacher forcing); the first ``train_warmup`` frames (default ``task.num_given``) only
warm them up. For the other frames, y_t is noised with one diffusion time per video shared by all its frames and the
denoiser regresses epsilon under an L1 loss, through the core's ``Denoiser.loss`` with the warm-up frames marked
observed (outside the loss).
The loss trains all three networks end to end. Cosine schedule with 1600 steps.

Sampling is an autoregressive rollout (``ResidualRollout``, RVD's ``VideoSampler``): after the given frames, for
each new frame the RNNs advance on the previous frame, mu_t is predicted, a residual is sampled with the core's
samplers on a one-frame clip (any sampler, any number of steps; by default the full 1600-step ancestral chain, as
released) and x_t = clamp(mu_t + sigma y_t) is fed back. Only prediction from the first frames is possible: any other
mask is an error naming ``task``.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from tqdm.auto import trange

from video_diffusion_lab.diffusion import Denoiser, FrameMask, VideoSampler, observed_for_task, unguided
from video_diffusion_lab.diffusion.noise import NoiseGenerator
from video_diffusion_lab.diffusion.schedules import NoiseSchedule
from video_diffusion_lab.diffusion.video_sampler import StageCallback
from video_diffusion_lab.groups import ClipShape, DiffusionConfig, EMAConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules.video_diffusion import VideoDiffusionModule, default_optimizer
from video_diffusion_lab.metrics.protocol import EvaluationProtocol
from video_diffusion_lab.networks import RVDNetwork, RVDNetworkConfig


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


def to_residual(frames: Tensor, mu: Tensor, scale: float) -> Tensor:
    """y = (x - mu) / sigma."""
    return (frames - mu) / scale


def from_residual(residual: Tensor, mu: Tensor, scale: float) -> Tensor:
    """x = mu + sigma y (not clamped: the rollout clamps what it feeds back)."""
    return mu + scale * residual


class ResidualRollout(VideoSampler):
    """RVD's sampler: a video of any length is one pass, the autoregressive rollout of the recurrent networks.

    ``network`` is an ``RVDNetwork`` (its ``observe`` advances both RNNs by one frame), ``denoiser`` the residual
    denoiser over it, ``residual_scale`` sigma of y = (x - mu) / sigma. Only prediction from the first frames is
    possible: ``sample`` refuses any other mask, naming ``task``.
    """

    def __init__(
        self,
        network: RVDNetwork,
        denoiser: Denoiser,
        sampling: SamplingConfig,
        *,
        frames_per_pass: int,
        residual_scale: float,
    ):
        super().__init__(unguided(denoiser), sampling, frames_per_pass=frames_per_pass)
        self.network, self.residual_scale = network, residual_scale

    @torch.no_grad()
    def rollout(
        self,
        given: Tensor,
        num_given: int,
        *,
        generator: NoiseGenerator = None,
        progress: bool = False,
        mu_only: bool = False,
    ) -> Tensor:
        """Keep the first ``num_given`` frames of (B, T, C, H, W) ``given`` and generate the others in order: for
        each new frame the RNNs advance on the previous one, mu_t is predicted, a residual is sampled on a one-frame
        clip and x_t = clamp(mu_t + sigma y_t) is fed back. ``mu_only`` returns the deterministic predictor alone
        (x_t = mu_t, no residual), for comparison."""
        video = given.clone()
        batch, frames = video.shape[:2]
        one_frame = FrameMask.from_observed(torch.zeros(batch, 1, dtype=torch.bool, device=video.device))
        state = None
        for t in trange(1, frames, disable=not progress, desc="RVD rollout", leave=False):
            mu, context, state = self.network.observe(video[:, t - 1], state)  # x_{t-1} in, mu_t and c_t out
            if t < num_given:
                continue  # warm-up: the given frame stays exactly as it is
            if mu_only:
                video[:, t] = mu
                continue
            # One pass of the core's sampler on a one-frame clip (this class's sample_pass is the whole rollout).
            residual = super().sample_pass(
                torch.zeros_like(video[:, t : t + 1]),
                one_frame,
                generator=generator,
                context=[c[:, None] for c in context],
            )
            video[:, t] = from_residual(residual[:, 0], mu, self.residual_scale).clamp(-1, 1)
        return video

    def sample_pass(
        self,
        given: Tensor,
        mask: FrameMask,
        *,
        generator: NoiseGenerator = None,
        progress: bool = False,
        guidance: dict[str, Any] | None = None,
        **cond: Any,
    ) -> Tensor:
        """RVD's one pass, the rollout over the whole clip: ``mask`` must give the first k >= 1 frames of every clip
        and generate the rest."""
        if cond or guidance:
            raise ValueError(f"RVD takes no extra conditioning or guidance, got {sorted({**cond, **(guidance or {})})}")
        return self.rollout(given, prefix_length(mask), generator=generator, progress=progress)

    def sample_long(
        self,
        video: Tensor,
        num_given: int,
        *,
        generator: NoiseGenerator = None,
        progress: bool = False,
        callback: StageCallback | None = None,
        **cond: Any,
    ) -> Tensor:
        """The rollout from the first ``num_given`` frames: the RNN state carries over the whole video, so there are
        no stages (``callback`` is never called)."""
        if cond:
            raise ValueError(f"RVD takes no extra conditioning, got {sorted(cond)}")
        return self.rollout(video, num_given, generator=generator, progress=progress)


class RVD(VideoDiffusionModule):
    def __init__(
        self,
        clip: ClipShape = ClipShape(num_frames=20, image_size=64, channels=3),
        network: RVDNetworkConfig = RVDNetworkConfig(),
        diffusion: DiffusionConfig = DiffusionConfig(schedule="cosine", steps=1600, prediction="eps"),
        sampling: SamplingConfig = SamplingConfig(sampler="ddpm", steps=None),
        task: TaskConfig = TaskConfig(task="prediction", num_given=4),
        ema: EMAConfig = EMAConfig(decay=0.99, every_n_steps=5, start_step=2000, evaluate="raw"),
        evaluation: EvaluationProtocol | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        # residual y = (x - mu) / sigma; 1.0 = no scaling, as in the released code
        residual_scale: float = 1.0,
        loss_type: str = "l1",
        # frames that only warm the RNNs up in training (null = task.num_given)
        train_warmup: int | None = None,
        # weight of an L1 loss of the predictor mu against the next frame, beside the diffusion loss (0 = released)
        predictor_loss_weight: float = 0.0,
    ):
        if task.task != "prediction":
            raise ValueError(
                f"task.task: RVD only predicts the next frames from the first ones ('prediction'); its RNNs cannot "
                f"condition on later frames, so {task.task!r} is not possible"
            )
        # The rollout takes any number of given frames below the video length; only training's warm-up (by default
        # task.num_given) must leave frames of the training clip to learn from.
        length = task.video_length or clip.num_frames
        if not 1 <= task.num_given < length:
            raise ValueError(
                f"task.num_given: RVD needs 1 <= num_given < video_length ({length}), got {task.num_given}"
            )
        if train_warmup is None and task.num_given >= clip.num_frames:
            raise ValueError(
                f"train_warmup: null warms the RNNs up on task.num_given = {task.num_given} frames, which leaves none "
                f"of a {clip.num_frames}-frame training clip (clip.num_frames) to learn from; set train_warmup below "
                f"{clip.num_frames}"
            )
        if train_warmup is not None and not 1 <= train_warmup < clip.num_frames:
            raise ValueError(
                f"train_warmup: must be in [1, clip.num_frames) = [1, {clip.num_frames}) or null, got {train_warmup}"
            )
        if residual_scale <= 0:
            raise ValueError(f"residual_scale: must be > 0, got {residual_scale}")
        if predictor_loss_weight < 0:
            raise ValueError(f"predictor_loss_weight: must be >= 0, got {predictor_loss_weight}")
        if loss_type not in ("l1", "mse"):
            raise ValueError(f"loss_type: choose 'l1' (the paper's) or 'mse', got {loss_type!r}")
        super().__init__(
            RVDNetwork(network, image_size=clip.image_size, channels=clip.channels),
            clip=clip,
            diffusion=diffusion,
            sampling=sampling,
            task=task,
            ema=ema,
            evaluation=evaluation,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        self.save_method_hyperparameters()
        self.residual_scale, self.loss_type, self.predictor_loss_weight = (
            residual_scale,
            loss_type,
            predictor_loss_weight,
        )
        # Frames that only warm the RNNs up in training (the released code: 2, while sampling is given 4).
        self.train_warmup = train_warmup or task.num_given

    @property
    def frames_per_pass(self) -> int:
        """The recurrent networks roll over a video of any length in one pass: no rollout scheme."""
        return self.video_length

    # ------------------------------------------------------------------------------------------------ the residual
    def to_residual(self, frames: Tensor, mu: Tensor) -> Tensor:
        return to_residual(frames, mu, self.residual_scale)

    def from_residual(self, residual: Tensor, mu: Tensor) -> Tensor:
        return from_residual(residual, mu, self.residual_scale)

    def denoiser(self, use_ema: bool | None = None) -> Denoiser:
        network = self.ema.module if self.uses_ema(use_ema) else self.network
        return ResidualDenoiser(network, self.schedule, self.diffusion.prediction, clip=2.0 / self.residual_scale)

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
        # One diffusion time per video (drawn inside the loss), observed (warm-up) frames excluded.
        loss = self.denoiser(use_ema=False).loss(residual, mask, loss_type=self.loss_type, context=context)
        if self.predictor_loss_weight:
            # The released code trains mu only through the diffusion loss; this term asks mu itself to be the next
            # frame (the release's unused ``aux_loss`` flag), on the frames the diffusion loss counts.
            predicted = mask.latent
            loss = loss + self.predictor_loss_weight * (mu[predicted] - video[predicted]).abs().mean()
        return loss

    def diagnostic_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, FrameMask, dict[str, Any]]:
        """The residuals of the ground-truth frames under teacher forcing, with their context."""
        video, mask, _ = super().diagnostic_inputs(batch)
        network = self.ema.module if self.uses_ema(None) else self.network
        with torch.no_grad():
            mu, context = network.teacher_forcing(video)
        return self.to_residual(video, mu), mask, {"context": context}

    # ------------------------------------------------------------------------------------------------------ sampling
    def video_sampler(self, use_ema: bool | None = None) -> ResidualRollout:
        """The rollout over this model's networks (EMA or raw weights as ``ema.evaluate`` says, unless ``use_ema``)."""
        network = self.ema.module if self.uses_ema(use_ema) else self.network
        return ResidualRollout(
            network,
            self.denoiser(use_ema),
            self.sampling,
            frames_per_pass=self.frames_per_pass,
            residual_scale=self.residual_scale,
        )

    def rollout(
        self,
        given: Tensor,
        num_given: int,
        *,
        use_ema: bool | None = None,
        generator: Any = None,
        progress: bool = False,
        mu_only: bool = False,
    ) -> Tensor:
        """``ResidualRollout.rollout`` with this model's weights."""
        sampler = self.video_sampler(use_ema)
        return sampler.rollout(given, num_given, generator=generator, progress=progress, mu_only=mu_only)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Roll each clip forward from its first ``num_given`` frames to ``video_length`` frames in one pass: the RNN
        state carries over the whole video, with no windows."""
        video = batch["video"]
        length, num_given = self.video_length, self.task.num_given
        long_video = video.new_zeros(video.shape[0], length, *video.shape[2:])
        long_video[:, :num_given] = video[:, :num_given]
        samples = self.rollout(long_video, num_given, generator=self.clip_noise(batch), progress=self.shows_progress())
        observed = observed_for_task("prediction", length, num_given).expand(video.shape[0], length)
        return {"samples": samples, "video": video, "observed": observed.to(video.device), "index": batch.get("index")}
