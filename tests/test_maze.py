"""The embedded maze world: determinism, the camera's tour, the ground truth of every frame (which wall each pixel
shows, in its colour; revisits with their lags), the data module's batches and `vdiff fit` on experiments/fdm_maze.yaml.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

from tests.tiny_run import REPO, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.datamodules.maze import (
    MOVE_FRAMES,
    PALETTE,
    MazeDataModule,
    MazeDataset,
    camera_path,
    carve_maze,
)
from video_diffusion_lab.metrics.revisit import revisit_lags, wall_pixels

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = dict(size=6, video_length=120, image_size=16)


def test_same_seed_same_video_other_seeds_other_colours() -> None:
    a, b = MazeDataset("test", seed=3, **SMALL), MazeDataset("test", seed=3, **SMALL)
    for index in (0, 5):
        first, again = a[index], b[index]
        assert first.keys() == again.keys()
        assert all(torch.equal(first[k], again[k]) for k in first)
    other_seed = MazeDataset("test", seed=4, **SMALL).render(0)
    other_index, other_split = a.render(1), MazeDataset("val", seed=3, **SMALL).render(0)
    mine = a.render(0)
    for other in (other_seed, other_index, other_split):
        assert not np.array_equal(mine.colours, other.colours)
        assert not np.array_equal(mine.frames, other.frames)


def test_a_window_is_the_same_frames_as_the_whole_video() -> None:
    dataset = MazeDataset("train", **SMALL)
    whole, window = dataset.render(2), dataset.render(2, first_frame=37, num_frames=20)
    assert np.array_equal(window.frames, whole.frames[37:57])
    assert np.array_equal(window.wall_map, whole.wall_map[37:57])


def test_the_maze_is_a_tree_and_the_tour_walks_every_corridor_out_and_back() -> None:
    rng = np.random.default_rng(0)
    cells = 4
    solid, tour = carve_maze(rng, cells)
    grid = 2 * cells + 1
    assert solid[0].all() and solid[-1].all() and solid[:, 0].all() and solid[:, -1].all()  # closed outer wall
    assert not solid[1::2, 1::2].any()  # every cell is open
    open_walls = int((~solid).sum()) - cells * cells
    assert open_walls == cells * cells - 1  # a spanning tree: cells - 1 corridors
    assert tour[0] == tour[-1] and len(tour) == 2 * (cells * cells - 1) + 1
    steps = [tuple(sorted((a, b))) for a, b in zip(tour, tour[1:], strict=False)]
    assert all(steps.count(step) == 2 for step in steps)  # each corridor once out, once back
    for (x0, y0), (x1, y1) in zip(tour, tour[1:], strict=False):
        assert abs(x1 - x0) + abs(y1 - y0) == 2 and not solid[(y0 + y1) // 2, (x0 + x1) // 2]
    assert grid == solid.shape[0]


def test_the_camera_is_a_known_function_of_time_and_stays_in_corridors() -> None:
    solid, tour = carve_maze(np.random.default_rng(1), 3)
    position, heading = camera_path(tour, 400)
    assert position.shape == (400, 2) and heading.shape == (400,)
    np.testing.assert_allclose(position[0], np.array(tour[0]) + 0.5)
    cells = np.floor(position).astype(int)
    assert not solid[cells[:, 1], cells[:, 0]].any()
    speed = np.linalg.norm(np.diff(position, axis=0), axis=1)
    assert np.all((np.isclose(speed, 0)) | np.isclose(speed, 2 / MOVE_FRAMES))  # walks at one speed or turns
    # Walking: the camera moves where it faces.
    moving = ~np.isclose(speed, 0)
    direction = np.stack([np.cos(heading[1:]), np.sin(heading[1:])], axis=1)[moving]
    np.testing.assert_allclose(np.diff(position, axis=0)[moving] / speed[moving, None], direction, atol=1e-9)
    # After a whole tour it comes back to where it started (and starts it again).
    again, _ = camera_path(tour, 2000)
    assert any(np.allclose(p, again[0]) for p in again[1:])


def test_the_camera_speed_is_a_setting_of_the_world() -> None:
    _, tour = carve_maze(np.random.default_rng(1), 3)
    position, heading = camera_path(tour, 1200, cell_frames=24, turn_frames=18)
    speed = np.linalg.norm(np.diff(position, axis=0), axis=1)
    assert np.all(np.isclose(speed, 0) | np.isclose(speed, 2 / 24))  # walks 2 blocks in 24 frames
    turn = np.abs(np.diff(heading))
    assert np.all(np.isclose(turn, 0) | np.isclose(turn, np.pi / 2 / 18))  # turns a quarter in 18 frames
    # The same tour: the slow camera passes the same cells in the same order, only later.
    fast, _ = camera_path(tour, 400)

    def cells_in_order(path: np.ndarray) -> list[tuple[int, int]]:
        cells = [tuple(c) for c in np.floor(path).astype(int)]
        return [c for i, c in enumerate(cells) if i == 0 or c != cells[i - 1]]

    assert cells_in_order(position)[:20] == cells_in_order(fast)[:20]
    # The data set renders that path (video 0 of the test split is drawn from (seed 0, split 2, index 0)).
    world = MazeDataset("test", 1, video_length=40, image_size=8, maze_cells=2, cell_frames=24, turn_frames=18)
    _, small_tour = carve_maze(np.random.default_rng([0, 2, 0]), 2)
    np.testing.assert_allclose(world.render(0).position, camera_path(small_tour, 40, 24, 18)[0], atol=1e-6)


def test_every_wall_pixel_shows_its_walls_colour_shaded_and_floor_and_ceiling_are_grey() -> None:
    video = MazeDataset("test", **SMALL).render(0)
    frames = video.frames.astype(np.float64)  # (T, H, W, 3)
    wall = video.wall_map >= 0
    assert wall.any() and (~wall).any()
    colour = video.colours[video.wall_map.clip(min=0)].astype(np.float64)  # the block's own colour per pixel
    assert np.array_equal(video.colours[video.wall_id], video.wall_colour)
    assert np.array_equal(video.wall_map[:, video.frames.shape[1] // 2], video.wall_id)  # the horizon sees the wall
    # Shading scales a colour: the pixel's hue is the wall's (up to rounding to uint8).
    cosine = (frames * colour).sum(-1) / (np.linalg.norm(frames, axis=-1) * np.linalg.norm(colour, axis=-1) + 1e-9)
    assert cosine[wall].min() > 0.99
    # Each wall pixel's hue is nearest to its own palette colour among all of them.
    unit = PALETTE / np.linalg.norm(PALETTE, axis=1, keepdims=True)
    nearest = np.argmax(frames[wall] @ unit.T, axis=1)
    own = np.argmax(colour[wall] @ unit.T, axis=1)
    assert np.array_equal(nearest, own)
    rest = frames[~wall]
    assert np.all(rest.max(-1) - rest.min(-1) == 0)  # floor and ceiling are grey


def test_a_wall_seen_at_s_and_again_at_t_is_a_revisit_with_lag_t_minus_s() -> None:
    dataset = MazeDataset("test", video_length=300, image_size=16)
    video = dataset.render(1)
    wall_map = torch.from_numpy(video.wall_map)[None]
    visible = wall_pixels(wall_map, len(video.colours)) > 0  # (1, T, N)
    observed = torch.zeros(1, 300, dtype=torch.bool)
    observed[:, :36] = True
    lag, given_only = revisit_lags(visible, observed)
    seen = visible[0].numpy()
    checked = 0
    for wall in np.flatnonzero(seen.any(0)):
        frames = np.flatnonzero(seen[:, wall])
        gaps = np.flatnonzero(np.diff(frames) > 1)
        for g in gaps:  # seen at s, out of view in between, seen again at t
            s, t = frames[g], frames[g + 1]
            assert lag[0, t, wall] == t - s
            assert bool(given_only[0, t, wall]) == bool(frames[0] < 36 and s < 36)
            checked += 1
        assert lag[0, frames[0], wall] == -1  # the first sighting is not a revisit
        assert (lag[0, frames[1:], wall] >= 1).all()
    assert lag[0][~visible[0]].eq(-1).all()
    assert checked > 10  # the tour brings many walls back into view
    long_lags = [int(lag[0, t, w]) for t, w in zip(*np.nonzero(lag[0].numpy() > 50), strict=False)]
    assert long_lags, "some walls come back after more than 50 frames"


def test_the_data_module_yields_the_clip_layout_with_ground_truth() -> None:
    data = MazeDataModule(video_length=40, num_frames=12, image_size=16, train_size=4, test_size=2, batch_size=2)
    train = next(iter(data.train_dataloader()))
    assert train["video"].shape == (2, 12, 3, 16, 16) and train["video"].dtype == torch.uint8
    assert train["frame_indices"].shape == (2, 12) and train["index"].shape == (2,)
    starts = train["frame_indices"][:, 0]
    assert torch.equal(train["frame_indices"], starts[:, None] + torch.arange(12))
    assert "wall_map" not in train  # training clips carry no ground truth by default
    test = default_collate([data.dataset("test")[i] for i in range(2)])
    assert test["video"].shape == (2, 40, 3, 16, 16)
    assert torch.equal(test["frame_indices"], torch.arange(40).expand(2, 40))
    expected = {
        "position": ((2, 40, 2), torch.float32),
        "heading": ((2, 40), torch.float32),
        "wall_id": ((2, 40, 16), torch.int64),
        "wall_colour": ((2, 40, 16, 3), torch.uint8),
        "wall_distance": ((2, 40, 16), torch.float32),
        "wall_map": ((2, 40, 16, 16), torch.int16),
    }
    for key, (shape, dtype) in expected.items():
        assert test[key].shape == shape and test[key].dtype == dtype, key
    # On the accelerator the frames become float in [-1, 1], exactly.
    moved = data.on_after_batch_transfer(test, 0)
    assert moved["video"].dtype == torch.float32
    assert torch.equal(moved["video"], test["video"].float() / 127.5 - 1)


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        MazeDataModule(video_length=10, num_frames=11)
    with pytest.raises(ValueError, match="maze_cells"):
        MazeDataModule(maze_cells=1)
    with pytest.raises(ValueError, match="cell_frames"):
        MazeDataModule(cell_frames=0)
    with pytest.raises(ValueError, match="turn_frames"):
        MazeDataset("test", turn_frames=0)
    with pytest.raises(ValueError, match="channels"):
        MazeDataModule(channels=1)
    with pytest.raises(ValueError, match="split"):
        MazeDataset("holdout")


def test_the_shipped_config_builds_for_300_frame_videos_with_every_scheme() -> None:
    config = REPO / "experiments" / "fdm_maze.yaml"
    cli = vdiff.run(["--config", str(config), "--trainer.logger", "false"], subcommand=False)
    model, data = cli.model, cli.datamodule
    assert isinstance(data, MazeDataModule)
    assert model.video_length == 300 == data.dataset("test").video_length
    assert model.task.num_given == 36
    shipped = yaml.safe_load(config.read_text())["model"]["init_args"]["rollout"]["scheme"]
    assert model.rollout_config.scheme == shipped
    for scheme in ("autoreg", "long_range", "hierarchy_2", "hierarchy_3", "adaptive_autoreg", "adaptive_hierarchy_2"):
        built = vdiff.run(
            ["--config", str(config), "--trainer.logger", "false", f"--model.init_args.rollout.scheme={scheme}"],
            subcommand=False,
        ).model
        stages = built.video_sampler().stages(300, 36)
        latent = sorted(i for stage in stages for i in stage.latent)
        assert latent == list(range(36, 300)), scheme  # every generated frame exactly once


def test_vdiff_fit_on_the_maze_config_trains_and_checkpoints(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, method="maze", trainer={"max_steps": 2})
    vdiff.run(["fit", "--config", str(config)])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert (tmp_path / "config_fit.yaml").exists()


MAZE_CONFIGS = ["fdm_maze.yaml", "ramvid_maze.yaml", "rvd_maze.yaml", "vdm_maze.yaml"]


def test_every_method_has_a_maze_config_on_the_same_test_videos() -> None:
    assert sorted(path.name for path in (REPO / "experiments").glob("*_maze.yaml")) == MAZE_CONFIGS
    reference = None
    for name in MAZE_CONFIGS:
        cli = vdiff.run(["--config", str(REPO / "experiments" / name), "--trainer.logger", "false"], subcommand=False)
        model, data = cli.model, cli.datamodule
        assert (model.video_length, model.task.num_given) == (300, 36), name
        data.setup("test")
        test = data.dataset("test")
        first = (len(test), test[0]["video"], test[31]["video"])
        if reference is None:
            reference = first
        assert first[0] == reference[0] == 32 and torch.equal(first[1], reference[1]), name
        assert torch.equal(first[2], reference[2]), name


@pytest.mark.parametrize("name", MAZE_CONFIGS[1:])
def test_the_other_methods_maze_configs_fit_with_their_logger(name: str, tmp_path: Path) -> None:
    import wandb

    try:
        vdiff.run(
            [
                "fit",
                "--config",
                str(REPO / "experiments" / name),
                "--trainer.default_root_dir",
                str(tmp_path),
                "--trainer.max_steps",
                "2",
                "--trainer.enable_progress_bar",
                "false",
                "--data.init_args.train_size",
                "16",
            ]
        )
    finally:
        wandb.finish()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert list(tmp_path.glob("wandb/offline-run-*")), "the configured W&B logger wrote no run"
