"""Sampling videos with any denoiser: one pass, a long video stage by stage, N samples of every clip.

``VideoSampler`` is what every method's LightningModule samples with, and what a notebook uses without Lightning::

    from video_diffusion_lab.diffusion import Denoiser, NoiseSource, VideoSampler, build_schedule, task_mask, unguided
    from video_diffusion_lab.groups import RolloutConfig, SamplingConfig
    from video_diffusion_lab.networks import RaMViDUNet, RaMViDUNetConfig

    network = RaMViDUNet(RaMViDUNetConfig(), image_size=64, channels=3)  # load trained weights into it
    denoiser = Denoiser(network, build_schedule("linear", 1000), "eps")
    sampler = VideoSampler(unguided(denoiser), SamplingConfig(sampler="ddim", steps=50), RolloutConfig(),
                           frames_per_pass=16)
    noise = NoiseSource.for_clips(seed=0, indices=range(len(given)))
    video = sampler.sample(given, task_mask("prediction", *given.shape[:2], 4), generator=noise)

The contract. Videos are (B, T, C, H, W) in [-1, 1]. A ``FrameMask`` of shape (B, T) says which frames are given
(observed: read from ``given``, returned exactly), which are generated (latent) and which slots are padding (neither:
their values mean nothing). A pass holds at most ``frames_per_pass`` frames. Longer videos are generated with
``rollout.scheme`` from a prefix mask (the first ``num_given`` frames given, all others generated): the video stays on
the CPU and only a stage's frames go to ``device``. Every random draw comes from ``generator`` (None, a
``torch.Generator`` or a ``NoiseSource`` with one stream per row), so with a ``NoiseSource`` a clip's samples do not
depend on how clips are batched.

A pass builds its denoiser from a ``DenoiserFactory`` (the pass's mask, noise and conditioning in, a denoiser out), so
a method can wrap its denoiser per pass (VDM: replacement or reconstruction guidance on the observed frames,
classifier-free guidance, spatial guidance); ``unguided(denoiser)`` is the factory of a denoiser used as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.noise import NoiseGenerator, NoiseSource
from video_diffusion_lab.diffusion.samplers import sample
from video_diffusion_lab.diffusion.schemes import (
    Embedder,
    Stage,
    build_stages,
    check_scheme_arguments,
    check_scheme_supported,
    pixel_embedding,
    run_stages,
)

if TYPE_CHECKING:  # the config groups import the core; the core reads them by duck typing
    from video_diffusion_lab.groups import RolloutConfig, SamplingConfig

StageCallback = Callable[[int, Stage, list[tuple[int, ...]]], None]


class DenoiserFactory(Protocol):
    """The denoiser one pass runs: built for the pass's ``mask``, its noise ``generator``, its ``guidance`` inputs
    (what steers sampling but is not network conditioning, e.g. VDM's low-resolution video) and the network
    conditioning ``cond`` (one row per clip: class labels, condition vectors)."""

    def __call__(
        self,
        mask: FrameMask,
        *,
        generator: NoiseGenerator = None,
        guidance: dict[str, Any] | None = None,
        **cond: Any,
    ) -> Callable[..., Tensor]: ...


def unguided(denoiser: Callable[..., Tensor]) -> DenoiserFactory:
    """The factory that gives every pass ``denoiser`` itself (a ``Denoiser`` or a wrapper of one), unguided."""

    def factory(
        mask: FrameMask, *, generator: NoiseGenerator = None, guidance: dict[str, Any] | None = None, **cond: Any
    ) -> Callable[..., Tensor]:
        if guidance:
            raise ValueError(f"guidance: this sampler's denoiser takes no guidance inputs, got {sorted(guidance)}")
        return denoiser

    return factory


class VideoSampler:
    """One pass, a long video with a rollout scheme, or N samples of every clip, with the settings of ``sampling``.

    Arguments:
        denoiser: the denoiser of each pass (``unguided(denoiser)``, or a method's factory that wraps it).
        sampling: the sampler, its steps, time grid and options (``SamplingConfig``).
        rollout: the long-video scheme (``RolloutConfig``); None samples only videos of at most ``frames_per_pass``.
        frames_per_pass: the most frames one pass holds (a model's ``rollout.pass_frames(clip.num_frames)``).
        contiguous_frames_only: the network assumes evenly spaced, contiguous frames (3D convolutions over time), so
            only schemes whose stages are contiguous windows run.
        device: where the passes of a long video run (one-pass sampling runs where ``given`` is).
        frame_embedder: returns the embedding adaptive schemes measure frame distances with; called when the first
            adaptive stage runs (so LPIPS loads its weights only then). None: the pixel distance.
    """

    def __init__(
        self,
        denoiser: DenoiserFactory,
        sampling: SamplingConfig,
        rollout: RolloutConfig | None = None,
        *,
        frames_per_pass: int,
        contiguous_frames_only: bool = False,
        device: torch.device | str = "cpu",
        frame_embedder: Callable[[], Embedder] | None = None,
    ):
        if frames_per_pass < 1:
            raise ValueError(f"frames_per_pass: must be >= 1, got {frames_per_pass}")
        if rollout is not None:
            check_scheme_supported(rollout.scheme, contiguous_frames_only)
            if rollout.frames_per_pass not in (None, frames_per_pass):
                raise ValueError(
                    f"rollout.frames_per_pass: {rollout.frames_per_pass}, but the sampler runs passes of "
                    f"frames_per_pass={frames_per_pass} frames; give both the same value"
                )
        self.denoiser = denoiser
        self.sampling, self.rollout_config = sampling, rollout
        self.frames_per_pass = frames_per_pass
        self.contiguous_frames_only = contiguous_frames_only
        self.device = torch.device(device)
        self.frame_embedder = frame_embedder

    # ------------------------------------------------------------------------------------------------------ one pass
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
        """One sampling pass: the latent frames of ``mask`` (B, T) given the observed frames of ``given``
        (B, T, C, H, W); returns (B, T, C, H, W) on ``given``'s device with the observed frames exact.
        ``progress`` shows a bar over the sampler's steps."""
        mask = mask.to(given.device)
        return sample(
            self.denoiser(mask, generator=generator, guidance=guidance, **cond),
            given,
            mask,
            sampler=self.sampling.sampler,
            steps=self.sampling.steps,
            grid=self.sampling.grid,
            generator=generator,
            extra_args=cond,
            progress=progress,
            **self.sampling.options(),
        )

    # ---------------------------------------------------------------------------------------------------- any length
    def sample(
        self, given: Tensor, mask: FrameMask, *, generator: NoiseGenerator = None, progress: bool = False, **cond: Any
    ) -> Tensor:
        """The latent frames of ``mask`` (B, T) given the observed frames of ``given`` (B, T, C, H, W).

        At most ``frames_per_pass`` frames take one pass; longer videos are generated stage by stage with the rollout
        scheme, which needs a prefix mask (the first frames given, all others generated)."""
        length = given.shape[1]
        if length <= self.frames_per_pass:
            return self.sample_pass(given, mask, generator=generator, progress=progress, **cond)
        num_given = int(mask.observed[0].sum())
        prefix = torch.arange(length, device=mask.observed.device) < num_given
        if not (mask.observed == prefix).all() or not (mask.latent == ~prefix).all():
            raise ValueError(
                f"task: videos longer than rollout.frames_per_pass={self.frames_per_pass} are generated stage by "
                "stage, which needs the first num_given frames given and all others generated (task: prediction)"
            )
        out = self.sample_long(given, num_given, generator=generator, progress=progress, **cond)
        return out.to(given.device, given.dtype)

    def stages(self, video_length: int, num_given: int) -> list[Stage]:
        """The stages of ``rollout.scheme`` for a video of ``video_length`` frames whose first ``num_given`` are
        given; errors name the rollout field to change."""
        if self.rollout_config is None:
            raise ValueError(
                f"rollout: a video of {video_length} frames is longer than frames_per_pass={self.frames_per_pass} and "
                "this sampler has no rollout scheme"
            )
        stage_frames = self.rollout_config.stage_frames(self.frames_per_pass, num_given)
        try:
            check_scheme_arguments(video_length, self.frames_per_pass, stage_frames, num_given)
        except ValueError as error:
            raise ValueError(f"rollout.{error}") from None
        return build_stages(self.rollout_config.scheme, video_length, self.frames_per_pass, stage_frames, num_given)

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
        """Frames ``num_given``.. of ``video`` (B, T, C, H, W) generated stage by stage with the rollout scheme;
        returns the video in float32 on the CPU (only a stage's frames go to ``device``). ``progress`` shows a bar
        over the stages; ``callback(stage_number, stage, observed_per_video)`` sees what every pass observed."""
        stages = self.stages(video.shape[1], num_given)
        embed = self.embedder() if any(stage.adaptive for stage in stages) else None
        out = video.detach().to("cpu", torch.float32).clone()
        out[:, num_given:] = 0
        description = f"{self.rollout_config.scheme} over {video.shape[1]} frames"
        with tqdm(total=len(stages), desc=description, unit="stage", disable=not progress, leave=False) as bar:

            def one_pass(given: Tensor, mask: FrameMask) -> Tensor:
                return self.sample_pass(given, mask, generator=generator, **cond)

            def after_stage(number: int, stage: Stage, observed: list[tuple[int, ...]]) -> None:
                bar.update()
                if callback is not None:
                    callback(number, stage, observed)

            return run_stages(
                out,
                stages,
                one_pass,
                self.frames_per_pass,
                self.device,
                self.contiguous_frames_only,
                known=range(num_given),
                embed=embed,
                callback=after_stage,
            )

    def embedder(self) -> Embedder:
        """The frame embedding of adaptive schemes."""
        if self.frame_embedder is not None:
            return self.frame_embedder()
        if self.rollout_config is not None and self.rollout_config.adaptive_distance != "pixel":
            raise ValueError(
                f"rollout.adaptive_distance: {self.rollout_config.adaptive_distance!r} needs its embedding: pass "
                "VideoSampler(frame_embedder=...) (e.g. metrics.lpips.lpips_embedding), or use 'pixel'"
            )
        return pixel_embedding

    # --------------------------------------------------------------------------------------------------- N per clip
    def sample_many(
        self,
        given: Tensor,
        mask: FrameMask,
        num_samples: int,
        noise: NoiseSource,
        *,
        batch_size: int,
        progress: bool = False,
        **cond: Any,
    ) -> Tensor:
        """``num_samples`` samples of every clip of ``given`` (B, T, C, H, W): (N, B, T, C, H, W).

        The B * N rows, clip b's samples side by side (``repeat_interleave`` order), are sampled ``batch_size`` rows
        at a time; row b * N + n draws all its noise from ``noise[b * N + n]`` (``NoiseSource.for_clips(seed,
        indices, num_samples)``), so a sample does not depend on ``batch_size`` or on the other clips."""
        batch = given.shape[0]
        rows = batch * num_samples
        if len(noise) != rows:
            raise ValueError(
                f"noise: {num_samples} samples of {batch} clips take {rows} noise streams, the NoiseSource has "
                f"{len(noise)} (NoiseSource.for_clips(seed, indices, num_samples))"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        given_n = given.repeat_interleave(num_samples, 0)
        mask_n = mask.repeat(num_samples)
        cond_n = {k: v.repeat_interleave(num_samples, 0) for k, v in cond.items()}
        parts = [
            self.sample(
                given_n[i : i + batch_size],
                mask_n[i : i + batch_size],
                generator=noise[i : i + batch_size],
                progress=progress,
                **{k: v[i : i + batch_size] for k, v in cond_n.items()},
            )
            for i in range(0, rows, batch_size)
        ]
        return torch.cat(parts).reshape(batch, num_samples, *given.shape[1:]).transpose(0, 1)
