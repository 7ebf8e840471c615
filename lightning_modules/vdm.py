"""VDM: Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet 2022, arXiv 2204.03458).

Training (Sec. 2-3): continuous time t ~ U[0, 1] on the cosine log-SNR schedule clipped to [-20, 20], z_t = alpha_t x
+ sigma_t eps, MSE on v (or eps) over every frame. With ``num_image_frames`` = n > 0 each clip is followed by n
independent image frames (joint image-video training, Sec. 3.2): for each extra slot a random OTHER clip of the same
batch and a random frame of it are drawn; the network receives ``segment_ids`` (clip slots 0, image slot k -> k) and
masks its temporal attention so images stay independent. With ``network.num_classes`` (labels from the batch's
"label") or ``network.cond_dim`` (a precomputed vector per clip) the model is conditional and the condition is dropped
with probability ``cond_drop_prob`` (classifier-free guidance, ``guidance_weight`` at sampling).

Sampling: any sampler of the core (``sampling``; the paper: predictor-corrector with gamma 0 and one Langevin step
of size 0.1). Conditional generation is done by guidance of the unconditional model (Sec. 3.1):
``conditioning_method: replacement`` or ``reconstruction`` (weight ``reconstruction_weight`` = w_r); temporal
extension with any rollout scheme (``task.video_length`` > ``clip.num_frames``); spatial extension
(``spatial_factor``): a video at ``clip.image_size`` guided towards the batch's video at
``clip.image_size / spatial_factor``.

Precomputed condition vectors (``cond_vectors``): a ``torch.save``d float tensor of shape (N, cond_dim) whose row i
is the vector of data set item ``index`` = i, or a dict {"vectors": (M, cond_dim), "index": (M,) long} mapping data
set indices to rows. A batch may instead carry its vectors itself under ``"cond_vector"`` (B, cond_dim).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from video_diffusion_lab.diffusion import FrameMask, RandomFrameMasks
from video_diffusion_lab.diffusion.guidance import (
    ClassifierFreeGuidanceDenoiser,
    ReconstructionGuidedDenoiser,
    ReplacementDenoiser,
    SpatialGuidedDenoiser,
    downsample_video,
)
from video_diffusion_lab.groups import ClipShape, DiffusionConfig, EMAConfig, RolloutConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules.video_diffusion import VideoDiffusionModule, default_optimizer
from video_diffusion_lab.metrics.protocol import EvaluationProtocol
from video_diffusion_lab.networks import VDMUNet, VDMUNetConfig

CONDITIONING_METHODS = ("replacement", "reconstruction", "direct")


def joint_image_video_batch(
    video: Tensor, frame_indices: Tensor, num_images: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Append ``num_images`` independent frames to each clip, each taken from a random other clip of the batch.

    Returns the (B, T + n, C, H, W) video, its (B, T + n) frame indices (an image keeps its source position) and the
    (B, T + n) segment ids: 0 on the clip's slots, k on the k-th image's slot.
    """
    batch, frames = video.shape[:2]
    if num_images == 0:
        return video, frame_indices, torch.zeros_like(frame_indices)
    if batch < 2:
        raise ValueError("num_image_frames: joint training takes frames from OTHER clips of the batch; batch_size >= 2")
    shift = torch.randint(1, batch, (batch, num_images), generator=generator).to(video.device)
    source = (torch.arange(batch, device=video.device)[:, None] + shift) % batch  # never the clip itself
    frame = torch.randint(0, frames, (batch, num_images), generator=generator).to(video.device)
    images = video[source, frame]  # (B, n, C, H, W)
    image_indices = frame_indices[source, frame]
    segments = torch.cat(
        [torch.zeros(batch, frames, dtype=torch.long), torch.arange(1, num_images + 1).expand(batch, -1)], dim=1
    ).to(video.device)
    return torch.cat([video, images], 1), torch.cat([frame_indices, image_indices], 1), segments


