"""Frame masks: task patterns, FrameMask's invariants and helpers, and RaMViD's random training masks."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.masks import (
    FrameMask,
    RandomFrameMasks,
    default_frame_indices,
    observed_for_task,
    task_mask,
)


def flags(pattern: str) -> list[bool]:
    return [c == "1" for c in pattern]


# ----------------------------------------------------------------------------- observed_for_task


@pytest.mark.parametrize(
    "task,num_frames,num_given,pattern",
    [
        ("prediction", 6, 1, "100000"),
        ("prediction", 6, 2, "110000"),
        ("prediction", 6, 5, "111110"),
        ("infilling", 6, 1, "100000"),
        ("infilling", 6, 2, "100001"),
        ("infilling", 6, 3, "110001"),
        ("infilling", 6, 4, "110011"),
        ("infilling", 6, 5, "111011"),
        ("upsampling", 7, 2, "1010101"),
        ("upsampling", 7, 3, "1001001"),
        ("upsampling", 8, 4, "10001000"),
        ("upsampling", 5, 5, "10000"),
        ("unconditional", 5, 0, "00000"),
        ("unconditional", 5, 3, "00000"),
    ],
)
def test_observed_for_task_patterns(task, num_frames, num_given, pattern):
    observed = observed_for_task(task, num_frames, num_given)
    assert observed.dtype == torch.bool
    assert observed.tolist() == flags(pattern)


@pytest.mark.parametrize(
    "task,num_frames,num_given",
    [
        ("prediction", 6, 0),
        ("prediction", 6, 6),
        ("infilling", 6, 0),
        ("infilling", 6, 6),
        ("upsampling", 6, 1),
        ("upsampling", 6, 7),
    ],
)
def test_observed_for_task_rejects_bad_num_given(task, num_frames, num_given):
    with pytest.raises(ValueError, match="num_given"):
        observed_for_task(task, num_frames, num_given)


def test_observed_for_task_rejects_unknown_task():
    with pytest.raises(ValueError, match="task"):
        observed_for_task("interpolation", 6, 2)


def test_task_mask_expands_over_batch():
    indices = torch.tensor([[0, 1, 2, 3], [10, 11, 12, 13]])
    mask = task_mask("prediction", 2, 4, 1, frame_indices=indices)
    assert mask.shape == (2, 4)
    assert mask.observed.tolist() == [flags("1000")] * 2
    assert mask.latent.tolist() == [flags("0111")] * 2
    assert torch.equal(mask.frame_indices, indices)
    assert not mask.padding.any()


def test_task_mask_default_indices():
    mask = task_mask("infilling", 3, 5, 2)
    assert torch.equal(mask.frame_indices, torch.arange(5).expand(3, 5))
    assert mask.frame_indices.dtype == torch.long


# ----------------------------------------------------------------------------- FrameMask


def test_frame_mask_rejects_observed_and_latent_overlap():
    observed = torch.tensor([[True, False, False]])
    latent = torch.tensor([[True, True, False]])
    with pytest.raises(ValueError, match="both observed and latent"):
        FrameMask(observed, latent, default_frame_indices(1, 3))


@pytest.mark.parametrize(
    "observed_shape,latent_shape,indices_shape",
    [((2, 3), (2, 4), (2, 3)), ((2, 3), (2, 3), (2, 4)), ((2, 3), (3,), (2, 3))],
)
def test_frame_mask_rejects_shape_mismatch(observed_shape, latent_shape, indices_shape):
    with pytest.raises(ValueError, match="must all be"):
        FrameMask(
            torch.zeros(observed_shape, dtype=torch.bool),
            torch.zeros(latent_shape, dtype=torch.bool),
            torch.zeros(indices_shape, dtype=torch.long),
        )


def test_frame_mask_rejects_non_bool_flags():
    with pytest.raises(TypeError):
        FrameMask(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool), default_frame_indices(1, 3))


def test_padding_is_neither_observed_nor_latent():
    mask = FrameMask(
        torch.tensor([[True, False, False, False]]),
        torch.tensor([[False, True, False, True]]),
        default_frame_indices(1, 4),
    )
    assert mask.padding.tolist() == [[False, False, True, False]]


def test_from_observed_has_no_padding():
    observed = torch.tensor([[1, 0, 1], [0, 0, 0]])
    mask = FrameMask.from_observed(observed)
    assert mask.observed.tolist() == [[True, False, True], [False, False, False]]
    assert torch.equal(mask.latent, ~mask.observed)
    assert not mask.padding.any()
    assert torch.equal(mask.frame_indices, torch.tensor([[0, 1, 2], [0, 1, 2]]))


def test_keep_observed_replaces_exactly_the_observed_frames():
    mask = FrameMask(
        torch.tensor([[True, False, False], [False, False, True]]),
        torch.tensor([[False, True, False], [True, True, False]]),
        default_frame_indices(2, 3),
    )
    video = torch.randn(2, 3, 2, 4, 4)
    given = torch.randn(2, 3, 2, 4, 4)
    out = mask.keep_observed(video, given)
    for b in range(2):
        for t in range(3):
            expected = given[b, t] if mask.observed[b, t] else video[b, t]
            assert torch.equal(out[b, t], expected)


def test_keep_observed_ignores_nan_in_unobserved_given_frames():
    mask = FrameMask.from_observed(torch.tensor([[True, False]]))
    given = torch.tensor([1.0, float("nan")]).reshape(1, 2, 1, 1, 1)
    out = mask.keep_observed(torch.zeros(1, 2, 1, 1, 1), given)
    assert out.flatten().tolist() == [1.0, 0.0]


def test_per_frame_broadcasts_flags():
    flags_ = torch.tensor([[True, False]])
    assert FrameMask.per_frame(flags_, torch.zeros(1, 2, 3, 4, 5)).shape == (1, 2, 1, 1, 1)


def test_repeat_interleaves_examples():
    mask = FrameMask.from_observed(
        torch.tensor([[True, False, False], [True, True, False]]), torch.tensor([[0, 1, 2], [5, 6, 7]])
    )
    rep = mask.repeat(3)
    assert rep.shape == (6, 3)
    assert rep.observed.tolist() == [flags("100")] * 3 + [flags("110")] * 3
    assert rep.latent.tolist() == [flags("011")] * 3 + [flags("001")] * 3
    assert rep.frame_indices.tolist() == [[0, 1, 2]] * 3 + [[5, 6, 7]] * 3


def test_getitem_selects_examples():
    mask = FrameMask.from_observed(torch.tensor([[True, False], [False, True], [False, False]]))
    sub = mask[1:]
    assert sub.shape == (2, 2)
    assert sub.observed.tolist() == [[False, True], [False, False]]
    assert mask[torch.tensor([2, 0])].observed.tolist() == [[False, False], [True, False]]


def test_to_keeps_contents():
    mask = task_mask("prediction", 2, 4, 2)
    moved = mask.to("cpu")
    assert torch.equal(moved.observed, mask.observed)
    assert torch.equal(moved.latent, mask.latent)
    assert torch.equal(moved.frame_indices, mask.frame_indices)


# ----------------------------------------------------------------------------- RandomFrameMasks

DRAWS = 4000


def draw(num_frames: int = 8, seed: int = 0, frame_indices=None, **kwargs) -> FrameMask:
    if frame_indices is None:
        frame_indices = default_frame_indices(DRAWS, num_frames)
    return RandomFrameMasks(**kwargs)(frame_indices, generator=torch.Generator().manual_seed(seed))


def test_random_masks_unconditional_fraction():
    mask = draw(p_uncond=0.25)
    fraction = (mask.observed.sum(1) == 0).float().mean().item()
    assert fraction == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_masks_extreme_p_uncond(p):
    counts = draw(p_uncond=p).observed.sum(1)
    if p == 0.0:
        assert (counts >= 1).all()
    else:
        assert (counts == 0).all()


def test_random_masks_given_count_default_range():
    counts = draw(num_frames=6, p_uncond=0.0).observed.sum(1)
    # r ~ U{1, ..., T - 1}: never all frames observed, every count reached, roughly uniformly.
    assert counts.min().item() == 1 and counts.max().item() == 5
    histogram = torch.bincount(counts, minlength=6)[1:].float() / DRAWS
    torch.testing.assert_close(histogram, torch.full((5,), 0.2), rtol=0, atol=0.03)


def test_random_masks_respect_max_given():
    counts = draw(num_frames=8, p_uncond=0.0, max_given=3).observed.sum(1)
    assert set(counts.tolist()) == {1, 2, 3}


def test_random_masks_max_given_capped_at_t_minus_one():
    counts = draw(num_frames=4, p_uncond=0.0, max_given=10).observed.sum(1)
    assert counts.max().item() == 3


def test_random_masks_never_observe_every_frame():
    mask = draw(num_frames=3, p_uncond=0.1)
    assert (mask.latent.sum(1) >= 1).all()
    assert not mask.padding.any()
    assert torch.equal(mask.latent, ~mask.observed)


def test_random_masks_positions_vary():
    mask = draw(num_frames=8, p_uncond=0.0)
    per_position = mask.observed.float().mean(0)
    # Uniform positions: each slot is observed with probability E[r] / T = 4 / 8.
    torch.testing.assert_close(per_position, torch.full((8,), 0.5), rtol=0, atol=0.05)
    counts = mask.observed.sum(1, keepdim=True)
    prefix = torch.arange(8)[None] < counts
    assert (mask.observed == prefix).all(1).float().mean().item() < 0.2


def test_random_masks_carry_frame_indices_unchanged():
    g = torch.Generator().manual_seed(3)
    indices = torch.stack([torch.randperm(50, generator=g)[:6] for _ in range(16)])
    mask = RandomFrameMasks()(indices.clone(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask.frame_indices, indices)


def test_random_masks_reproducible_with_generator():
    a, b, c = draw(seed=5), draw(seed=5), draw(seed=6)
    assert torch.equal(a.observed, b.observed)
    assert not torch.equal(a.observed, c.observed)


@pytest.mark.parametrize(
    "kwargs,match", [({"p_uncond": 1.5}, "p_uncond"), ({"p_uncond": -0.1}, "p_uncond"), ({"max_given": 0}, "max_given")]
)
def test_random_masks_reject_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomFrameMasks(**kwargs)


def test_random_masks_single_frame_clips_are_unconditional():
    # BUG (diffusion/masks.py, RandomFrameMasks.__call__): with T = 1, max_given = 0 and torch.randint(1, 1) raises
    # "random_ expects 'from' to be less than 'to'". A one-frame clip can only be generated unconditionally.
    mask = RandomFrameMasks(p_uncond=0.25)(default_frame_indices(8, 1), generator=torch.Generator().manual_seed(0))
    assert not mask.observed.any()
    assert mask.latent.all()
