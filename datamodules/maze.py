"""The embedded maze world: first-person videos of a camera that walks through a procedurally generated maze and
comes back, with the ground truth of every frame. A long-video test bed in the manner of GQN-Mazes that needs no
download: remembering a wall's colour after looking away from it is what it measures.

The world of one video (all drawn from ``numpy.random.default_rng([seed, split, index])``):
- a perfect maze of ``maze_cells`` x ``maze_cells`` cells on a grid of (2 * maze_cells + 1)^2 blocks (cells at odd
  coordinates, walls between them, carved by a randomised depth-first search from a random start cell);
- every solid block has a colour drawn from ``PALETTE`` (well separated hues); floor and ceiling are fixed greys;
- the camera walks the depth-first tour of the maze (every corridor out and back, ending where it started) at a
  constant speed (``cell_frames`` frames per cell, ``turn_frames`` per quarter turn, turning on the spot) and starts
  the tour again when it ends. Position and heading are therefore a known function of time, every corridor is seen
  again on the way back (lags from a few frames to a whole tour), and walls not yet seen are uncertain.

Frames are ray cast (DDA over the block grid, vectorised over frames and pixel columns): walls are shaded by the
side they face and by distance (fog), floor and ceiling by the distance of each row, so the frames carry depth cues.
A block's id is its flat grid index ``row * grid + column``.

Items follow the framework's clip layout, with the video as uint8 (converted to [-1, 1] on the accelerator, as the
real data sets do; FDM converts only the frames a training pass picks):
    {"video": uint8 (T, 3, S, S), "frame_indices": long (T,), "index": long,
     and, with ``ground_truth``: "position": float32 (T, 2) (x, y in blocks), "heading": float32 (T,) (radians in
     [0, 2 pi), 0 = +x, pi / 2 = +y), "wall_id": long (T, S) (the block each pixel column sees), "wall_colour":
     uint8 (T, S, 3) (that block's unshaded colour), "wall_distance": float32 (T, S) (perpendicular distance in
     blocks), "wall_map": int16 (T, S, S) (the block id of every pixel, -1 on floor and ceiling)}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from video_diffusion_lab.datamodules.loaders import ClipDataModule
from video_diffusion_lab.datamodules.video_index import unit_range_after_transfer, window_start

SPLITS = {"train": 0, "val": 1, "test": 2}

# Wall colours (RGB): eight hues far apart from each other and from the greys of floor and ceiling.
PALETTE = np.array(
    [
        (230, 25, 75),  # red
        (60, 180, 75),  # green
        (255, 225, 25),  # yellow
        (0, 130, 200),  # blue
        (245, 130, 48),  # orange
        (145, 30, 180),  # purple
        (70, 240, 240),  # cyan
        (240, 50, 230),  # magenta
    ],
    dtype=np.float64,
)
FLOOR = np.array((110.0, 110.0, 110.0))
CEILING = np.array((200.0, 200.0, 200.0))
FIELD_OF_VIEW = np.deg2rad(66.0)  # horizontal
FOG = 0.12  # brightness exp(-FOG * distance in blocks)
SIDE_SHADE = 0.7  # walls that face north or south are darker than those that face east or west
MOVE_FRAMES = 8  # default cell_frames: frames to walk from one cell to the next (two blocks)
TURN_FRAMES = 6  # default turn_frames: frames per quarter turn on the spot

# Headings of the four grid directions (x to the right, y down the rows): east, south, west, north.
DIRECTIONS = {(1, 0): 0.0, (0, 1): np.pi / 2, (-1, 0): np.pi, (0, -1): 3 * np.pi / 2}
# A change of heading by k quarter turns (mod 4): the angle turned (the shorter way; a half turn always the same way)
# and how many quarter turns of time it takes.
TURNS = {0: (0.0, 0), 1: (np.pi / 2, 1), 2: (np.pi, 2), 3: (-np.pi / 2, 1)}


# ------------------------------------------------------------------------------------------------------------ the maze
def carve_maze(rng: np.random.Generator, cells: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A perfect maze by randomised depth-first search from a random cell.

    Returns ``solid`` (G, G) bool with G = 2 * cells + 1 (True = wall block; cells at odd (row, column)) and the
    search's tour: the cells in the order the search walks them, (x, y) block coordinates, every corridor once out and
    once back, starting and ending at the start cell."""
    if cells < 2:
        raise ValueError(f"maze_cells: a maze needs at least 2 x 2 cells, got {cells}")
    grid = 2 * cells + 1
    solid = np.ones((grid, grid), dtype=bool)
    start = (int(rng.integers(cells)), int(rng.integers(cells)))
    visited = {start}
    stack, tour = [start], [start]
    solid[2 * start[1] + 1, 2 * start[0] + 1] = False
    while stack:
        x, y = stack[-1]
        options = [
            (x + dx, y + dy)
            for dx, dy in DIRECTIONS
            if 0 <= x + dx < cells and 0 <= y + dy < cells and (x + dx, y + dy) not in visited
        ]
        if options:
            nx, ny = options[int(rng.integers(len(options)))]
            solid[2 * ny + 1, 2 * nx + 1] = False
            solid[y + ny + 1, x + nx + 1] = False  # the wall block between the two cells
            visited.add((nx, ny))
            stack.append((nx, ny))
            tour.append((nx, ny))
        else:
            stack.pop()
            if stack:
                tour.append(stack[-1])
    return solid, [(2 * x + 1, 2 * y + 1) for x, y in tour]


