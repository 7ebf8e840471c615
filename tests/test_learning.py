"""Every method learns: trained on one fixed batch of clips with its real training loss and configured optimizer
(its embedded config's parameterization, schedule and sampler, a small network on 8x8 clips of 4 frames), each
regenerates that batch's latent frames from its given frames with its default sampler far above copying the last
given frame.

This is the check that would have caught the embedded configs that ran and learned nothing (epsilon prediction at low
signal-to-noise, RVD's residuals): a method whose denoiser cannot fit two clips cannot fit a data set either.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import default_collate

from tests.tiny_run import TINY, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.diffusion import FrameMask, task_mask
from video_diffusion_lab.metrics.baselines import copy_last_observed
from video_diffusion_lab.metrics.frame_quality import frame_psnr, to_unit_range

NUM_GIVEN = 2
# Optimizer steps and learning rate; each step sees the same two clips eight times, at eight noise levels (and masks).
# VDM (v on the continuous cosine log-SNR schedule) is still between 16 and 20 dB after 400 steps and far above
# copy-last from 600 on; 400 passed or failed with the machine's floating-point rounding.
TRAINING = {"ramvid": (300, 2e-3), "fdm": (300, 2e-3), "rvd": (150, 2e-3), "vdm": (700, 4e-3)}


def latent_psnr(frames: torch.Tensor, video: torch.Tensor, mask: FrameMask) -> float:
    pick = lambda x: to_unit_range(x[mask.latent])  # noqa: E731  (the latent frames, K x C x H x W)
    return frame_psnr(pick(frames), pick(video)).mean().item()


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("method", sorted(TRAINING))
def test_trained_on_one_batch_regenerates_it_far_above_copy_last_frame(method: str, tmp_path: Path) -> None:
    steps, lr = TRAINING[method]
    shipped = yaml.safe_load(TINY[method][0].read_text())["model"]["init_args"]
    model = {
        "diffusion": shipped["diffusion"],  # as shipped, not the tiny runs' 100 steps
        "sampling": shipped["sampling"],
        "clip": {"num_frames": 4, "image_size": 8},
        "network": {"model_channels": 16},
        "task": {"num_given": NUM_GIVEN, **({"video_length": 4} if method == "fdm" else {})},
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr}},
    }
    data = {
        "num_frames": 4,
        "train_size": 2,
        "num_objects": 1,
        "size_range": [3.0, 4.0],
        "speed_range": [1.0, 1.5],
        "motion": "bounce",
        "offscreen": 0.0,
    }
    torch.manual_seed(0)
    cli = vdiff.run(["--config", str(tiny_config(tmp_path, model=model, data=data, method=method))], subcommand=False)
    module = cli.model
    clips = [cli.datamodule.dataset("train")[i] for i in range(2)]
    batch = default_collate(clips * 8)
    optimizer = module.configure_optimizers()
    for _ in range(steps):
        loss = module.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.network.parameters(), 1.0)
        optimizer.step()

    video = default_collate(clips)["video"]
    if video.dtype == torch.uint8:  # FDM's data module keeps uint8 frames; the module works in [-1, 1]
        video = video.float() / 127.5 - 1
    mask = task_mask("prediction", video.shape[0], video.shape[1], NUM_GIVEN)
    with torch.no_grad():
        sample = module.sample(video, mask, use_ema=False, generator=torch.Generator().manual_seed(0))
    model_psnr, copy_psnr = (latent_psnr(x, video, mask) for x in (sample, copy_last_observed(video, mask)))
    assert model_psnr > copy_psnr + 5.0, (
        f"{method}: {model_psnr:.1f} dB on the trained clips, copy-last {copy_psnr:.1f} dB"
    )
