"""The core's VideoSampler without Lightning: one pass, a long video stage by stage with every scheme, N samples per
clip with per-row noise, the denoiser factory, the errors that name a field, and progress bars. Each result is
compared with the core functions the methods composed by hand before the sampler existed."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from tests.tiny_run import REPO
from video_diffusion_lab.diffusion import (
    SCHEMES,
    Denoiser,
    FrameMask,
    NoiseSource,
    VideoSampler,
    build_schedule,
    build_stages,
    run_stages,
    sample,
    task_mask,
    unguided,
)
from video_diffusion_lab.diffusion.schemes import pixel_embedding
from video_diffusion_lab.groups import RolloutConfig, SamplingConfig
from video_diffusion_lab.networks import FDMUNet, FDMUNetConfig

pytestmark = pytest.mark.usefixtures("single_thread")

PASS = 4  # frames per pass
SAMPLING = SamplingConfig(sampler="ddpm", steps=3, gamma=1.0)


def tiny_denoiser() -> Denoiser:
    """FDM's network (any set of frames, at their indices) with weights moved off their zero initialisation."""
    torch.manual_seed(0)
    config = FDMUNetConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,))
    network = FDMUNet(config, image_size=8, channels=1, max_frames=PASS).eval()
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return Denoiser(network, build_schedule("linear", 50), "eps")


