"""FDM's training index distribution: at most K frames inside the video, observed and latent disjoint, every group
size and both kinds occur, padding slots fill the rest."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.frame_sampling import (
    fdm_training_mask,
    gather_frames,
    sample_frame_groups,
    sample_frame_indices,
    sample_group_indices,
)


@pytest.mark.parametrize("video_length,max_frames", [(50, 8), (1000, 20), (5, 8), (1, 4), (8, 8)])
def test_indices_are_at_most_k_inside_the_video_and_disjoint(video_length, max_frames):
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        groups = sample_frame_groups(video_length, max_frames, generator)
        indices = [i for g in groups for i in g.indices]
        assert len(indices) == len(set(indices)), "a frame may be in one group only (observed and latent disjoint)"
        assert 1 <= len(indices) <= min(max_frames, video_length)
        assert all(0 <= i < video_length for i in indices)
        assert not groups[0].observed, "the first group is latent"
        assert all(g.indices for g in groups)


def test_all_group_sizes_and_both_kinds_occur():
    generator = torch.Generator().manual_seed(1)
    max_frames, sizes, kinds, later_groups = 6, set(), set(), 0
    for _ in range(600):
        groups = sample_frame_groups(40, max_frames, generator)
        sizes |= {g.size for g in groups}
        kinds |= {g.observed for g in groups}
        later_groups += len(groups) - 1
    assert sizes == set(range(1, max_frames + 1))
    assert kinds == {True, False}
    assert later_groups > 100


def test_group_is_evenly_spaced_inside_the_video():
    generator = torch.Generator().manual_seed(2)
    spacings = []
    for _ in range(500):
        group = sample_group_indices(100, 10, generator)
        assert all(0 <= i < 100 for i in group) and group == sorted(group)
        gaps = [b - a for a, b in zip(group, group[1:])]
        if gaps:
            assert max(gaps) - min(gaps) <= 1  # evenly spaced up to rounding
            spacings.append(sum(gaps) / len(gaps))
    # log-uniform spacing: both dense groups and groups spread over the video occur
    assert min(spacings) < 2 and max(spacings) > 20


def test_training_mask_pads_the_free_slots_and_is_reproducible():
    mask = fdm_training_mask(64, 30, 8, torch.Generator().manual_seed(3))
    again = fdm_training_mask(64, 30, 8, torch.Generator().manual_seed(3))
    assert torch.equal(mask.frame_indices, again.frame_indices) and torch.equal(mask.observed, again.observed)
    assert mask.shape == (64, 8)
    assert not (mask.observed & mask.latent).any()
    assert mask.latent.any(dim=1).all(), "every example has a latent frame to learn from"
    assert mask.padding.any() and mask.observed.any()
    real = ~mask.padding
    # real slots first, sorted and distinct; padding after them
    for b in range(64):
        n = int(real[b].sum())
        assert real[b, :n].all() and not real[b, n:].any()
        idx = mask.frame_indices[b, :n].tolist()
        assert idx == sorted(set(idx))
    assert ((mask.frame_indices >= 0) & (mask.frame_indices < 30)).all()


def test_sample_frame_indices_flags_match_groups():
    indices, flags = sample_frame_indices(30, 8, torch.Generator().manual_seed(4))
    assert len(indices) == len(flags) and indices == sorted(indices) and not all(flags)


def test_gather_frames():
    video = torch.arange(2 * 6).float().reshape(2, 6, 1, 1, 1).expand(2, 6, 1, 2, 2)
    out = gather_frames(video, torch.tensor([[5, 0, 2], [1, 1, 3]]))
    assert out[:, :, 0, 0, 0].tolist() == [[5, 0, 2], [7, 7, 9]]


def test_released_padding_takes_frames_of_another_video_into_the_loss():
    from video_diffusion_lab.diffusion.frame_sampling import fdm_training_slots

    generator = torch.Generator().manual_seed(0)
    padded = 0
    for _ in range(50):
        slots = fdm_training_slots(3, 40, 8, "random_frames", generator)
        real = slots.mask.observed | slots.mask.latent
        assert slots.average_over_slots and torch.equal(slots.loss_frames, ~slots.mask.observed)
        for b in range(3):  # the drawn frames come first, padding after
            n = int((slots.source[b] == b).sum())
            assert (slots.source[b, :n] == b).all() and (slots.source[b, n:] == (b + 1) % 3).all()
            assert (slots.mask.frame_indices[b] < 40).all()
            padded += 8 - n
            # a padding slot is flagged only where its random position lies in the example's own drawn set
            own = {int(i) for i, r in zip(slots.mask.frame_indices[b, :n], real[b, :n]) if r}
            for k in range(n, 8):
                if real[b, k]:
                    assert int(slots.mask.frame_indices[b, k]) in own
    assert padded > 0


def test_masked_padding_keeps_padding_out_of_the_loss():
    from video_diffusion_lab.diffusion.frame_sampling import fdm_training_slots

    slots = fdm_training_slots(4, 40, 8, "masked", torch.Generator().manual_seed(1))
    assert not slots.average_over_slots and torch.equal(slots.loss_frames, slots.mask.latent)
    assert (slots.source == torch.arange(4)[:, None]).all()
    with pytest.raises(ValueError, match="padding"):
        fdm_training_slots(4, 40, 8, "zeros")


def test_every_micro_batch_draws_its_own_frame_indices():
    """With gradient accumulation the global step stays while micro-batches go by: draws must not repeat."""
    from video_diffusion_lab.groups import ClipShape, TaskConfig
    from video_diffusion_lab.lightning_modules.fdm import FDM, FDMUNetConfig

    model = FDM(
        clip=ClipShape(num_frames=4, image_size=8),
        task=TaskConfig(num_given=2, video_length=12),
        network=FDMUNetConfig(model_channels=8, channel_mult=(1, 2), attention_resolutions=(4,), num_heads=2),
    )
    torch.manual_seed(0)
    first = fdm_training_mask(8, 30, 4, model.training_generator())
    second = fdm_training_mask(8, 30, 4, model.training_generator())
    assert not torch.equal(first.frame_indices, second.frame_indices)
    torch.manual_seed(0)  # the draws come from the global RNG, which a resumed run restores
    again = fdm_training_mask(8, 30, 4, model.training_generator())
    assert torch.equal(first.frame_indices, again.frame_indices)


def test_windows_keep_the_video_bounds_and_make_short_spacings_common():
    from video_diffusion_lab.diffusion.frame_sampling import TrainingWindows, sample_window

    generator = torch.Generator().manual_seed(5)
    lengths = []
    for _ in range(400):
        start, length = sample_window(300, TrainingWindows(shortest=20), generator)
        assert 20 <= length <= 300 and 0 <= start <= 300 - length
        lengths.append(length)
    assert min(lengths) < 30 and max(lengths) > 200, "log-uniform over [20, 300]: short and long windows both occur"
    assert sample_window(8, TrainingWindows(shortest=20), generator) == (0, 8), "a short video is taken whole"

    mixed = [sample_window(300, TrainingWindows(0.5, shortest=10, longest=10), generator) for _ in range(400)]
    whole = sum(window == (0, 300) for window in mixed)
    assert 150 < whole < 250, f"about half the examples keep the whole video, got {whole} of 400"
    assert all(length == 10 and 0 <= start <= 290 for start, length in mixed if (start, length) != (0, 300))

    def near_observed(windows):  # share of latent frames with an observed frame at most 5 frames away
        mask = fdm_training_mask(2000, 300, 10, torch.Generator().manual_seed(6), windows=windows)
        near = total = 0
        for b in range(2000):
            observed = mask.frame_indices[b][mask.observed[b]]
            for index in mask.frame_indices[b][mask.latent[b]]:
                total += 1
                near += bool(observed.numel()) and int((observed - index).abs().min()) <= 5
        assert ((mask.frame_indices >= 0) & (mask.frame_indices < 300)).all()
        return near / total

    released = near_observed(None)
    assert near_observed(TrainingWindows(shortest=20)) > 3 * released
    assert near_observed(TrainingWindows(0.5, shortest=10, longest=10)) > 10 * released


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"probability": 0.0}, "windows.probability"),
        ({"probability": 1.5}, "windows.probability"),
        ({"shortest": 0}, "windows.shortest"),
        ({"shortest": 20, "longest": 10}, "windows.longest"),
    ],
)
def test_bad_windows_name_the_field(fields, field):
    from video_diffusion_lab.diffusion.frame_sampling import TrainingWindows

    with pytest.raises(ValueError, match=field):
        TrainingWindows(**fields)
