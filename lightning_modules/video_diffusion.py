"""What every method's LightningModule shares: EMA weights, the optimiser, evaluation and predict.

A method subclasses ``VideoDiffusionModule``, builds its network (a plain ``nn.Module`` from ``networks/``), passes it
with the configuration groups (``video_diffusion_lab.groups``) to ``__init__`` and writes ``training_loss`` as its
paper's training algorithm. The checkpointed EMA, the optimiser, validation metrics, test metrics with the
copy-last-frame baseline and per-clip seeded noise come from here; sampling (one pass, or a long video stage by stage
with a rollout scheme) is the core's ``VideoSampler`` over the model's denoiser (``video_sampler``), and the test
report is written by the ``TestReport`` callback.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import SumMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from video_diffusion_lab.diffusion import (
    Denoiser,
    FrameMask,
    VideoSampler,
    build_schedule,
    check_scheme_supported,
    unguided,
)
from video_diffusion_lab.diffusion.masks import task_mask
from video_diffusion_lab.diffusion.noise import NoiseSource
from video_diffusion_lab.diffusion.schemes import Embedder, Stage, pixel_embedding
from video_diffusion_lab.diffusion.video_sampler import StageCallback
from video_diffusion_lab.groups import (
    ClipShape,
    DiffusionConfig,
    EMAConfig,
    RolloutConfig,
    SamplingConfig,
    TaskConfig,
)
from video_diffusion_lab.lightning_modules.ema import EMA
from video_diffusion_lab.metrics.protocol import EvaluationProtocol, VideoEvaluation
from video_diffusion_lab.metrics.sampling_cost import SamplingCost


def frame_metrics(prefix: str) -> MetricCollection:
    """PSNR and SSIM of single frames in [0, 1], averaged over frames."""
    return MetricCollection(
        {
            "psnr": PeakSignalNoiseRatio(data_range=1.0, reduction="elementwise_mean", dim=(1, 2, 3)),
            "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        },
        prefix=prefix,
    )


def latent_frames(video: Tensor, mask: FrameMask) -> Tensor:
    """The generated frames of a (B, T, C, H, W) batch as (N, C, H, W) images in [0, 1]."""
    return ((video[mask.latent] + 1) / 2).clamp(0, 1)


def cut_to_length(batch: dict[str, Any], length: int) -> dict[str, Any]:
    """The batch's per-frame tensors (B, T, ...) cut to their first ``length`` frames."""
    frames = batch["video"].shape[1]
    if frames == length:
        return batch
    return {
        k: v[:, :length] if isinstance(v, Tensor) and v.ndim >= 2 and v.shape[1] == frames else v
        for k, v in batch.items()
    }


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4)


