"""The revisit metrics on constructed cases: perfect memory scores 0, a wrong wall colour or a frozen frame scores
high, a wall never seen before is not scored; late-frame PSNR / CRPS see only the last frames."""

from __future__ import annotations

import math

import pytest
import torch

from video_diffusion_lab.datamodules.maze import MazeDataset
from video_diffusion_lab.metrics.revisit import LateFrameQuality, RevisitColourError, lag_bin_names, late_frames

pytestmark = pytest.mark.usefixtures("single_thread")

RED, GREEN, BLUE, YELLOW = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)
COLOURS = torch.tensor([RED, GREEN, BLUE, YELLOW])


def constructed_world() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Six 4x4 frames. Frame 0 (given): wall 0 left, wall 1 right. Frames 1-3: wall 2. Frame 4: wall 0 again (lag 4,
    seen only in the given frame). Frame 5: wall 3, never seen before. Returns (video in [-1, 1], wall_map, latent)."""
    wall_map = torch.zeros(1, 6, 4, 4, dtype=torch.int16)
    wall_map[0, 0, :, 2:] = 1
    wall_map[0, 1:4] = 2
    wall_map[0, 4] = 0
    wall_map[0, 5] = 3
    video = paint(wall_map, COLOURS)
    latent = torch.ones(1, 6, dtype=torch.bool)
    latent[0, 0] = False
    return video, wall_map, latent


def paint(wall_map: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) in [-1, 1]: every pixel in its wall's colour."""
    return (colours[wall_map.long()] * 2 - 1).permute(0, 1, 4, 2, 3).contiguous()


def scores(samples: torch.Tensor, video: torch.Tensor, wall_map: torch.Tensor, latent: torch.Tensor) -> dict:
    metric = RevisitColourError(num_walls=4, beyond=3, lag_edges=(1, 10), min_pixels=1)
    metric.update(samples, video, wall_map, latent)
    return {k: float(v) for k, v in metric.compute().items()}


def test_perfect_memory_scores_zero() -> None:
    video, wall_map, latent = constructed_world()
    result = scores(video[None], video, wall_map, latent)
    assert lag_bin_names((1, 10)) == ["1-9", "10+"]
    assert result["revisit_lag_1-9"] == 0 and result["given_lag_1-9"] == 0 and result["given_beyond_3"] == 0
    assert result["revisit_pixels"] == 16 * 3  # wall 2 at frames 2, 3 (lag 1) and wall 0 at frame 4 (lag 4)
    assert result["given_pixels"] == 16  # only wall 0 at frame 4 was seen in given frames alone
    assert torch.isnan(torch.tensor(result["revisit_lag_10+"]))  # nothing came back after 10 frames or more


def test_a_wrong_colour_on_a_revisited_wall_scores_its_colour_difference() -> None:
    video, wall_map, latent = constructed_world()
    wrong = video.clone()
    wrong[0, 4] = paint(wall_map[:, 4:5], COLOURS[[1, 1, 2, 3]])[0, 0]  # wall 0 comes back green, not red
    result = scores(wrong[None], video, wall_map, latent)
    red_to_green = 255 * 2 / 3  # |(1, 0, 0) - (0, 1, 0)| averaged over channels
    assert result["given_lag_1-9"] == pytest.approx(red_to_green)
    assert result["given_beyond_3"] == pytest.approx(red_to_green)
    assert result["revisit_lag_1-9"] == pytest.approx(red_to_green / 3)  # one of three scored 16-pixel walls


def test_a_wall_never_seen_before_is_not_scored() -> None:
    video, wall_map, latent = constructed_world()
    guessed = video.clone()
    guessed[0, 5] = -video[0, 5]  # wall 3 (new at frame 5) in another colour
    guessed[0, 1] = -video[0, 1]  # wall 2's first sighting, at frame 1
    result, perfect = scores(guessed[None], video, wall_map, latent), scores(video[None], video, wall_map, latent)
    assert result.keys() == perfect.keys()
    for name, value in result.items():
        assert value == perfect[name] or math.isnan(value) and math.isnan(perfect[name]), name


def test_a_frozen_frame_scores_high() -> None:
    video, wall_map, latent = constructed_world()
    frozen = video[:, :1].expand_as(video)
    result = scores(frozen[None], video, wall_map, latent)
    assert result["given_lag_1-9"] == pytest.approx(255 / 3)  # half red, half green where red should be
    assert result["revisit_lag_1-9"] > 100  # blue walls shown as the given frame's red and green


