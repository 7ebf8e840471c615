"""The copy-last-observed baseline, by frame index, for every task and for shuffled, non-contiguous slots."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.masks import FrameMask, task_mask
from video_diffusion_lab.metrics.baselines import copy_last_observed


def distinct_frames(b: int, t: int, c: int = 2, h: int = 3, w: int = 3) -> torch.Tensor:
    """Each frame is unique and recognisable: frame (b, t) is filled with 0.1 * t - 0.05 * b plus a small texture."""
    base = (0.1 * torch.arange(t)[None] - 0.05 * torch.arange(b)[:, None]).reshape(b, t, 1, 1, 1)
    texture = torch.linspace(-0.01, 0.01, c * h * w).reshape(1, 1, c, h, w)
    return base + texture


def sources(out: torch.Tensor, video: torch.Tensor) -> list[list[int]]:
    """For every output frame, the slot of ``video`` (same example) it equals exactly, or -1."""
    result = []
    for b in range(out.shape[0]):
        row = []
        for t in range(out.shape[1]):
            match = [s for s in range(video.shape[1]) if torch.equal(out[b, t], video[b, s])]
            row.append(match[0] if match else -1)
        result.append(row)
    return result


def test_prediction_copies_the_last_given_frame():
    video = distinct_frames(2, 6)
    out = copy_last_observed(video, task_mask("prediction", 2, 6, 2))
    assert sources(out, video) == [[0, 1, 1, 1, 1, 1]] * 2


def test_infilling_copies_the_latest_earlier_observed_frame():
    video = distinct_frames(1, 6)
    out = copy_last_observed(video, task_mask("infilling", 1, 6, 3))  # given: 0, 1 and 5
    assert sources(out, video) == [[0, 1, 1, 1, 1, 5]]


def test_upsampling_holds_each_given_frame():
    video = distinct_frames(1, 7)
    out = copy_last_observed(video, task_mask("upsampling", 1, 7, 3))  # given: 0, 3, 6
    assert sources(out, video) == [[0, 0, 0, 3, 3, 3, 6]]


def test_frames_before_the_first_observed_copy_the_earliest_observed():
    video = distinct_frames(1, 5)
    mask = FrameMask.from_observed(torch.tensor([[False, False, True, False, True]]))
    out = copy_last_observed(video, mask)
    assert sources(out, video) == [[2, 2, 2, 2, 4]]


def test_unconditional_gives_zeros():
    video = distinct_frames(2, 4)
    out = copy_last_observed(video, task_mask("unconditional", 2, 4, 0))
    assert torch.equal(out, torch.zeros_like(video))


def test_mixed_batch_handles_each_example_separately():
    video = distinct_frames(3, 4)
    observed = torch.tensor([[True, False, False, False], [False, False, False, False], [False, True, False, True]])
    out = copy_last_observed(video, FrameMask.from_observed(observed))
    assert sources(out, video)[0] == [0, 0, 0, 0]
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert sources(out, video)[2] == [1, 1, 1, 3]


@pytest.mark.parametrize("task,num_given", [("prediction", 3), ("infilling", 2), ("upsampling", 2)])
def test_observed_frames_are_unchanged(task, num_given):
    video = torch.randn(2, 5, 3, 4, 4)
    mask = task_mask(task, 2, 5, num_given)
    out = copy_last_observed(video, mask)
    observed = FrameMask.per_frame(mask.observed, video).expand_as(video)
    assert torch.equal(out[observed], video[observed])
    assert out.shape == video.shape


def test_non_contiguous_shuffled_frame_indices():
    # slots hold frames 10, 0, 20, 5 of the video; frames 10 and 5 are given.
    video = distinct_frames(1, 4)
    mask = FrameMask.from_observed(torch.tensor([[True, False, False, True]]), torch.tensor([[10, 0, 20, 5]]))
    out = copy_last_observed(video, mask)
    # frame 0 precedes everything given: earliest given (frame 5, slot 3); frame 20 follows frame 10 (slot 0).
    assert sources(out, video) == [[0, 3, 0, 3]]


def test_frame_indices_decide_not_slot_order():
    # spec example: indices 0, 10, 5, 20 with frames 0 and 5 given: frame 10 copies frame 5 (slot 2), not frame 0.
    video = distinct_frames(1, 4)
    mask = FrameMask.from_observed(torch.tensor([[True, False, True, False]]), torch.tensor([[0, 10, 5, 20]]))
    assert sources(copy_last_observed(video, mask), video) == [[0, 2, 2, 2]]
    # the same frames given at 0 and 15 instead: frame 10 now copies frame 0, frame 20 copies frame 15.
    mask = FrameMask.from_observed(torch.tensor([[True, False, True, False]]), torch.tensor([[0, 10, 15, 20]]))
    assert sources(copy_last_observed(video, mask), video) == [[0, 0, 2, 2]]


def test_does_not_modify_its_input():
    video = distinct_frames(1, 4)
    before = video.clone()
    copy_last_observed(video, task_mask("prediction", 1, 4, 1))
    assert torch.equal(video, before)
