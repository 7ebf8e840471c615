"""Long-video schemes: coverage, causality, size limits, the CARLA stage counts by hand, adaptive selection,
scheme pictures, and models that accept only contiguous windows (RaMViD)."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.diffusion.schemes import (
    SCHEMES,
    Stage,
    build_stages,
    check_scheme_supported,
    farthest_point_selection,
    hierarchy_spacing,
    long_range,
    pixel_embedding,
    run_stages,
    scheme_image,
)

ARGUMENTS = [
    # video_length, frames_per_pass (K), frames_per_stage, num_given
    (1000, 20, 10, 36),
    (64, 8, 4, 8),
    (30, 6, 3, 2),
    (17, 5, 1, 3),
    (12, 4, 3, 1),
    (40, 10, 9, 5),
    (25, 6, 2, 0),
    (9, 8, 4, 8),
]


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("video_length,frames_per_pass,frames_per_stage,num_given", ARGUMENTS)
def test_scheme_generates_every_frame_once_from_known_frames(
    name, video_length, frames_per_pass, frames_per_stage, num_given
):
    stages = build_stages(name, video_length, frames_per_pass, frames_per_stage, num_given)
    known = set(range(num_given))
    generated = []
    for stage in stages:
        assert stage.latent, "a stage generates something"
        assert set(stage.observed) <= known, "observed frames must be known already"
        assert not set(stage.latent) & known, "a frame is generated once"
        assert len(stage.indices) + stage.adaptive <= frames_per_pass
        assert len(stage.latent) <= frames_per_stage or stage is stages[0] and not num_given
        assert stage.adaptive <= len(known) - len(stage.observed)
        generated += stage.latent
        known |= set(stage.latent)
    assert sorted(generated) == list(range(num_given, video_length))


# CARLA protocol: T = 1000, 36 given, K = 20, m = 10 new frames per stage (observed slots K - m = 10).
#   autoreg / long_range / adaptive_autoreg: frames 36..999 = 964 frames, 10 per stage -> ceil(964 / 10) = 97 stages
#     (96 of 10, the last of 4).
#   hierarchy_2: level 1 = 1 stage with round(linspace(36, 999, 10)) = 36 + 107 k, k = 0..9 (963 / 9 = 107);
#     level 2 fills the other 964 - 10 = 954 frames left to right, 10 a stage (a run of 10 new frames crosses at most
#     one level-1 frame, which fits the 10 observed slots) -> ceil(954 / 10) = 96 stages; total 97.
#   hierarchy_3: level 1 as above (1 stage); level 2 grid of spacing int((964 / 9) ** (1 / 2)) = int(10.35) = 10:
#     36, 46, ..., 996 = 97 frames, of which only 36 is a level-1 frame (36 + 107 k = 36 mod 10 only for k = 0)
#     -> 96 frames, ceil(96 / 10) = 10 stages; level 3: 964 - 10 - 96 = 858 frames -> 86 stages; total 97.
CARLA = (1000, 20, 10, 36)


@pytest.mark.parametrize(
    "name", ["autoreg", "long_range", "adaptive_autoreg", "hierarchy_2", "hierarchy_3", "adaptive_hierarchy_2"]
)
def test_carla_stage_counts_by_hand(name):
    assert len(build_stages(name, *CARLA)) == 97


def test_carla_hierarchy_levels_by_hand():
    h2 = build_stages("hierarchy_2", *CARLA)
    assert h2[0].latent == tuple(36 + 107 * k for k in range(10))
    assert h2[0].observed == (0, 3, 7, 11, 15, 19, 23, 27, 31, 35)  # the prefix, evenly spaced
    assert hierarchy_spacing(1000, 10, 36, 3, 2) == 10 and hierarchy_spacing(1000, 10, 36, 3, 3) == 1
    h3 = build_stages("hierarchy_3", *CARLA)
    level2 = list(h3[1:11])
    assert [len(s.latent) for s in level2] == [10] * 9 + [6]
    assert sorted(i for s in level2 for i in s.latent) == list(range(46, 1000, 10))
    assert all(len(s.latent) == 10 for s in h3[11:-1])
    # every level-2 stage sees known frames on both sides of what it generates
    for stage in h2[1:]:
        assert min(stage.observed) < min(stage.latent)
        if max(stage.latent) < 999:
            assert max(stage.observed) > max(stage.latent)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_carla_stage_conditions_on_k_minus_m_frames(name):
    """The released schemes observe n_to_condition_on = max_frames - step_size = 10 frames in every stage, the last
    one too, where only 4 frames are left to generate (it used to observe 16 here)."""
    stages = build_stages(name, *CARLA)
    assert [len(s.observed) + s.adaptive for s in stages] == [10] * 97
    assert len(stages[-1].latent) < 10


def test_carla_last_stages_by_hand():
    # autoreg: 36 + 96 * 10 = 996 frames known; the last 4 given the 10 before them (sorted(done)[-(K - m):])
    assert build_stages("autoreg", *CARLA)[-1] == Stage(tuple(range(986, 996)), (996, 997, 998, 999))
    # long-range: 5 most recent and the 5 latest given frames
    assert build_stages("long_range", *CARLA)[-1] == Stage(
        (31, 32, 33, 34, 35, 991, 992, 993, 994, 995), (996, 997, 998, 999)
    )
    # hierarchy-2: level 2 ends with 995..998 (999 is a level-1 frame): up to 5 known after (999 only), 9 before
    assert build_stages("hierarchy_2", *CARLA)[-1] == Stage((*range(986, 995), 999), (995, 996, 997, 998))


def test_long_range_splits_context_between_recent_frames_and_the_prefix():
    stages = long_range(20, 6, 2, 5)
    assert stages[0] == Stage((1, 2, 3, 4), (5, 6))
    # K - m = 4 observed: the 2 most recent and the 2 latest given frames
    assert stages[3] == Stage((3, 4, 9, 10), (11, 12))
    assert stages[-1] == Stage((3, 4, 17, 18), (19,)), "K - m observed in the last stage too"


def test_unknown_scheme_and_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="scheme"):
        build_stages("hierarchy-7", 10, 4, 2, 2)
    with pytest.raises(ValueError, match="frames_per_stage"):
        build_stages("hierarchy_2", 10, 4, 4, 2)
    with pytest.raises(ValueError, match="num_given"):
        build_stages("long_range", 10, 4, 2, 10)


def test_farthest_point_selection_by_hand():
    points = torch.tensor([[0.0], [1.0], [10.0], [4.0], [9.0]])
    assert farthest_point_selection(points, [0], 3) == [0, 2, 3]  # 10 is farthest from 0, then 4 (min dist 4)
    assert farthest_point_selection(points, [1, 4], 3) == [1, 4, 3]


class IndexSampler:
    """Latent frames become their absolute index; records every pass."""

    def __init__(self):
        self.calls = []

    def __call__(self, given: torch.Tensor, mask: FrameMask) -> torch.Tensor:
        self.calls.append((given.clone(), mask))
        value = mask.frame_indices.to(given.dtype).reshape(*mask.shape, 1, 1, 1).expand_as(given)
        return torch.where(FrameMask.per_frame(mask.latent, given), value, given)


@pytest.mark.parametrize("name", ["adaptive_autoreg", "adaptive_hierarchy_2", "hierarchy_3"])
def test_run_stages_with_per_video_observed_frames(name):
    video = torch.full((2, 24, 1, 2, 2), float("nan"))
    video[:, :4] = torch.arange(4.0).reshape(1, 4, 1, 1, 1)
    video[1, :4] *= torch.tensor([1.0, -1.0, 1.0, -1.0]).reshape(4, 1, 1, 1)  # video 1's prefix differs
    stages = build_stages(name, 24, 6, 2, 4)
    sampler, seen = IndexSampler(), []
    run_stages(
        video,
        stages,
        sampler,
        6,
        "cpu",
        known=range(4),
        embed=pixel_embedding,
        pad_to_pass=True,
        callback=lambda n, stage, observed: seen.append(observed),
    )
    assert torch.isfinite(video).all()
    assert video[0, :, 0, 0, 0].tolist() == list(range(24))
    for (given, mask), stage, observed in zip(sampler.calls, stages, seen):
        assert mask.shape == (2, 6)
        assert (mask.latent.sum(1) == len(stage.latent)).all()
        assert (mask.observed.sum(1) == len(stage.observed) + stage.adaptive).all()
        for b in range(2):
            assert set(stage.observed) <= set(observed[b])
        assert torch.isfinite(given[mask.observed]).all(), "observed frames are known"


def test_run_stages_adaptive_needs_known_frames():
    stages = build_stages("adaptive_autoreg", 10, 4, 2, 3)
    with pytest.raises(ValueError, match="adaptive"):
        run_stages(torch.zeros(1, 10, 1, 2, 2), stages, IndexSampler(), 4, "cpu")


def test_scheme_image_colours_stages():
    stages = build_stages("hierarchy_2", 30, 6, 3, 2)
    image = scheme_image(stages, 30, 2, cell=4)
    assert image.dtype.name == "uint8" and image.shape[0] == 4 * (len(stages) + 1)
    width = image.shape[1] // 30
    first = image[4 + 1, :, :]  # row of stage 1
    for i in stages[0].latent:
        assert tuple(first[i * width]) == (220, 50, 40)
    for i in stages[0].observed:
        assert tuple(first[i * width]) == (40, 90, 220)


# --------------------------------------------------------------------------------- models with 3D convolutions


def tiny_ramvid():
    from video_diffusion_lab.groups import ClipShape, DiffusionConfig, SamplingConfig, TaskConfig
    from video_diffusion_lab.lightning_modules.ramvid import RaMViD, RaMViDUNetConfig

    return RaMViD(
        clip=ClipShape(num_frames=4, image_size=8),
        network=RaMViDUNetConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=()),
        diffusion=DiffusionConfig(steps=50),
        sampling=SamplingConfig(sampler="ddim", steps=2),
        task=TaskConfig(num_given=2),
        max_given=2,
    )


def test_ramvid_runs_autoreg_and_refuses_other_schemes_before_sampling():
    model = tiny_ramvid()
    contiguous = model.contiguous_frames_only
    check_scheme_supported("autoreg", contiguous)
    for name in sorted(set(SCHEMES) - {"autoreg"}):
        with pytest.raises(ValueError, match="scheme"):
            check_scheme_supported(name, contiguous)
    video = torch.zeros(1, 8, 3, 8, 8)
    video[:, :2] = torch.rand(1, 2, 3, 8, 8) * 2 - 1
    calls = []

    def sample_fn(given, mask):
        calls.append(mask)
        return model.video_sampler().sample_pass(given, mask, generator=torch.Generator().manual_seed(0))

    run_stages(video, build_stages("autoreg", 8, 4, 2, 2), sample_fn, 4, "cpu", contiguous_only=contiguous)
    assert len(calls) == 3 and video[:, 2:].abs().sum() > 0
    calls.clear()
    with pytest.raises(ValueError, match="scheme"):
        run_stages(video, build_stages("hierarchy_2", 8, 4, 2, 2), sample_fn, 4, "cpu", contiguous_only=contiguous)
    assert not calls, "the refusal comes before any sampling pass"