def test_on_the_maze_world_memory_scores_zero_and_forgetting_scores_high() -> None:
    dataset = MazeDataset("test", size=2, video_length=200, image_size=16)
    batch = [dataset[i] for i in range(2)]
    video = torch.stack([item["video"] for item in batch])  # uint8, as the data module yields it
    wall_map = torch.stack([item["wall_map"] for item in batch])
    latent = torch.ones(2, 200, dtype=torch.bool)
    latent[:, :36] = False
    signed = video.float() / 127.5 - 1
    metric = RevisitColourError(num_walls=dataset.num_walls, beyond=10)
    metric.update(signed[None], video, wall_map, latent)
    perfect = metric.compute()
    assert perfect["given_pixels"] > 0 and perfect["revisit_pixels"] > perfect["given_pixels"]
    assert all(float(v) == 0 for k, v in perfect.items() if not k.endswith("pixels") and not torch.isnan(v))
    sums, counts = metric.per_video()
    assert sums.shape == counts.shape == (2, 2, len(metric.columns)) and (counts[:, 0].sum(-1) > 0).all()

    frozen = signed[:, 35:36].expand_as(signed).clone()  # the last given frame, forever
    metric.reset()
    metric.update(frozen[None], video, wall_map, latent)
    forgot = metric.compute()
    assert forgot["given_beyond_10"] > 20 and forgot["revisit_beyond_10"] > 20


def test_late_frame_quality_scores_only_the_last_frames() -> None:
    torch.manual_seed(0)
    video = torch.rand(2, 12, 3, 8, 8) * 2 - 1
    latent = torch.ones(2, 12, dtype=torch.bool)
    latent[:, :4] = False
    metric = LateFrameQuality(late=4)
    metric.update(video.expand(2, *video.shape), video, latent)
    exact = metric.compute()
    assert exact["late_crps"] == 0 and torch.isinf(exact["late_psnr"])
    assert torch.equal(late_frames(latent, 4)[0], torch.arange(12) >= 8)

    samples = (video + 0.01 * torch.randn(2, *video.shape)).clamp(-1, 1)
    samples[:, :, 4:8] = torch.rand(2, 2, 4, 3, 8, 8) * 2 - 1  # early generated frames wrong, the last 4 close
    last_four, last_six = LateFrameQuality(late=4), LateFrameQuality(late=6)
    last_four.update(samples, video, latent)
    last_six.update(samples, video, latent)
    four, six = last_four.per_video(), last_six.per_video()
    assert four["late_psnr"].shape == four["late_crps"].shape == (2,)
    assert (four["late_psnr"] > 35).all() and (six["late_psnr"] < four["late_psnr"] - 5).all()
    assert (four["late_crps"] > 0).all() and (six["late_crps"] > 2 * four["late_crps"]).all()


def test_late_psnr_stays_finite_when_one_late_frame_is_exact() -> None:
    """The maze tour repeats, so a frozen frame can equal one late frame exactly: the video's PSNR is that of its
    mean squared error over the late frames, finite, not infinite."""
    torch.manual_seed(0)
    video = torch.rand(1, 8, 3, 8, 8) * 2 - 1
    latent = torch.ones(1, 8, dtype=torch.bool)
    latent[:, :2] = False
    samples = torch.rand(1, 1, 8, 3, 8, 8) * 2 - 1
    samples[0, 0, 6] = video[0, 6]  # one late frame exact
    metric = LateFrameQuality(late=4, crps_estimator="ensemble")
    metric.update(samples, video, latent)
    late = slice(4, 8)
    mse = ((samples[0, 0, late] - video[0, late]) / 2).square().mean()
    assert torch.isclose(metric.compute()["late_psnr"], -10 * torch.log10(mse.double()))


def test_bad_inputs_name_the_problem() -> None:
    video, wall_map, latent = constructed_world()
    with pytest.raises(ValueError, match="num_walls"):
        RevisitColourError(num_walls=3, beyond=3).update(video[None], video, wall_map, latent)
    with pytest.raises(ValueError, match="wall_map"):
        RevisitColourError(num_walls=4, beyond=3).update(video[None], video, wall_map[:, :5], latent)
    with pytest.raises(ValueError, match="lag_edges"):
        RevisitColourError(num_walls=4, beyond=3, lag_edges=(10, 5))
    with pytest.raises(ValueError, match="last 4 frames"):
        LateFrameQuality(late=4).update(video[None].expand(2, -1, -1, -1, -1, -1), video, torch.zeros_like(latent))
