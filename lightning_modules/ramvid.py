"""RaMViD: Diffusion Models for Video Prediction and Infilling (Höppe, Mehrjou, Bauer, Nielsen, Dittadi 2022).

Training (the paper's Algorithm 1): for each clip draw a random mask (nothing given with probability p_uncond,
otherwise r ~ U{1..max_given} frames at random positions), a time t and noise; feed the given frames clean and the
others noised; regress epsilon on the generated frames only. One model then serves prediction, infilling, frame-rate
upsampling and unconditional generation through the frame mask chosen at sampling time.
"""

from __future__ import annotations

from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from video_diffusion_lab.diffusion import RandomFrameMasks
from video_diffusion_lab.groups import ClipShape, DiffusionConfig, EMAConfig, RolloutConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules.video_diffusion import VideoDiffusionModule, default_optimizer
from video_diffusion_lab.metrics.protocol import EvaluationProtocol
from video_diffusion_lab.networks import RaMViDUNet, RaMViDUNetConfig


class RaMViD(VideoDiffusionModule):
    contiguous_frames_only = True  # 3D convolutions over time

    def __init__(
        self,
        clip: ClipShape = ClipShape(num_frames=16, image_size=64, channels=3),
        network: RaMViDUNetConfig = RaMViDUNetConfig(),
        diffusion: DiffusionConfig = DiffusionConfig(schedule="linear", steps=1000, prediction="eps"),
        sampling: SamplingConfig = SamplingConfig(sampler="ddpm", steps=None, gamma=1.0),
        task: TaskConfig = TaskConfig(task="prediction", num_given=5),
        rollout: RolloutConfig = RolloutConfig(scheme="autoreg"),
        ema: EMAConfig = EMAConfig(decay=0.9999),
        evaluation: EvaluationProtocol | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        # the paper's training masks
        p_uncond: float = 0.25,
        max_given: int | None = 4,
    ):
        if max_given is not None and not 1 <= max_given < clip.num_frames:
            raise ValueError(f"max_given: must be in [1, clip.num_frames) = [1, {clip.num_frames}), got {max_given}")
        super().__init__(
            RaMViDUNet(network, image_size=clip.image_size, channels=clip.channels),
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
        self.training_masks = RandomFrameMasks(p_uncond=p_uncond, max_given=max_given)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        mask = self.training_masks(batch["frame_indices"])
        return self.denoiser(use_ema=False).loss(batch["video"], mask)
