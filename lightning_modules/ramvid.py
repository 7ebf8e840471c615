"""RaMViD: Diffusion Models for Video Prediction and Infilling (Höppe, Mehrjou, Bauer, Nielsen, Dittadi 2022).

Training (the paper's Algorithm 1): for each clip draw a random mask (nothing given with probability p_uncond,
otherwise r ~ U{1..max_given} frames at random positions), a time t and noise; feed the given frames clean and the
others noised; regress epsilon on the generated frames only. One model then serves prediction, infilling, frame-rate
upsampling and unconditional generation through the frame mask chosen at sampling time.
"""

from __future__ import annotations

from torch import Tensor

from diffusion import RandomFrameMasks
from lightning_modules.video_diffusion import VideoDiffusionModule
from metrics.protocol import EvaluationProtocol
from networks import RaMViDUNet


class RaMViD(VideoDiffusionModule):
    contiguous_frames_only = True  # 3D convolutions over time

    def __init__(
        self,
        # data
        num_frames: int = 16,
        image_size: int = 64,
        channels: int = 3,
        # network (improved-diffusion U-Net with 3x3x3 convolutions)
        model_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 2, 3, 4),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (16, 8),
        num_heads: int = 4,
        dropout: float = 0.0,
        # training masks
        p_uncond: float = 0.25,
        max_given: int | None = 4,
        # diffusion
        schedule: str = "linear",
        diffusion_steps: int = 1000,
        prediction: str = "eps",
        # sampling and evaluation
        sampler: str = "ddim",
        sampling_steps: int | None = 50,
        eta: float = 0.0,
        task: str = "prediction",
        num_given: int = 5,
        predict_length: int | None = None,
        eval_seed: int = 0,
        evaluation: EvaluationProtocol | None = None,
        # optimisation
        lr: float = 2e-5,
        weight_decay: float = 0.0,
        ema_decay: float = 0.9999,
    ):
        if max_given is not None and not 1 <= max_given < num_frames:
            raise ValueError(f"max_given: must be in [1, num_frames) = [1, {num_frames}), got {max_given}")
        network = RaMViDUNet(
            image_size=image_size,
            in_channels=channels,
            model_channels=model_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions,
            num_heads=num_heads,
            dropout=dropout,
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
        self.training_masks = RandomFrameMasks(p_uncond=p_uncond, max_given=max_given)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        video = batch["video"]
        mask = self.training_masks(batch["frame_indices"])
        loss = self.denoiser(use_ema=False).loss(video, mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=video.shape[0])
        return loss