def load_condition_vectors(path: str, cond_dim: int) -> Tensor:
    """A (N, cond_dim) table indexed by data set index from ``cond_vectors`` (see the module docstring)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"cond_vectors: no file {path!r}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict):
        vectors, index = data["vectors"].float(), data["index"].long()
        table = torch.full((int(index.max()) + 1, vectors.shape[1]), float("nan"))
        table[index] = vectors
    else:
        table = data.float()
    if table.ndim != 2 or table.shape[1] != cond_dim:
        raise ValueError(
            f"cond_vectors: expected vectors of size cond_dim={cond_dim}, got a table {tuple(table.shape)}"
        )
    return table


class VDM(VideoDiffusionModule):
    contiguous_frames_only = False  # temporal attention with relative positions runs any set of frames

    def __init__(
        self,
        clip: ClipShape = ClipShape(num_frames=16, image_size=64, channels=3),
        network: VDMUNetConfig = VDMUNetConfig(),
        diffusion: DiffusionConfig = DiffusionConfig(schedule="cosine_logsnr", prediction="v"),
        sampling: SamplingConfig = SamplingConfig(sampler="predictor_corrector", steps=256, gamma=0.0),
        task: TaskConfig = TaskConfig(task="prediction", num_given=1),
        rollout: RolloutConfig = RolloutConfig(scheme="autoreg"),
        ema: EMAConfig = EMAConfig(decay=0.999),
        evaluation: EvaluationProtocol | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        # joint image-video training: independent image frames appended to every clip
        num_image_frames: int = 0,
        # condition (network.num_classes / network.cond_dim) and classifier-free guidance
        cond_vectors: str | None = None,
        cond_drop_prob: float = 0.1,
        guidance_weight: float = 0.0,
        # conditional generation from an unconditional model (Sec. 3.1) and spatial extension
        conditioning_method: str = "reconstruction",
        reconstruction_weight: float = 50.0,
        spatial_factor: int | None = None,
    ):
        check_vdm_fields(
            schedule=diffusion.schedule,
            num_image_frames=num_image_frames,
            num_classes=network.num_classes,
            cond_dim=network.cond_dim,
            cond_drop_prob=cond_drop_prob,
            guidance_weight=guidance_weight,
            conditioning_method=conditioning_method,
            frame_conditioning=network.frame_conditioning,
            reconstruction_weight=reconstruction_weight,
            spatial_factor=spatial_factor,
            image_size=clip.image_size,
        )
        super().__init__(
            VDMUNet(network, image_size=clip.image_size, channels=clip.channels),
            clip=clip,
            diffusion=diffusion,
            sampling=sampling,
            task=task,
            rollout=rollout,
            ema=ema,
            evaluation=evaluation,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        self.save_method_hyperparameters()
        self.num_image_frames = num_image_frames
        self.num_classes, self.cond_dim = network.num_classes, network.cond_dim
        self.cond_drop_prob, self.guidance_weight = cond_drop_prob, guidance_weight
        self.conditioning_method, self.reconstruction_weight = conditioning_method, reconstruction_weight
        self.frame_conditioning, self.spatial_factor = network.frame_conditioning, spatial_factor
        table = load_condition_vectors(cond_vectors, self.cond_dim) if cond_vectors and self.cond_dim else None
        self.register_buffer("cond_table", table, persistent=False)
        # A model trained with frame-conditioning channels learns from clean given frames (RaMViD's masks).
        self.training_masks = RandomFrameMasks(p_uncond=0.25) if network.frame_conditioning else None

    # ------------------------------------------------------------------------------------------------- conditioning
    def conditioning(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.num_classes is not None:
            if "label" not in batch:
                raise ValueError("network.num_classes: the model is class-conditional but the batch has no 'label'")
            return {"label": batch["label"].long()}
        if self.cond_dim is not None:
            if "cond_vector" in batch:
                return {"cond_vector": batch["cond_vector"].float()}
            if self.cond_table is None or "index" not in batch:
                raise ValueError("cond_vectors: a vector-conditioned model needs cond_vectors or batch['cond_vector']")
            vectors = self.cond_table[batch["index"].long().to(self.cond_table.device)]
            if torch.isnan(vectors).any():
                raise ValueError(f"cond_vectors: no vector for data set indices {batch['index'].tolist()}")
            return {"cond_vector": vectors}
        return {}

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        batch_size = getattr(datamodule, "batch_size", None)
        if stage == "fit" and self.num_image_frames and batch_size is not None and batch_size < 2:
            raise ValueError(
                f"num_image_frames: joint training draws images from other clips of the batch; data.batch_size must "
                f"be >= 2, got {batch_size}"
            )
        if self.num_classes is not None and getattr(datamodule, "num_classes", self.num_classes) != self.num_classes:
            raise ValueError(
                f"network.num_classes: {self.num_classes} but the data module has {datamodule.num_classes} classes"
            )

    def diagnostic_inputs(self, batch: dict[str, Tensor]) -> tuple[Tensor, FrameMask, dict[str, Any]]:
        """The model is trained on noisy frames only (unless frame-conditioned): score it with nothing observed."""
        video, mask, cond = super().diagnostic_inputs(batch)
        if not self.frame_conditioning:
            mask = FrameMask.from_observed(torch.zeros_like(mask.observed), mask.frame_indices)
        return video, mask, cond

    # ----------------------------------------------------------------------------------------------------- training
    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        video = batch["video"]
        cond = self.conditioning(batch)
        if cond:
            cond["drop_cond"] = torch.rand(video.shape[0], device=video.device) < self.cond_drop_prob
        x, frame_indices, segment_ids = joint_image_video_batch(video, batch["frame_indices"], self.num_image_frames)
        if self.training_masks is not None:
            mask = self.training_masks(frame_indices)
        else:
            mask = FrameMask.from_observed(torch.zeros_like(frame_indices, dtype=torch.bool), frame_indices)
        # MSE on every slot, clip frames and image frames alike.
        return self.denoiser(use_ema=False).loss(x, mask, loss_type="mse", segment_ids=segment_ids, **cond)

    # ----------------------------------------------------------------------------------------------------- sampling
    def sampling_denoiser(
        self,
        mask: FrameMask,
        *,
        use_ema: bool | None = None,
        generator: Any = None,
        guidance: dict[str, Any] | None = None,
        **cond: Any,
    ) -> Callable[..., Tensor]:
        """The base denoiser wrapped for classifier-free guidance, frame guidance and spatial guidance
        (``guidance={"low_res": video}``)."""
        if self.guidance_weight > 0 and not cond:
            raise ValueError("guidance_weight: classifier-free guidance needs a condition (label or vector) per clip")
        denoiser = self.denoiser(use_ema)
        if cond and self.guidance_weight > 0:
            denoiser = ClassifierFreeGuidanceDenoiser(denoiser, self.guidance_weight)
        if mask.observed.any() and self.conditioning_method != "direct":
            if self.conditioning_method == "replacement":
                denoiser = ReplacementDenoiser(denoiser, generator)
            else:
                denoiser = ReconstructionGuidedDenoiser(denoiser, self.reconstruction_weight, generator)
        low_res = (guidance or {}).get("low_res")
        if low_res is not None:
            denoiser = SpatialGuidedDenoiser(denoiser, low_res, self.reconstruction_weight, self.spatial_factor)
        return denoiser

    # ------------------------------------------------------------------------------------------------------ predict
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        if self.spatial_factor:
            return self.spatial_extension(batch, batch_idx)
        return super().predict_step(batch, batch_idx)

    def spatial_extension(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Upsample the batch's video by ``spatial_factor`` with spatial reconstruction guidance.

        A batch at ``image_size`` is first downsampled (its original is the ground truth of the grid); a batch at
        ``image_size / spatial_factor`` is used as the low-resolution input directly.
        """
        video, size = batch["video"], self.clip.image_size
        factor = self.spatial_factor
        if video.shape[-1] == size:
            low_res, truth = downsample_video(video, factor), video
        elif video.shape[-1] * factor == size:
            low_res = video
            truth = low_res.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
        else:
            raise ValueError(
                f"spatial_factor: frames of {video.shape[-1]}px are neither clip.image_size={size} nor "
                f"clip.image_size / spatial_factor = {size // factor}"
            )
        b, t = video.shape[:2]
        mask = FrameMask.from_observed(torch.zeros(b, t, dtype=torch.bool, device=video.device), batch["frame_indices"])
        shape = torch.zeros(b, t, self.clip.channels, size, size, device=video.device)
        samples = self.video_sampler().sample_pass(
            shape,
            mask,
            generator=self.clip_noise(batch),
            progress=self.shows_progress(),
            guidance={"low_res": low_res},
            **self.conditioning(batch),
        )
        return {
            "samples": samples,
            "video": truth,
            "observed": mask.observed,
            "index": batch.get("index"),
            "low_res": low_res,
        }