def camera_path(
    tour: list[tuple[int, int]], num_frames: int, cell_frames: int = MOVE_FRAMES, turn_frames: int = TURN_FRAMES
) -> tuple[np.ndarray, np.ndarray]:
    """Position (T, 2) and unwrapped heading (T,) of a camera that walks ``tour`` (block coordinates of consecutive
    cells) again and again: a turn on the spot towards the next cell (``turn_frames`` per quarter turn, the shorter
    way), then ``cell_frames`` frames of straight walking. Frame 0 stands at the first cell facing the second."""
    moves = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(tour, tour[1:], strict=False)]
    if not moves:
        raise ValueError("camera_path: the tour needs at least two cells")
    position = np.array(tour[0], dtype=np.float64) + 0.5
    heading = DIRECTIONS[(int(np.sign(moves[0][0])), int(np.sign(moves[0][1])))]
    positions, headings = [position.copy()], [heading]
    step = 0
    while len(positions) < num_frames:
        dx, dy = moves[step % len(moves)]
        target = DIRECTIONS[(int(np.sign(dx)), int(np.sign(dy)))]
        turn, quarters = TURNS[int(round(((target - heading) % (2 * np.pi)) / (np.pi / 2))) % 4]
        frames = quarters * turn_frames
        for f in range(1, frames + 1):
            positions.append(position.copy())
            headings.append(heading + turn * f / frames)
        heading += turn
        start = position.copy()
        for f in range(1, cell_frames + 1):
            position = start + np.array((dx, dy), dtype=np.float64) * f / cell_frames
            positions.append(position.copy())
            headings.append(heading)
        step += 1
    return np.stack(positions[:num_frames]), np.array(headings[:num_frames])


