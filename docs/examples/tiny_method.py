"""A new method on the core in one file: the tutorial's code (docs/tutorial_new_method.md), run by tests/test_docs.py.

``TinyVideoNet`` is the network: a few 3D residual blocks built from the project's named blocks. ``TinyPredictor`` is
the method: it trains the network for exactly the task it is evaluated on (the first ``task.num_given`` frames given,
the others generated), where RaMViD draws a random mask per clip. Everything else (samplers, long-video rollout, EMA,
metrics, the test report, the CLI) comes from ``VideoDiffusionModule``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from video_diffusion_lab.diffusion import FrameMask
from video_diffusion_lab.diffusion.masks import task_mask
from video_diffusion_lab.groups import ClipShape, DiffusionConfig, EMAConfig, RolloutConfig, SamplingConfig, TaskConfig
from video_diffusion_lab.lightning_modules.video_diffusion import VideoDiffusionModule, default_optimizer
from video_diffusion_lab.metrics.protocol import EvaluationProtocol
from video_diffusion_lab.networks.blocks import BlockSequence, OutputHead, ResBlock, TimeEmbedding, UNetContext, conv3d


# --8<-- [start:network]
class TinyVideoNet(nn.Module):
    """``network(z, time, mask)`` on clips z (B, T, C, H, W): the prediction (eps, x0 or v, as the method's
    ``diffusion.prediction`` says) of z's shape.

    The network sees the noisy clip, one channel saying which frames are given (``mask.observed``) and the time, as
    the scale and shift of every residual block; 3x3x3 convolutions mix neighbouring frames.
    """

    def __init__(self, channels: int = 3, width: int = 32, num_blocks: int = 2):
        super().__init__()
        self.time_embedding = TimeEmbedding(width)
        self.input_conv = conv3d(channels + 1, width)
        self.blocks = BlockSequence(*(ResBlock(width, 4 * width, width, conv=conv3d) for _ in range(num_blocks)))
        self.output_head = OutputHead(width, channels, conv=conv3d)

    def forward(self, z: Tensor, time: Tensor, mask: FrameMask) -> Tensor:
        given = mask.observed[:, :, None, None, None].to(z.dtype).expand(-1, -1, 1, *z.shape[-2:])
        x = rearrange(torch.cat([z, given], dim=2), "b t c h w -> b c t h w")
        context = UNetContext(emb=self.time_embedding(time), batch=z.shape[0])
        out = self.output_head(self.blocks(self.input_conv(x), context))
        return rearrange(out, "b c t h w -> b t c h w")


# --8<-- [end:network]


# --8<-- [start:method]
class TinyPredictor(VideoDiffusionModule):
    """Video prediction trained on its own task: the first ``task.num_given`` frames given, the others generated."""

    contiguous_frames_only = True  # 3D convolutions assume evenly spaced frames: only the autoreg rollout

    def __init__(
        self,
        clip: ClipShape = ClipShape(num_frames=8, image_size=16, channels=3),
        diffusion: DiffusionConfig = DiffusionConfig(schedule="cosine", steps=1000, prediction="v"),
        sampling: SamplingConfig = SamplingConfig(sampler="ddim", steps=50),
        task: TaskConfig = TaskConfig(task="prediction", num_given=3),
        rollout: RolloutConfig = RolloutConfig(scheme="autoreg"),
        ema: EMAConfig = EMAConfig(decay=0.995),
        evaluation: EvaluationProtocol | None = None,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        # the method's own fields: the network's size
        width: int = 32,
        num_blocks: int = 2,
    ):
        super().__init__(
            TinyVideoNet(clip.channels, width, num_blocks),
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

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        video = batch["video"]
        mask = task_mask(self.task.task, video.shape[0], video.shape[1], self.task.num_given, batch["frame_indices"])
        return self.denoiser(use_ema=False).loss(video, mask)


# --8<-- [end:method]