class OneClipAtATime(torch.nn.Module):
    """The network run on one clip at a time: batched convolution kernels differ in the last bit between batch sizes
    (tests/test_noise_source.py), which would hide whether a sample depends on its batch through its noise."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, z: torch.Tensor, time: torch.Tensor, mask: FrameMask, **cond: Any) -> torch.Tensor:
        return torch.cat([self.network(z[i : i + 1], time[i : i + 1], mask[i : i + 1]) for i in range(len(z))])


def video(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, frames, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def core_sample(denoiser: Denoiser, given: torch.Tensor, mask: FrameMask, generator: Any) -> torch.Tensor:
    """One pass as the methods wrote it before the VideoSampler: the core's ``sample`` with the config's fields."""
    return sample(
        denoiser,
        given,
        mask,
        sampler=SAMPLING.sampler,
        steps=SAMPLING.steps,
        grid=SAMPLING.grid,
        generator=generator,
        **SAMPLING.options(),
    )


def test_one_pass_is_the_core_sampler_with_the_sampling_config() -> None:
    denoiser = tiny_denoiser()
    sampler = VideoSampler(unguided(denoiser), SAMPLING, frames_per_pass=PASS)
    given, mask = video(2, PASS), task_mask("infilling", 2, PASS, 2)
    with torch.no_grad():
        out = sampler.sample(given, mask, generator=torch.Generator().manual_seed(5))
        expected = core_sample(denoiser, given, mask, torch.Generator().manual_seed(5))
    assert torch.equal(out, expected)
    assert torch.equal(out[mask.observed], given[mask.observed]), "given frames come back exactly"
    assert not torch.equal(out[mask.latent], given[mask.latent])


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_long_video_runs_the_scheme_stage_by_stage(scheme: str) -> None:
    denoiser = tiny_denoiser()
    rollout = RolloutConfig(scheme=scheme, frames_per_stage=2)
    sampler = VideoSampler(unguided(denoiser), SAMPLING, rollout, frames_per_pass=PASS)
    length, num_given = 11, 3
    given = video(2, length)
    mask = task_mask("prediction", 2, length, num_given)
    seen = []
    with torch.no_grad():
        out = sampler.sample(given, mask, generator=NoiseSource.for_examples([7, 8]))
        long = sampler.sample_long(
            given, num_given, generator=NoiseSource.for_examples([7, 8]), callback=lambda *stage: seen.append(stage)
        )
        # By hand: the scheme's stages through the core's stage runner, one core pass each.
        stages = build_stages(scheme, length, PASS, 2, num_given)
        expected = given.clone()
        expected[:, num_given:] = 0
        noise = NoiseSource.for_examples([7, 8])
        run_stages(
            expected,
            stages,
            lambda g, m: core_sample(denoiser, g, m, noise),
            PASS,
            "cpu",
            known=range(num_given),
            embed=pixel_embedding,
        )
    assert torch.equal(out, expected) and torch.equal(long, expected)
    assert [stage for _, stage, _ in seen] == stages == sampler.stages(length, num_given)
    assert torch.equal(out[:, :num_given], given[:, :num_given])
    assert out[:, num_given:].abs().flatten(2).sum(2).min() > 0, "every frame after the given ones is generated"


def test_many_samples_draw_each_rows_noise_from_its_own_stream() -> None:
    denoiser = tiny_denoiser()
    denoiser.network = OneClipAtATime(denoiser.network)
    sampler = VideoSampler(unguided(denoiser), SAMPLING, RolloutConfig(frames_per_stage=2), frames_per_pass=PASS)
    given, indices, n = video(3, 6), torch.tensor([4, 9, 2]), 2
    mask = task_mask("prediction", 3, 6, 2)
    with torch.no_grad():
        whole = sampler.sample_many(given, mask, n, NoiseSource.for_clips(11, indices, n), batch_size=6)
        chunked = sampler.sample_many(given, mask, n, NoiseSource.for_clips(11, indices, n), batch_size=4)
        # Clip 1 alone, in another batch, draws the same two samples.
        alone = sampler.sample_many(given[1:2], mask[1:2], n, NoiseSource.for_clips(11, indices[1:2], n), batch_size=1)
    assert whole.shape == (n, 3, 6, 1, 8, 8)
    assert torch.equal(chunked, whole), "the samples do not depend on how many rows a pass holds"
    assert torch.equal(alone[:, 0], whole[:, 1]), "nor on the other clips of the batch"
    assert not torch.allclose(whole[0], whole[1]), "the samples of a clip differ"
    assert torch.equal(whole[:, :, :2], given[None, :, :2].expand(n, -1, -1, -1, -1, -1))
    with pytest.raises(ValueError, match="noise"):
        sampler.sample_many(given, mask, n, NoiseSource.for_clips(11, indices, 1), batch_size=6)


def test_the_factory_builds_each_passs_denoiser_from_its_mask_noise_and_conditioning() -> None:
    denoiser = tiny_denoiser()
    calls = []

    def factory(mask: FrameMask, *, generator: Any = None, guidance: dict | None = None, **cond: Any) -> Denoiser:
        calls.append((mask, generator, guidance, cond))
        return denoiser

    sampler = VideoSampler(factory, SAMPLING, RolloutConfig(frames_per_stage=2), frames_per_pass=PASS)
    noise = NoiseSource.for_examples([1, 2])
    with torch.no_grad():
        sampler.sample_pass(video(2, PASS), task_mask("prediction", 2, PASS, 1), generator=noise, guidance={"x": 1})
        sampler.sample(video(2, 8), task_mask("prediction", 2, 8, 2), generator=noise)
    assert calls[0][1] is noise and calls[0][2] == {"x": 1} and calls[0][0].observed[:, 0].all()
    stages = sampler.stages(8, 2)
    assert len(calls) == 1 + len(stages), "one denoiser per pass: each stage of a long video is a pass"
    for (mask, _, _, _), stage in zip(calls[1:], stages, strict=True):
        assert mask.frame_indices[0].tolist() == list(stage.indices)
        assert mask.latent[0].sum() == len(stage.latent)


def test_settings_that_cannot_sample_are_refused_naming_the_field() -> None:
    plain = unguided(tiny_denoiser())
    with pytest.raises(ValueError, match="scheme"):  # 3D convolutions run contiguous windows only
        VideoSampler(
            plain, SAMPLING, RolloutConfig(scheme="hierarchy_2"), frames_per_pass=PASS, contiguous_frames_only=True
        )
    with pytest.raises(ValueError, match="rollout.frames_per_pass"):
        VideoSampler(plain, SAMPLING, RolloutConfig(frames_per_pass=3), frames_per_pass=PASS)
    sampler = VideoSampler(plain, SAMPLING, RolloutConfig(frames_per_stage=2), frames_per_pass=PASS)
    with pytest.raises(ValueError, match="task"):  # a long video needs a prefix mask
        sampler.sample(video(1, 8), task_mask("infilling", 1, 8, 2))
    with pytest.raises(ValueError, match="rollout.frames_per_stage"):
        VideoSampler(plain, SAMPLING, RolloutConfig(frames_per_stage=4), frames_per_pass=PASS).stages(8, 2)
    with pytest.raises(ValueError, match="rollout"):  # no scheme: one pass only
        VideoSampler(plain, SAMPLING, frames_per_pass=PASS).sample(video(1, 8), task_mask("prediction", 1, 8, 2))
    with pytest.raises(ValueError, match="guidance"):
        sampler.sample_pass(video(1, PASS), task_mask("prediction", 1, PASS, 1), guidance={"low_res": None})
    lpips = VideoSampler(
        plain,
        SAMPLING,
        RolloutConfig(scheme="adaptive_autoreg", frames_per_stage=2, adaptive_distance="lpips"),
        frames_per_pass=PASS,
    )
    with pytest.raises(ValueError, match="rollout.adaptive_distance"):
        lpips.sample_long(video(1, 8), 2)


def test_progress_bars_show_the_steps_of_a_pass_and_the_stages_of_a_long_video(capsys: pytest.CaptureFixture) -> None:
    sampler = VideoSampler(unguided(tiny_denoiser()), SAMPLING, RolloutConfig(frames_per_stage=2), frames_per_pass=PASS)
    with torch.no_grad():
        sampler.sample(video(1, PASS), task_mask("prediction", 1, PASS, 2))
        sampler.sample(video(1, 8), task_mask("prediction", 1, 8, 2))
        assert not capsys.readouterr().err, "no bars unless asked for"
        sampler.sample(video(1, PASS), task_mask("prediction", 1, PASS, 2), progress=True)
        assert "DDPM" in capsys.readouterr().err
        sampler.sample(video(1, 8), task_mask("prediction", 1, 8, 2), progress=True)
        assert "autoreg over 8 frames" in capsys.readouterr().err


def test_sampling_a_long_video_needs_no_lightning() -> None:
    """What a notebook does: a network, a Denoiser, a VideoSampler; Lightning is never imported."""
    script = """
import sys
import torch
from video_diffusion_lab.diffusion import Denoiser, NoiseSource, VideoSampler, build_schedule, task_mask, unguided
from video_diffusion_lab.groups import RolloutConfig, SamplingConfig
from video_diffusion_lab.networks import FDMUNet, FDMUNetConfig

config = FDMUNetConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(4,))
denoiser = Denoiser(FDMUNet(config, image_size=8, channels=1, max_frames=4), build_schedule("linear", 50), "eps")
sampler = VideoSampler(unguided(denoiser), SamplingConfig(sampler="ddim", steps=2),
                       RolloutConfig(scheme="hierarchy_2", frames_per_stage=2), frames_per_pass=4)
given = torch.rand(2, 10, 1, 8, 8) * 2 - 1
with torch.no_grad():
    out = sampler.sample(given, task_mask("prediction", 2, 10, 2), generator=NoiseSource.for_clips(0, [0, 1]))
assert out.shape == given.shape and torch.equal(out[:, :2], given[:, :2])
lightning = sorted(name for name in sys.modules if name.split(".")[0] in ("lightning", "pytorch_lightning"))
assert not lightning, lightning
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