def check_vdm_fields(
    *,
    schedule: str,
    num_image_frames: int,
    num_classes: int | None,
    cond_dim: int | None,
    cond_drop_prob: float,
    guidance_weight: float,
    conditioning_method: str,
    frame_conditioning: bool,
    reconstruction_weight: float,
    spatial_factor: int | None,
    image_size: int,
) -> None:
    """Stop on a bad VDM config before anything is built, naming the field."""
    if schedule != "cosine_logsnr":
        raise ValueError(f"diffusion.schedule: VDM is a continuous-time model on 'cosine_logsnr', got {schedule!r}")
    if num_image_frames < 0:
        raise ValueError(f"num_image_frames: must be >= 0 (the paper uses 0, 4 or 8), got {num_image_frames}")
    if num_image_frames and (num_classes is not None or cond_dim is not None):
        raise ValueError(
            "num_image_frames: joint image-video training is unconditional here (the condition is one per clip, the "
            "extra images come from other clips); set num_image_frames: 0 with num_classes / cond_dim"
        )
    if num_classes is not None and cond_dim is not None:
        raise ValueError("network.num_classes, network.cond_dim: condition on a class label or on a vector, not both")
    if not 0.0 <= cond_drop_prob <= 1.0:
        raise ValueError(f"cond_drop_prob: must be in [0, 1], got {cond_drop_prob}")
    if guidance_weight < 0:
        raise ValueError(f"guidance_weight: must be >= 0, got {guidance_weight}")
    if guidance_weight > 0 and num_classes is None and cond_dim is None:
        raise ValueError(
            f"guidance_weight: class-conditional (classifier-free guided) sampling with weight {guidance_weight} "
            "needs a "
            "model with classes (num_classes) or condition vectors (cond_dim); this model has neither"
        )
    if conditioning_method not in CONDITIONING_METHODS:
        raise ValueError(f"conditioning_method: choose one of {CONDITIONING_METHODS}, got {conditioning_method!r}")
    if frame_conditioning and conditioning_method != "direct":
        raise ValueError(
            f"conditioning_method: {conditioning_method!r} guidance needs a model trained without frame conditioning; "
            "this model has frame-conditioning channels (frame_conditioning: true): use conditioning_method: direct"
        )
    if conditioning_method == "direct" and not frame_conditioning:
        raise ValueError(
            "conditioning_method: 'direct' feeds clean given frames, which only a model trained with "
            "frame_conditioning: true understands; use 'replacement' or 'reconstruction'"
        )
    if reconstruction_weight < 0:
        raise ValueError(f"reconstruction_weight: must be >= 0, got {reconstruction_weight}")
    if spatial_factor is not None and (spatial_factor < 2 or image_size % spatial_factor):
        raise ValueError(f"spatial_factor: must be >= 2 and divide image_size={image_size}, got {spatial_factor}")
