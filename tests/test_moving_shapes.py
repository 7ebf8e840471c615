"""The embedded moving-shapes data set: determinism, splits, ranges, motion, argument checks and the DataModule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from video_diffusion_lab.datamodules import MovingShapesDataModule, MovingShapesDataset
from video_diffusion_lab.datamodules.moving_shapes import _bounce, _coverage

SMALL = dict(size=20, num_frames=6, image_size=16)


def test_items_are_deterministic_per_index():
    a, b = MovingShapesDataset("train", **SMALL), MovingShapesDataset("train", **SMALL)
    for index in (0, 7, 19):
        assert torch.equal(a[index]["video"], b[index]["video"])
    assert not torch.equal(a[0]["video"], a[1]["video"])


def test_seed_changes_the_videos():
    a, b = MovingShapesDataset("train", seed=0, **SMALL), MovingShapesDataset("train", seed=1, **SMALL)
    assert not torch.equal(a[0]["video"], b[0]["video"])


def test_splits_differ_for_the_same_index():
    videos = {split: MovingShapesDataset(split, **SMALL)[3]["video"] for split in ("train", "val", "test")}
    assert not torch.equal(videos["train"], videos["val"])
    assert not torch.equal(videos["train"], videos["test"])
    assert not torch.equal(videos["val"], videos["test"])


@pytest.mark.parametrize("channels", [1, 3])
def test_item_layout_and_range(channels):
    dataset = MovingShapesDataset("val", channels=channels, **SMALL)
    assert len(dataset) == 20
    item = dataset[5]
    video = item["video"]
    assert video.shape == (6, channels, 16, 16)
    assert video.dtype == torch.float32
    assert video.min().item() >= -1.0 and video.max().item() <= 1.0
    # black background and bright objects both present
    assert video.min().item() == -1.0 and video.max().item() > 0.0
    assert torch.equal(item["frame_indices"], torch.arange(6))
    assert item["frame_indices"].dtype == torch.long
    assert item["index"].item() == 5


def test_index_out_of_range():
    dataset = MovingShapesDataset("train", **SMALL)
    with pytest.raises(IndexError):
        dataset[20]
    with pytest.raises(IndexError):
        dataset[-1]


def test_there_is_motion_between_consecutive_frames():
    dataset = MovingShapesDataset("test", **SMALL)
    moving = 0
    for index in range(len(dataset)):
        video = dataset[index]["video"]
        diffs = (video[1:] - video[:-1]).abs().flatten(1).amax(1)
        moving += int((diffs > 0.05).all())
    assert moving >= 18  # objects move at >= 0.5 px per frame


def test_copy_last_frame_is_not_a_perfect_predictor():
    dataset = MovingShapesDataset("test", **SMALL)
    mses = []
    for index in range(len(dataset)):
        video = dataset[index]["video"]
        mses.append(((video[3:] - video[2:3]) ** 2).mean().item())
    assert sum(m > 1e-3 for m in mses) >= 18


def centroids(video: torch.Tensor) -> torch.Tensor:
    """(T, 2) brightness-weighted (y, x) centres of a single-object grey clip."""
    weight = ((video[:, 0] + 1) / 2).double()
    grid = torch.arange(video.shape[-1], dtype=torch.float64) + 0.5
    mass = weight.sum(dim=(1, 2))
    return torch.stack([(weight.sum(2) * grid).sum(1) / mass, (weight.sum(1) * grid).sum(1) / mass], dim=1)


def test_objects_move_with_constant_sub_pixel_velocity():
    # One object of fixed size at exactly 1 px per frame: between bounces its (anti-aliased) centre moves on a line
    # at that speed, so a constant-velocity oracle is exact where copying the last frame is not.
    dataset = MovingShapesDataset(
        "test",
        channels=1,
        num_objects=1,
        speed_range=(1.0, 1.0),
        size_range=(4.0, 4.0),
        size=20,
        num_frames=5,
        image_size=64,
    )
    straight = 0
    for index in range(len(dataset)):
        c = centroids(dataset[index]["video"])
        velocity = c[1:] - c[:-1]
        torch.testing.assert_close(
            velocity.norm(dim=1).max(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-4
        )  # never faster than its speed
        if (velocity[1:] - velocity[:-1]).abs().max() < 1e-4:  # no bounce in this clip
            straight += 1
            torch.testing.assert_close(velocity.norm(dim=1), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-4)
            oracle = c[-2] + velocity[-2]
            assert (oracle - c[-1]).norm() < 1e-4 < (c[-2] - c[-1]).norm()
    assert straight >= 12


def test_coverage_and_bounce_helpers():
    cover = _coverage(np.array([1.5]), 2.0, 5)
    np.testing.assert_allclose(cover, [[0.0, 0.5, 1.0, 0.5, 0.0]])
    np.testing.assert_allclose(_bounce(np.array([0.0, 3.0, 5.0, 7.0, 12.0, -1.0]), 0.0, 5.0), [0, 3, 5, 3, 2, 1])
    np.testing.assert_allclose(_bounce(np.array([1.0, 4.0]), 2.0, 2.0), [2.0, 2.0])


def test_objects_stay_inside_the_frame():
    # total brightness of a single grey object is its area in every frame (no clipping at the borders)
    dataset = MovingShapesDataset("train", channels=1, num_objects=1, size=5, num_frames=12, image_size=16)
    for index in range(5):
        mass = (dataset[index]["video"] + 1).sum(dim=(1, 2, 3)) / 2
        torch.testing.assert_close(mass, mass[:1].expand_as(mass), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"split": "validation"}, "split"),
        ({"channels": 2}, "channels"),
        ({"channels": 4}, "channels"),
        ({"size_range": (3.0, 20.0)}, "size_range"),
        ({"size_range": (0.0, 3.0)}, "size_range"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MovingShapesDataset(**{"image_size": 16, **kwargs})


def test_datamodule_yields_video_batches():
    dm = MovingShapesDataModule(
        num_frames=5,
        image_size=8,
        channels=3,
        size_range=(2.0, 3.0),
        train_size=12,
        val_size=6,
        test_size=6,
        predict_size=3,
        batch_size=4,
        eval_batch_size=6,
    )
    train = list(dm.train_dataloader())
    assert len(train) == 3
    batch = train[0]
    assert batch["video"].shape == (4, 5, 3, 8, 8)
    assert torch.equal(batch["frame_indices"], torch.arange(5).expand(4, 5))
    val = next(iter(dm.val_dataloader()))
    assert val["video"].shape == (6, 5, 3, 8, 8)
    assert val["index"].tolist() == list(range(6))
    predict = list(dm.predict_dataloader())
    assert sum(len(b["video"]) for b in predict) == 3
    # predict clips are the first test clips
    test = next(iter(dm.test_dataloader()))
    assert torch.equal(predict[0]["video"], test["video"][:3])


def test_datamodule_train_loader_drops_last_and_shuffles():
    dm = MovingShapesDataModule(num_frames=3, image_size=8, size_range=(2.0, 3.0), train_size=10, batch_size=4)
    loader = dm.train_dataloader()
    first = torch.cat([b["index"] for b in loader])
    assert len(first) == 8
    loader.sampler.set_epoch(1)  # the shuffle order is a function of (seed, epoch)
    second = torch.cat([b["index"] for b in loader])
    assert not torch.equal(first, second)