class VideoDiffusionModule(pl.LightningModule):
    # Networks built on 3D convolutions assume evenly spaced, contiguous frames; they refuse other stages.
    contiguous_frames_only: bool = False

    def __init__(
        self,
        network: nn.Module,
        *,
        clip: ClipShape,
        diffusion: DiffusionConfig,
        sampling: SamplingConfig,
        task: TaskConfig,
        rollout: RolloutConfig | None = None,
        ema: EMAConfig,
        evaluation: EvaluationProtocol | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        self.clip, self.diffusion, self.sampling, self.task = clip, diffusion, sampling, task
        self.rollout_config = rollout or RolloutConfig()
        self.ema_config = ema
        self.evaluation = evaluation or EvaluationProtocol()
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.schedule = build_schedule(diffusion.schedule, diffusion.steps)
        if sampling.steps is not None and self.schedule.discrete and sampling.steps > diffusion.steps:
            raise ValueError(f"sampling.steps: at most diffusion.steps={diffusion.steps}, got {sampling.steps}")
        self.check_rollout()
        self.network = network
        self.ema = EMA(network, ema)
        self.val_metrics = frame_metrics("val/")
        # What test_step collects (built by on_test_start); the TestReport callback reports it.
        self.test_evaluation: VideoEvaluation | None = None
        self.test_clips: SumMetric | None = None
        self.sampling_cost: SamplingCost | None = None
        self.checkpoint_info: dict[str, Any] = {}
        self._embedder: Embedder | None = None

    # ------------------------------------------------------------------------------------------------ configuration
    def save_method_hyperparameters(self) -> None:
        """``save_hyperparameters`` of the calling method's ``__init__``. Under LightningCLI they are the parsed config
        (plain values, the optimiser as class_path/init_args); built in Python, the optimiser and scheduler
        callables are left out, so that checkpoints stay loadable with weights_only=True."""
        self.save_hyperparameters(frame=inspect.currentframe().f_back)
        for hparams in (self.hparams, self._hparams_initial):
            for name in ("optimizer", "lr_scheduler"):
                if callable(hparams.get(name)):
                    del hparams[name]

    @property
    def video_length(self) -> int:
        """Frames of the videos that validation, test and predict generate."""
        return self.task.video_length or self.clip.num_frames

    @property
    def frames_per_pass(self) -> int:
        return self.rollout_config.pass_frames(self.clip.num_frames)

    def check_rollout(self) -> None:
        """Stop at construction on task / rollout settings that could only fail after training."""
        self.task.check(self.clip.num_frames)
        check_scheme_supported(self.rollout_config.scheme, self.contiguous_frames_only)
        if self.video_length > self.frames_per_pass:
            self.video_sampler().stages(self.video_length, self.task.num_given)

    # ----------------------------------------------------------------------------------------------- the core's view
    def uses_ema(self, use_ema: bool | None) -> bool:
        return self.ema_config.evaluate == "ema" if use_ema is None else use_ema

    def denoiser(self, use_ema: bool | None = None) -> Denoiser:
        """The denoiser over the EMA (default: as ``ema.evaluate`` says) or the raw weights."""
        network = self.ema.module if self.uses_ema(use_ema) else self.network
        return Denoiser(network, self.schedule, self.diffusion.prediction)

    def sampling_denoiser(
        self,
        mask: FrameMask,
        *,
        use_ema: bool | None = None,
        generator: Any = None,
        guidance: dict[str, Any] | None = None,
        **cond: Any,
    ) -> Callable[..., Tensor]:
        """The denoiser a sampling pass runs for ``mask`` (the ``VideoSampler``'s factory); methods wrap it (VDM:
        guidance, with ``guidance`` inputs such as a low-resolution video that are not network conditioning)."""
        return unguided(self.denoiser(use_ema))(mask, generator=generator, guidance=guidance, **cond)

    def video_sampler(self, use_ema: bool | None = None) -> VideoSampler:
        """The core's sampler over this model's denoiser (EMA or raw weights as ``ema.evaluate`` says, unless
        ``use_ema``), with its sampling and rollout settings; passes of a long video run on the model's device."""
        return VideoSampler(
            partial(self.sampling_denoiser, use_ema=use_ema),
            self.sampling,
            self.rollout_config,
            frames_per_pass=self.frames_per_pass,
            contiguous_frames_only=self.contiguous_frames_only,
            device=self.device,
            frame_embedder=self.frame_embedder,
        )

    def sample(
        self,
        given: Tensor,
        mask: FrameMask,
        *,
        use_ema: bool | None = None,
        generator: Any = None,
        progress: bool = False,
        **cond: Any,
    ) -> Tensor:
        """``VideoSampler.sample`` with this model's weights: the latent frames of ``mask`` given the observed frames
        of ``given`` (B, T, C, H, W), in one pass or, for longer videos, with the rollout scheme."""
        return self.video_sampler(use_ema).sample(given, mask, generator=generator, progress=progress, **cond)

    def sample_long(
        self,
        video: Tensor,
        num_given: int,
        *,
        use_ema: bool | None = None,
        generator: Any = None,
        progress: bool = False,
        callback: StageCallback | None = None,
        **cond: Any,
    ) -> Tensor:
        """``VideoSampler.sample_long`` with this model's weights: frames num_given.. of ``video`` (B, T, C, H, W)
        generated stage by stage with the rollout scheme, the video kept on the CPU."""
        sampler = self.video_sampler(use_ema)
        return sampler.sample_long(video, num_given, generator=generator, progress=progress, callback=callback, **cond)

    def frame_embedder(self) -> Embedder:
        """The frame distance of adaptive schemes (``rollout.adaptive_distance``)."""
        if self._embedder is None:
            if self.rollout_config.adaptive_distance == "pixel":
                self._embedder = pixel_embedding
            else:
                from video_diffusion_lab.metrics.lpips import lpips_embedding

                try:
                    self._embedder = lpips_embedding(
                        self.evaluation.lpips_alexnet_path, self.evaluation.lpips_linear_path
                    )
                except FileNotFoundError as missing:
                    raise FileNotFoundError(
                        f"rollout.adaptive_distance: 'lpips' needs the LPIPS weight files ({missing}); set "
                        "rollout.adaptive_distance: pixel to choose frames by pixel distance instead"
                    ) from missing
        return self._embedder

    def clip_noise(self, batch: dict[str, Tensor], num_samples: int = 1, run: int = 0) -> NoiseSource:
        """Noise streams for the rows of an evaluation batch, one per (clip, sample) in ``repeat_interleave`` order:
        seeded by (sampling.seed + run, the clip's data set index, sample number), so the numbers do not depend on
        batching or on the number of processes, and every run of ``evaluation.runs`` draws other samples. The streams
        live on the CPU, so a GPU run draws the same noise."""
        if "index" not in batch:
            raise KeyError("evaluation needs the data set index of every clip: the batch has no 'index'")
        return NoiseSource.for_clips(self.sampling.seed + run, batch["index"].long(), num_samples)

    def shows_progress(self) -> bool:
        """Sampling shows progress bars on rank 0 when the trainer shows its own (``trainer.enable_progress_bar``)."""
        return (
            self._trainer is not None and self.trainer.progress_bar_callback is not None and self.trainer.is_global_zero
        )

    def eval_mask(self, batch: dict[str, Tensor]) -> FrameMask:
        video = batch["video"]
        return task_mask(self.task.task, video.shape[0], video.shape[1], self.task.num_given, batch["frame_indices"])

    def eval_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The batch cut to ``video_length`` frames; shorter clips cannot be scored."""
        frames = batch["video"].shape[1]
        if frames < self.video_length:
            raise ValueError(
                f"task.video_length: evaluation generates {self.video_length} frames but the data clips have {frames}; "
                "make the data module's evaluation clips at least that long or lower task.video_length"
            )
        return cut_to_length(batch, self.video_length)

    def conditioning(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Extra network inputs taken from the batch (class labels, ...); none by default."""
        return {}

    def diagnostic_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, FrameMask, dict[str, Any]]:
        """What ``metrics.denoising`` scores: one clip of ``clip.num_frames`` frames with the task's given frames
        observed (at most all but one), the target x0 and the network conditioning."""
        batch = cut_to_length(batch, self.clip.num_frames)
        video = batch["video"]
        num_given = min(self.task.num_given, self.clip.num_frames - 1)
        mask = task_mask(self.task.task, video.shape[0], video.shape[1], num_given, batch["frame_indices"])
        return video, mask, self.conditioning(batch)

    # ------------------------------------------------------------------------------------------------------ training
    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The paper's training objective on one batch."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["video"].shape[0])
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # The EMA moves with every optimiser step, inside the step, so that a checkpoint written at the end of a
        # batch (callbacks run before the module's batch-end hook) already holds that step's average.
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self.network)

    def configure_optimizers(self) -> Any:
        """The injected optimiser over the trained network's parameters (the EMA copy is not trained); the
        scheduler, if any, steps every optimiser step."""
        optimizer = self.optimizer_factory(self.network.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        self.check_data_matches()
        n_params = sum(p.numel() for p in self.network.parameters())
        rank_zero_info(f"{type(self).__name__} network: {n_params / 1e6:.2f}M parameters")

    def data_fields_to_match(self) -> tuple[str, ...]:
        return ("num_frames", "image_size", "channels")

    def check_data_matches(self) -> None:
        """Stop before training when the data module yields clips the network was not built for."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for field in self.data_fields_to_match():
            expected, actual = getattr(self.clip, field), getattr(datamodule, field, None)
            if actual is not None and actual != expected:
                raise ValueError(
                    f"clip.{field}: the model is configured with clip.{field}={expected} but the data module yields "
                    f"data.{field}={actual}; set both to the same value"
                )

    # ---------------------------------------------------------------------------------------------------- evaluation
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        batch = self.eval_batch(batch)
        mask = self.eval_mask(batch)
        noise, cond = self.clip_noise(batch), self.conditioning(batch)
        samples = self.video_sampler().sample(
            batch["video"], mask, generator=noise, progress=self.shows_progress(), **cond
        )
        self.val_metrics.update(latent_frames(samples, mask), latent_frames(batch["video"], mask))
        self.log_dict(self.val_metrics, prog_bar=True, batch_size=batch["video"].shape[0])
        # Returned for callbacks (periodic FVD, video logging) so that nothing is sampled twice.
        return {"samples": samples, "mask": mask, "video": batch["video"]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_info = {"global_step": checkpoint.get("global_step"), "epoch": checkpoint.get("epoch")}

    def on_test_start(self) -> None:
        # The settings travel with the FVD's protocol record (sampler, steps, seeds).
        settings = self.report_settings()
        self.test_evaluation = VideoEvaluation(self.evaluation, self.video_length, settings=settings).to(self.device)
        self.test_clips = SumMetric().to(self.device)
        self.sampling_cost = SamplingCost([self.network, self.ema.module])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        """``evaluation.num_samples`` samples of every clip, ``evaluation.runs`` times with other seeds, scored into
        ``test_evaluation``; returns the first run's samples (N, B, T, C, H, W) for test-time callbacks (CARLA)."""
        batch = self.eval_batch(batch)
        video, mask, cond = batch["video"], self.eval_mask(batch), self.conditioning(batch)
        n, runs = self.evaluation.num_samples, self.evaluation.runs
        sampler = self.video_sampler()
        for run in range(runs):
            noise = self.clip_noise(batch, num_samples=n, run=run)
            with self.sampling_cost.measure(num_clips=video.shape[0] * n):
                samples = sampler.sample_many(
                    video,
                    mask,
                    n,
                    noise,
                    batch_size=self.evaluation.sample_batch_size,
                    progress=self.shows_progress(),
                    **cond,
                )
            self.test_evaluation.update(samples, video, mask, run=run)
            if run == 0:
                first_run = samples
        self.test_clips.update(video.shape[0])
        return {"samples": first_run, "mask": mask, "video": video}

    def on_test_end(self) -> None:
        self.sampling_cost.remove()

    def report_settings(self) -> dict[str, Any]:
        """The settings every number of ``metrics_test.json`` was produced with; methods add their own."""
        long_video = self.video_length > self.frames_per_pass
        num_stages = len(self.video_sampler().stages(self.video_length, self.task.num_given)) if long_video else 1
        ckpt_path = self._trainer.ckpt_path if self._trainer is not None else None  # also outside a trainer
        return {
            "method": type(self).__name__,
            "task": self.task.task,
            "num_given": self.task.num_given,
            "video_length": self.video_length,
            "frames_per_pass": self.frames_per_pass,
            "scheme": self.rollout_config.scheme if long_video else None,
            "frames_per_stage": self.rollout_config.stage_frames(self.clip.num_frames, self.task.num_given)
            if long_video
            else None,
            "num_stages": num_stages,
            "sampler": self.sampling.sampler,
            "sampling_steps": self.sampling.steps or self.schedule.default_sampling_steps,
            "grid": self.sampling.grid,
            "sampler_options": self.sampling.options(),
            "weights": self.ema_config.evaluate,
            "eval_seed": self.sampling.seed,
            "checkpoint": str(ckpt_path) if ckpt_path else None,
            "checkpoint_global_step": self.checkpoint_info.get("global_step", 0),
        }

    # ------------------------------------------------------------------------------------------------------- predict
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        """Sample the configured task over ``video_length`` frames; longer than one pass: the rollout scheme from the
        first ``num_given`` frames of each clip (data clips may be shorter: only the given frames are needed)."""
        video = batch["video"]
        length = self.video_length
        sampler, noise, cond = self.video_sampler(), self.clip_noise(batch), self.conditioning(batch)
        progress = self.shows_progress()
        if length <= self.frames_per_pass and video.shape[1] >= length:
            batch = cut_to_length(batch, length)
            mask = self.eval_mask(batch)
            samples = sampler.sample(batch["video"], mask, generator=noise, progress=progress, **cond)
            return {"samples": samples, "video": batch["video"], "observed": mask.observed, "index": batch.get("index")}
        num_given = self.task.num_given
        if video.shape[1] < num_given:
            raise ValueError(f"task.num_given: the data clips have {video.shape[1]} frames, fewer than {num_given}")
        long_video = torch.zeros(video.shape[0], length, *video.shape[2:])
        long_video[:, :num_given] = video[:, :num_given].cpu()
        samples = sampler.sample_long(
            long_video, num_given, generator=noise, progress=progress, callback=self.on_stage, **cond
        )
        observed = torch.zeros(video.shape[0], length, dtype=torch.bool)
        observed[:, :num_given] = True
        return {"samples": samples, "video": video.cpu(), "observed": observed, "index": batch.get("index")}

    def on_stage(self, number: int, stage: Stage, observed: list[tuple[int, ...]]) -> None:
        """Called after every stage of a long video in ``predict`` (FDM draws its scheme from these)."""
