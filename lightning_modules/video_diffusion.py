"""What every method's LightningModule shares: EMA weights, sampling through the core, evaluation and predict.

A method subclasses ``VideoDiffusionModule``, builds its network (a plain ``nn.Module`` from ``networks/``), passes it
to ``__init__`` and writes ``training_step`` as its paper's training algorithm. Sampling, validation and test metrics,
the copy-last-frame baseline, long-video rollout and checkpointed EMA come from here.
"""

from __future__ import annotations

import json
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from diffusion import (
    Denoiser,
    FrameMask,
    autoregressive,
    build_schedule,
    get_sampler,
    observed_for_task,
    run_stages,
    sample,
    task_mask,
)
from diffusion.parameterization import check_prediction
from metrics.protocol import EvaluationProtocol, VideoEvaluation
from metrics.report import run_dir


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


class VideoDiffusionModule(pl.LightningModule):
    # Networks built on 3D convolutions assume evenly spaced, contiguous frames; they refuse other stages.
    contiguous_frames_only: bool = False

    def __init__(
        self,
        network: nn.Module,
        *,
        num_frames: int,
        image_size: int,
        channels: int,
        schedule: str,
        diffusion_steps: int,
        prediction: str,
        sampler: str,
        sampling_steps: int | None,
        eta: float,
        task: str,
        num_given: int,
        predict_length: int | None,
        ema_decay: float,
        lr: float,
        weight_decay: float,
        eval_seed: int,
        evaluation: EvaluationProtocol | None,
    ):
        super().__init__()
        check_prediction(prediction)
        get_sampler(sampler)
        observed_for_task(task, num_frames, num_given)
        if predict_length is not None and predict_length < num_frames:
            raise ValueError(f"predict_length: must be >= num_frames ({num_frames}), got {predict_length}")
        if predict_length is not None and predict_length > num_frames and task != "prediction":
            raise ValueError(f"predict_length: rolling a video forward needs task='prediction', got task={task!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay: must be in [0, 1), got {ema_decay}")
        self.network = network
        self.ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.schedule = build_schedule(schedule, diffusion_steps)
        self.prediction = prediction
        self.num_frames, self.image_size, self.channels = num_frames, image_size, channels
        self.sampler, self.sampling_steps, self.eta = sampler, sampling_steps, eta
        self.task, self.num_given, self.predict_length = task, num_given, predict_length
        self.lr, self.weight_decay, self.eval_seed = lr, weight_decay, eval_seed
        self.evaluation = evaluation or EvaluationProtocol()
        self.val_metrics = frame_metrics("val/")
        self.test_evaluation: VideoEvaluation | None = None

    # ----------------------------------------------------------------------------------------------- the core's view
    def denoiser(self, use_ema: bool = True) -> Denoiser:
        return Denoiser(self.ema.module if use_ema else self.network, self.schedule, self.prediction)

    def sampler_options(self) -> dict[str, Any]:
        return {"eta": self.eta} if self.sampler == "ddim" else {}

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
        """Generate the latent frames of ``mask`` given the observed frames of ``given`` (B, T, C, H, W)."""
        return sample(
            self.denoiser(use_ema),
            given,
            mask,
            sampler=self.sampler,
            steps=self.sampling_steps,
            generator=generator,
            extra_args=cond,
            progress=progress,
            **self.sampler_options(),
        )

    def sample_many(
        self,
        given: Tensor,
        mask: FrameMask,
        num_samples: int,
        *,
        generator: torch.Generator | None = None,
        progress: bool = False,
        **cond: Any,
    ) -> Tensor:
        """``num_samples`` samples per video, (N, B, T, C, H, W), drawn in passes of at most
        ``evaluation.sample_batch_size`` clips."""
        batch = given.shape[0]
        given_n = given.repeat_interleave(num_samples, 0)
        mask_n = mask.repeat(num_samples)
        cond_n = {k: v.repeat_interleave(num_samples, 0) for k, v in cond.items()}
        chunk = self.evaluation.sample_batch_size
        parts = [
            self.sample(
                given_n[i : i + chunk],
                mask_n[i : i + chunk],
                generator=generator,
                progress=progress,
                **{k: v[i : i + chunk] for k, v in cond_n.items()},
            )
            for i in range(0, batch * num_samples, chunk)
        ]
        return torch.cat(parts).reshape(batch, num_samples, *given.shape[1:]).transpose(0, 1)

    def eval_mask(self, batch: dict[str, Tensor]) -> FrameMask:
        video = batch["video"]
        return task_mask(self.task, video.shape[0], video.shape[1], self.num_given, batch["frame_indices"])

    def eval_generator(self, batch: dict[str, Tensor], batch_idx: int) -> torch.Generator:
        """A fixed seed per batch, keyed by the first video's data set index, so reruns give the same numbers."""
        first = int(batch["index"][0]) if "index" in batch else batch_idx
        return torch.Generator(self.device).manual_seed(self.eval_seed * 1_000_003 + first)

    def conditioning(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Extra network inputs taken from the batch (class labels, ...); none by default."""
        return {}

    # ------------------------------------------------------------------------------------------------------ training
    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # The EMA moves with every optimiser step, inside the step, so that a checkpoint written at the end of a
        # batch (callbacks run before the module's batch-end hook) already holds that step's average.
        super().optimizer_step(*args, **kwargs)
        self.ema.update_parameters(self.network)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.network.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def setup(self, stage: str) -> None:
        self.check_data_matches()

    def check_data_matches(self) -> None:
        """Stop before training when the data module yields clips the network was not built for."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for field in ("num_frames", "image_size", "channels"):
            expected, actual = getattr(self, field), getattr(datamodule, field, None)
            if actual is not None and actual != expected:
                raise ValueError(
                    f"{field}: the model is configured with model.{field}={expected} but the data module yields "
                    f"data.{field}={actual}; set both to the same value"
                )
        n_params = sum(p.numel() for p in self.network.parameters())
        rank_zero_info(f"{type(self).__name__} network: {n_params / 1e6:.2f}M parameters")

    # ---------------------------------------------------------------------------------------------------- evaluation
    def _sample_batch(self, batch: dict[str, Tensor], batch_idx: int) -> tuple[Tensor, FrameMask]:
        mask = self.eval_mask(batch)
        samples = self.sample(
            batch["video"], mask, generator=self.eval_generator(batch, batch_idx), **self.conditioning(batch)
        )
        return samples, mask

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        samples, mask = self._sample_batch(batch, batch_idx)
        self.val_metrics.update(latent_frames(samples, mask), latent_frames(batch["video"], mask))
        self.log_dict(self.val_metrics, prog_bar=True, batch_size=batch["video"].shape[0])
        # Returned for callbacks (periodic FVD, video logging) so that nothing is sampled twice.
        return {"samples": samples, "mask": mask}

    def on_test_start(self) -> None:
        # Test clips may be longer than training clips (data.eval_num_frames); FVD's minimum length is checked
        # against the clips actually evaluated.
        datamodule = getattr(self.trainer, "datamodule", None)
        frames = getattr(datamodule, "eval_num_frames", None) or getattr(datamodule, "num_frames", None)
        self.test_evaluation = VideoEvaluation(self.evaluation, frames or self.num_frames).to(self.device)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        video = batch["video"]
        mask = self.eval_mask(batch)
        samples = self.sample_many(
            video,
            mask,
            self.evaluation.num_samples,
            generator=self.eval_generator(batch, batch_idx),
            progress=self.trainer.progress_bar_callback is not None,
            **self.conditioning(batch),
        )
        self.test_evaluation.update(samples, video, mask)
        self._test_videos += video.shape[0]
        return {"samples": samples, "mask": mask}  # for test-time callbacks (e.g. the CARLA position metrics)

    def on_test_epoch_start(self) -> None:
        self._test_videos = 0

    def on_test_epoch_end(self) -> None:
        results = self.test_evaluation.compute()
        videos = int(self.all_gather(torch.tensor(self._test_videos, device=self.device)).sum())
        model, baseline = results["model"], results["copy_last_frame"]
        report = {
            "method": type(self).__name__,
            "task": self.task,
            "num_given": self.num_given,
            "num_frames": self.num_frames,
            "sampler": self.sampler,
            "sampling_steps": self.sampling_steps or self.schedule.default_sampling_steps,
            "eta": self.eta if self.sampler == "ddim" else None,
            "weights": "ema",
            "eval_seed": self.eval_seed,
            "num_videos": videos,
            "metrics_on": "predicted (latent) frames, values scaled to [0, 1]; FVD on whole clips",
            **results,
            "beats_copy_last_frame_psnr": model["psnr_mean"] > baseline["psnr_mean"],
        }
        flat = {f"test/{k}": v for k, v in model.items()}
        flat.update({f"test/copy_last_frame/{k}": v for k, v in baseline.items()})
        self.log_dict(flat, sync_dist=False)
        if self.trainer.is_global_zero:
            out_dir = run_dir(self.trainer)
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / "metrics_test.json"
            path.write_text(json.dumps(report, indent=2) + "\n")
            n = self.evaluation.num_samples
            extra = "".join(f", {k.upper()} {v:.4g}" for k, v in model.items() if k in ("crps", "fvd", "lpips"))
            print(
                f"\nTest on {videos} held-out clips ({self.task}, {self.num_given} given, {n} sample(s) per clip): "
                f"model PSNR {model['psnr_mean']:.2f} dB (best-of-{n} {model['psnr_best']:.2f}) / SSIM "
                f"{model['ssim_mean']:.3f}{extra}; copy-last-frame PSNR {baseline['psnr_mean']:.2f} dB / SSIM "
                f"{baseline['ssim_mean']:.3f}\nMetrics written to {path.resolve()}"
            )
        self.test_evaluation.reset()

    # ------------------------------------------------------------------------------------------------------- predict
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Sample the configured task; with ``predict_length`` > num_frames, roll prediction forward (Autoreg)."""
        video = batch["video"]
        generator = self.eval_generator(batch, batch_idx)
        cond = self.conditioning(batch)
        length = self.predict_length or self.num_frames
        if length == self.num_frames:
            mask = self.eval_mask(batch)
            samples = self.sample(video, mask, generator=generator, progress=True, **cond)
            return {"samples": samples, "video": video, "observed": mask.observed, "index": batch.get("index")}
        long_video = torch.zeros(video.shape[0], length, *video.shape[2:], dtype=video.dtype)
        long_video[:, : self.num_given] = video[:, : self.num_given].cpu()
        stages = autoregressive(length, self.num_frames, self.num_frames - self.num_given, self.num_given)
        samples = run_stages(
            long_video,
            stages,
            lambda given, mask: self.sample(given, mask, generator=generator, **cond),
            frames_per_pass=self.num_frames,
            device=self.device,
            contiguous_only=self.contiguous_frames_only,
        )
        observed = torch.zeros(video.shape[0], length, dtype=torch.bool)
        observed[:, : self.num_given] = True
        return {"samples": samples, "video": video, "observed": observed, "index": batch.get("index")}
