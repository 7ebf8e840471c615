"""Every method samples with every sampler chosen from the command line (``--model.init_args.sampling.sampler``),
its given frames kept exact: RaMViD's one pass, FDM's stage-by-stage rollout, RVD's per-frame residual rollout and
VDM's reconstruction-guided denoiser all go through the one masked-denoiser interface."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from tests.tiny_run import TINY, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.diffusion import task_mask
from video_diffusion_lab.diffusion.samplers import SAMPLERS

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("method", sorted(TINY))
def test_every_method_samples_with_every_sampler_from_the_cli(method: str, sampler: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cli = vdiff.run(
        [
            "--config",
            str(tiny_config(tmp_path, method=method)),
            "--model.init_args.sampling.sampler",
            sampler,
            "--model.init_args.sampling.steps",
            "3",
        ],
        subcommand=False,
    )
    module = cli.model
    assert module.sampling.sampler == sampler and module.sampling.steps == 3
    video = default_collate([cli.datamodule.dataset("test")[i] for i in range(2)])["video"]
    if video.dtype == torch.uint8:  # FDM's data module keeps uint8 frames; the module works in [-1, 1]
        video = video.float() / 127.5 - 1
    num_given = module.task.num_given
    mask = task_mask("prediction", video.shape[0], video.shape[1], num_given)
    out = module.sample(video, mask, generator=torch.Generator().manual_seed(0))
    assert out.shape == video.shape and torch.isfinite(out).all()
    assert torch.equal(out[:, :num_given], video[:, :num_given]), "the given frames must stay exact"
    assert not torch.equal(out[:, num_given:], video[:, num_given:])
