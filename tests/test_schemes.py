"""Long-video schemes: autoregressive stages and the stage runner."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.schemes import (
    CONTIGUOUS_SCHEMES,
    SCHEMES,
    Stage,
    autoregressive,
    check_scheme_arguments,
    get_scheme,
    run_stages,
)

ARGUMENTS = [
    # video_length, frames_per_pass, frames_per_stage, num_given
    (10, 4, 2, 3),
    (10, 4, 3, 1),
    (16, 8, 4, 2),
    (9, 5, 1, 4),
    (7, 3, 2, 0),
    (5, 8, 7, 4),
    (30, 16, 8, 5),
]


@pytest.mark.parametrize("video_length,frames_per_pass,frames_per_stage,num_given", ARGUMENTS)
def test_autoregressive_covers_every_frame_once(video_length, frames_per_pass, frames_per_stage, num_given):
    stages = autoregressive(video_length, frames_per_pass, frames_per_stage, num_given)
    generated = [i for stage in stages for i in stage.latent]
    assert sorted(generated) == list(range(num_given, video_length))
    assert len(generated) == len(set(generated))


@pytest.mark.parametrize("video_length,frames_per_pass,frames_per_stage,num_given", ARGUMENTS)
def test_autoregressive_observes_only_known_frames(video_length, frames_per_pass, frames_per_stage, num_given):
    known = set(range(num_given))
    for stage in autoregressive(video_length, frames_per_pass, frames_per_stage, num_given):
        assert set(stage.observed) <= known
        assert not set(stage.observed) & set(stage.latent)
        known |= set(stage.latent)


@pytest.mark.parametrize("video_length,frames_per_pass,frames_per_stage,num_given", ARGUMENTS)
def test_autoregressive_stage_sizes_and_contiguity(video_length, frames_per_pass, frames_per_stage, num_given):
    for stage in autoregressive(video_length, frames_per_pass, frames_per_stage, num_given):
        indices = stage.indices
        assert 1 <= len(stage.latent) <= frames_per_stage
        assert len(indices) <= frames_per_pass
        assert indices == tuple(range(indices[0], indices[0] + len(indices)))
        # the latent frames come right after the most recent known ones
        assert all(o < min(stage.latent) for o in stage.observed)


def test_autoregressive_known_stages():
    stages = autoregressive(10, 4, 2, 3)
    assert stages == [
        Stage((1, 2), (3, 4)),
        Stage((3, 4), (5, 6)),
        Stage((5, 6), (7, 8)),
        Stage((7, 8), (9,)),  # K - m = 2 observed also when one frame is left (the released Autoregressive)
    ]


def test_autoregressive_from_nothing_starts_unconditionally():
    stages = autoregressive(6, 4, 2, 0)
    assert stages[0] == Stage((), (0, 1))
    assert stages[1] == Stage((0, 1), (2, 3))


def test_stage_indices_are_sorted():
    assert Stage((5, 1), (3,)).indices == (1, 3, 5)


@pytest.mark.parametrize("frames_per_stage", [0, 4, 5])
def test_check_scheme_arguments_frames_per_stage(frames_per_stage):
    with pytest.raises(ValueError, match="frames_per_stage"):
        check_scheme_arguments(10, 4, frames_per_stage, 2)


@pytest.mark.parametrize("num_given", [-1, 10, 11])
def test_check_scheme_arguments_num_given(num_given):
    with pytest.raises(ValueError, match="num_given"):
        check_scheme_arguments(10, 4, 2, num_given)
    with pytest.raises(ValueError, match="num_given"):
        autoregressive(10, 4, 2, num_given)


def test_get_scheme():
    assert get_scheme("autoreg") is autoregressive
    assert set(CONTIGUOUS_SCHEMES) <= set(SCHEMES)
    with pytest.raises(ValueError, match="scheme"):
        get_scheme("hierarchy-2")


# ----------------------------------------------------------------------------- run_stages


class IndexSampler:
    """A fake sampler: latent frames become their absolute frame index; records what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, given: torch.Tensor, mask: FrameMask) -> torch.Tensor:
        self.calls.append((given.clone(), mask))
        value = mask.frame_indices.to(given.dtype).reshape(*mask.shape, 1, 1, 1).expand_as(given)
        return torch.where(FrameMask.per_frame(mask.latent, given), value, given)


def video_with_prefix(batch, length, num_given, shape=(1, 2, 2)):
    video = torch.full((batch, length, *shape), float("nan"))
    for i in range(num_given):
        video[:, i] = i
    return video


@pytest.mark.parametrize("video_length,frames_per_pass,frames_per_stage,num_given", ARGUMENTS)
def test_run_stages_fills_the_video(video_length, frames_per_pass, frames_per_stage, num_given):
    video = video_with_prefix(2, video_length, num_given)
    stages = autoregressive(video_length, frames_per_pass, frames_per_stage, num_given)
    out = run_stages(video, stages, IndexSampler(), frames_per_pass, "cpu", contiguous_only=True)
    assert out is video
    expected = torch.arange(video_length, dtype=out.dtype).reshape(1, -1, 1, 1, 1).expand_as(out)
    assert torch.equal(out, expected)


def test_run_stages_passes_only_the_stage_frames():
    video = video_with_prefix(3, 10, 3)
    stages = autoregressive(10, 4, 2, 3)
    sampler = IndexSampler()
    run_stages(video, stages, sampler, 4, torch.device("cpu"))
    assert len(sampler.calls) == len(stages)
    for (given, mask), stage in zip(sampler.calls, stages):
        assert given.shape == (3, len(stage.indices), 1, 2, 2)
        assert given.device == torch.device("cpu") and mask.observed.device == torch.device("cpu")
        assert mask.frame_indices.tolist() == [list(stage.indices)] * 3
        assert mask.observed.tolist() == [[i in stage.observed for i in stage.indices]] * 3
        assert not mask.padding.any()
        # observed frames are already known (filled in by earlier stages or the given prefix)
        observed = FrameMask.per_frame(mask.observed, given).expand_as(given)
        assert torch.isfinite(given[observed]).all()
        for slot, index in enumerate(stage.indices):
            if index in stage.observed:
                assert (given[:, slot] == index).all()


def test_run_stages_keeps_the_video_dtype():
    video = video_with_prefix(1, 6, 2).double()
    run_stages(video, autoregressive(6, 3, 2, 2), lambda g, m: IndexSampler()(g.float(), m), 3, "cpu")
    assert video.dtype == torch.float64
    assert video[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_run_stages_refuses_non_contiguous_stage_when_asked():
    video = video_with_prefix(1, 6, 3)
    stage = Stage(observed=(0, 2), latent=(4,))
    with pytest.raises(ValueError, match="contiguous"):
        run_stages(video, [stage], IndexSampler(), 4, "cpu", contiguous_only=True)
    # without the restriction the same stage runs and fills frame 4 only
    run_stages(video, [stage], IndexSampler(), 4, "cpu", contiguous_only=False)
    assert (video[:, 4] == 4).all()
    assert torch.isnan(video[:, 3]).all() and torch.isnan(video[:, 5]).all()


def test_run_stages_refuses_oversized_stage():
    video = video_with_prefix(1, 6, 3)
    with pytest.raises(ValueError, match="frames_per_pass"):
        run_stages(video, [Stage((0, 1, 2), (3, 4))], IndexSampler(), 4, "cpu")