# ----------------------------------------------------------------------------------------------------- ray casting
def cast_rays(
    solid: np.ndarray, positions: np.ndarray, headings: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DDA ray casting from every camera pose (T of them) through ``width`` pixel columns at once.

    Returns the block each ray hits (T, W) as (row, column) flat ids, the perpendicular distance to it (T, W) (no
    fish-eye) and whether the face hit is a north or south face (T, W) bool."""
    grid = solid.shape[0]
    plane = np.tan(FIELD_OF_VIEW / 2)
    screen = (2 * (np.arange(width) + 0.5) / width - 1) * plane  # from left (-) to right (+)
    cos, sin = np.cos(headings)[:, None], np.sin(headings)[:, None]
    # Direction = forward + screen * right, where right = (-sin, cos) in x-right, y-down coordinates.
    ray_x = cos - screen[None] * sin
    ray_y = sin + screen[None] * cos
    pos_x = np.broadcast_to(positions[:, 0:1], ray_x.shape)
    pos_y = np.broadcast_to(positions[:, 1:2], ray_y.shape)
    cell_x, cell_y = np.floor(pos_x).astype(np.int64), np.floor(pos_y).astype(np.int64)
    with np.errstate(divide="ignore"):
        delta_x = np.where(ray_x == 0, np.inf, np.abs(1 / ray_x))
        delta_y = np.where(ray_y == 0, np.inf, np.abs(1 / ray_y))
    step_x, step_y = np.where(ray_x < 0, -1, 1), np.where(ray_y < 0, -1, 1)
    next_x = np.where(ray_x < 0, pos_x - cell_x, cell_x + 1 - pos_x) * delta_x
    next_y = np.where(ray_y < 0, pos_y - cell_y, cell_y + 1 - pos_y) * delta_y
    hit = np.zeros(ray_x.shape, dtype=bool)
    horizontal = np.zeros(ray_x.shape, dtype=bool)
    distance = np.zeros(ray_x.shape)
    for _ in range(2 * grid + 2):  # a ray crosses at most 2 * grid block borders before the outer wall
        if hit.all():
            break
        go_x = ~hit & (next_x < next_y)
        go_y = ~hit & ~go_x
        distance = np.where(go_x, next_x, np.where(go_y, next_y, distance))
        cell_x = np.where(go_x, cell_x + step_x, cell_x)
        cell_y = np.where(go_y, cell_y + step_y, cell_y)
        next_x = np.where(go_x, next_x + delta_x, next_x)
        next_y = np.where(go_y, next_y + delta_y, next_y)
        horizontal = np.where(go_x | go_y, go_y, horizontal)
        inside = (cell_x >= 0) & (cell_x < grid) & (cell_y >= 0) & (cell_y < grid)
        hit |= ~inside | solid[cell_y.clip(0, grid - 1), cell_x.clip(0, grid - 1)]
    if not hit.all():
        raise RuntimeError("cast_rays: a ray left the maze without hitting a wall (the outer wall is missing)")
    return cell_y * grid + cell_x, distance, horizontal


def quantise(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb).clip(0, 255).astype(np.uint8)


@dataclass(frozen=True)
class MazeVideo:
    """One rendered video and its ground truth (numpy arrays; see the module docstring for the layouts)."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    position: np.ndarray
    heading: np.ndarray
    wall_id: np.ndarray
    wall_colour: np.ndarray
    wall_distance: np.ndarray
    wall_map: np.ndarray
    solid: np.ndarray  # (G, G) bool, the maze
    colours: np.ndarray  # uint8 (G * G, 3): the colour of every block (open blocks black)


def render_maze_video(
    rng: np.random.Generator,
    num_frames: int,
    image_size: int,
    maze_cells: int,
    first_frame: int = 0,
    cell_frames: int = MOVE_FRAMES,
    turn_frames: int = TURN_FRAMES,
) -> MazeVideo:
    """Frames ``first_frame .. first_frame + num_frames - 1`` of the video that ``rng`` draws (the maze, its colours
    and the camera's tour depend only on the generator's state, never on which frames are rendered)."""
    solid, tour = carve_maze(rng, maze_cells)
    grid = solid.shape[0]
    colours = np.where(solid.reshape(-1, 1), PALETTE[rng.integers(len(PALETTE), size=grid * grid)], 0.0)
    position, heading = camera_path(tour, first_frame + num_frames, cell_frames, turn_frames)
    position, heading = position[first_frame:], heading[first_frame:]
    wall_id, distance, horizontal = cast_rays(solid, position, heading, image_size)

    # Wall shading by side and distance; rows above / below the wall are ceiling / floor shaded by their distance.
    shade = np.exp(-FOG * distance) * np.where(horizontal, SIDE_SHADE, 1.0)  # (T, W)
    wall_rgb = quantise(colours[wall_id] * shade[..., None])  # (T, W, 3)
    row = np.arange(image_size) + 0.5 - image_size / 2  # pixel centres relative to the horizon
    half_height = image_size / (2 * np.maximum(distance, 1e-6))  # (T, W): half the wall's height in pixels
    is_wall = np.abs(row)[None, :, None] < half_height[:, None, :]  # (T, H, W)
    row_distance = image_size / (2 * np.abs(row))  # floor / ceiling distance seen by each row
    surface = quantise(np.where((row > 0)[:, None], FLOOR, CEILING) * np.exp(-FOG * row_distance)[:, None])  # (H, 3)
    return MazeVideo(
        frames=np.where(is_wall[..., None], wall_rgb[:, None], surface[None, :, None]),
        position=position.astype(np.float32),
        heading=np.mod(heading, 2 * np.pi).astype(np.float32),
        wall_id=wall_id,
        wall_colour=colours[wall_id].astype(np.uint8),
        wall_distance=distance.astype(np.float32),
        wall_map=np.where(is_wall, wall_id[:, None, :], -1).astype(np.int16),
        solid=solid,
        colours=colours.astype(np.uint8),
    )


# ---------------------------------------------------------------------------------------------------- the data set
class MazeDataset(Dataset):
    """Videos of ``video_length`` frames; item ``index`` of ``split`` is drawn from (seed, split, index).

    ``num_frames`` (None = the whole video) frames are returned: a random window when ``random_window`` (training
    clips for models of a fixed clip length), else the first ones. ``ground_truth`` adds the per-frame ground truth."""

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        video_length: int = 300,
        num_frames: int | None = None,
        image_size: int = 32,
        maze_cells: int = 3,
        seed: int = 0,
        random_window: bool = False,
        ground_truth: bool = True,
        cell_frames: int = MOVE_FRAMES,
        turn_frames: int = TURN_FRAMES,
    ):
        if split not in SPLITS:
            raise ValueError(f"split: unknown split {split!r}; choose one of {tuple(SPLITS)}")
        if video_length < 1:
            raise ValueError(f"video_length: must be >= 1, got {video_length}")
        if num_frames is not None and not 1 <= num_frames <= video_length:
            raise ValueError(f"num_frames: must be in [1, video_length={video_length}] or null, got {num_frames}")
        if image_size < 4:
            raise ValueError(f"image_size: must be >= 4, got {image_size}")
        if maze_cells < 2:
            raise ValueError(f"maze_cells: a maze needs at least 2 x 2 cells, got {maze_cells}")
        for name, value in (("cell_frames", cell_frames), ("turn_frames", turn_frames)):
            if value < 1:
                raise ValueError(f"{name}: the camera needs at least 1 frame per step, got {value}")
        self.cell_frames, self.turn_frames = cell_frames, turn_frames
        self.split, self.size, self.seed = split, size, seed
        self.video_length, self.num_frames = video_length, num_frames or video_length
        self.image_size, self.maze_cells = image_size, maze_cells
        self.random_window, self.ground_truth = random_window, ground_truth

    def __len__(self) -> int:
        return self.size

    @property
    def num_walls(self) -> int:
        """Block ids run from 0 to num_walls - 1 (every block of the grid, open or solid)."""
        return (2 * self.maze_cells + 1) ** 2

    def render(self, index: int, first_frame: int = 0, num_frames: int | None = None) -> MazeVideo:
        """Frames of video ``index`` (all of them by default) with their ground truth."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        count = self.video_length - first_frame if num_frames is None else num_frames
        return render_maze_video(
            rng, count, self.image_size, self.maze_cells, first_frame, self.cell_frames, self.turn_frames
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # The torch RNG draws the window: the training loader seeds it per (seed, epoch, clip).
        start = window_start(self.video_length, self.num_frames, random=self.random_window)
        video = self.render(index, start, self.num_frames)
        item = {
            "video": torch.from_numpy(video.frames).permute(0, 3, 1, 2).contiguous(),
            "frame_indices": torch.arange(start, start + self.num_frames),
            "index": torch.tensor(index),
        }
        if self.ground_truth:
            item.update(
                position=torch.from_numpy(video.position),
                heading=torch.from_numpy(video.heading),
                wall_id=torch.from_numpy(video.wall_id),
                wall_colour=torch.from_numpy(video.wall_colour),
                wall_distance=torch.from_numpy(video.wall_distance),
                wall_map=torch.from_numpy(video.wall_map),
            )
        return item


class MazeDataModule(ClipDataModule):
    """First-person maze videos, rendered on the fly (no download, no cache: rendering is far faster than training).

    Training clips: ``num_frames`` frames (None = whole videos, what FDM trains on; a number = a random window, for
    models of a fixed clip length), without the ground truth unless ``train_ground_truth``. Validation, test and
    predict: whole videos of ``video_length`` frames with their ground truth."""

    def __init__(
        self,
        video_length: int = 300,
        num_frames: int | None = None,
        image_size: int = 32,
        channels: int = 3,
        maze_cells: int = 3,
        # the camera's speed: frames to walk one cell, frames per quarter turn
        cell_frames: int = MOVE_FRAMES,
        turn_frames: int = TURN_FRAMES,
        train_size: int = 10000,
        val_size: int = 4,
        test_size: int = 32,
        predict_size: int = 4,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        train_ground_truth: bool = False,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.save_hyperparameters(logger=False)  # logged under "data" by callbacks.RunConfigSaver
        if channels != 3:
            raise ValueError(f"channels: the maze world renders RGB frames (3 channels), got {channels}")
        # None: whole videos; the model check then compares only what the model is built for (FDM).
        self.num_frames = num_frames or video_length
        self.image_size, self.channels = image_size, channels
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.predict_size, self.train_ground_truth = predict_size, train_ground_truth
        self.world = dict(
            video_length=video_length,
            image_size=image_size,
            maze_cells=maze_cells,
            seed=seed,
            cell_frames=cell_frames,
            turn_frames=turn_frames,
        )
        self.dataset("train")  # argument errors now, not when the first loader is built

    def dataset(self, split: str) -> MazeDataset:
        if split == "train":
            return MazeDataset(
                split,
                self.sizes[split],
                num_frames=self.num_frames,
                random_window=True,
                ground_truth=self.train_ground_truth,
                **self.world,
            )
        return MazeDataset(split, self.sizes[split], **self.world)

    def predict_dataset(self) -> MazeDataset:
        """The first ``predict_size`` test videos."""
        return MazeDataset("test", min(self.predict_size, self.sizes["test"]), **self.world)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 "video" -> float in [-1, 1] on the accelerator (FDM keeps whole training videos as uint8)."""
        return unit_range_after_transfer(self.trainer, batch)
