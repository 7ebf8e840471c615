"""The embedded data set: procedurally generated videos of coloured squares that move and bounce off the walls.

Nothing is downloaded. Every video is a deterministic function of (seed, split, index); the three splits draw from
different random streams, so they never share a video. Objects move with constant velocity at sub-pixel precision
(anti-aliased edges) and bounce elastically, so a model that copies the last frame scores clearly worse than one
that predicts the motion.

Items follow the framework's clip layout, shared with the real data sets:
    {"video": float (T, C, H, W) in [-1, 1], "frame_indices": long (T,), "index": long}
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from video_diffusion_lab.datamodules.loaders import ClipDataModule

SPLITS = {"train": 0, "val": 1, "test": 2}


def _coverage(start: np.ndarray, size: float, pixels: int) -> np.ndarray:
    """Fraction of each pixel [p, p+1) covered by the interval [start, start + size), for T starts: (T, pixels)."""
    p = np.arange(pixels)[None, :]
    s = start[:, None]
    return np.clip(np.minimum(s + size, p + 1) - np.maximum(s, p), 0.0, 1.0)


def _bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold free motion back into [low, high]: elastic bounces off both walls."""
    span = high - low
    if span <= 0:
        return np.full_like(position, low)
    u = np.mod(position - low, 2 * span)
    return low + np.where(u > span, 2 * span - u, u)


def _wrap(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold free motion onto the loop [low, high): what leaves at one end comes back, unchanged, at the other."""
    return low + np.mod(position - low, high - low)


MOTIONS = ("bounce", "wrap")


def render_moving_shapes(
    rng: np.random.Generator,
    num_frames: int,
    image_size: int,
    channels: int,
    num_objects: int,
    size_range: tuple[float, float],
    speed_range: tuple[float, float],
    motion: str = "bounce",
    offscreen: float = 0.0,
) -> np.ndarray:
    """A (T, C, H, W) float32 video in [0, 1].

    ``motion="bounce"``: squares bounce off the walls. ``motion="wrap"``: squares move on a loop that runs
    ``offscreen`` pixels beyond the view (x and y in [-size, image_size + offscreen)): a square leaves the view, stays
    out of it for a while and comes back with the same size and colour - long-range memory a model must keep.
    """
    video = np.zeros((num_frames, channels, image_size, image_size), dtype=np.float32)
    steps = np.arange(num_frames, dtype=np.float64)
    for _ in range(num_objects):
        size = rng.uniform(*size_range)
        speed = rng.uniform(*speed_range)
        angle = rng.uniform(0, 2 * np.pi)
        start = rng.uniform(0, image_size - size, size=2)
        if motion == "wrap":
            x = _wrap(start[0] + speed * np.cos(angle) * steps, -size, image_size + offscreen)
            y = _wrap(start[1] + speed * np.sin(angle) * steps, -size, image_size + offscreen)
        else:
            x = _bounce(start[0] + speed * np.cos(angle) * steps, 0.0, image_size - size)
            y = _bounce(start[1] + speed * np.sin(angle) * steps, 0.0, image_size - size)
        shape = _coverage(y, size, image_size)[:, :, None] * _coverage(x, size, image_size)[:, None, :]  # (T, H, W)
        color = rng.uniform(0.4, 1.0, size=channels) if channels > 1 else np.ones(1)
        layer = shape[:, None] * color[None, :, None, None]
        video = np.maximum(video, layer.astype(np.float32))
    return video


class MovingShapesDataset(Dataset):
    def __init__(
        self,
        split: str = "train",
        size: int = 10000,
        num_frames: int = 8,
        image_size: int = 16,
        channels: int = 3,
        num_objects: int = 2,
        size_range: tuple[float, float] = (3.0, 5.0),
        speed_range: tuple[float, float] = (0.5, 1.5),
        seed: int = 0,
        motion: str = "bounce",
        offscreen: float = 0.0,
    ):
        if split not in SPLITS:
            raise ValueError(f"split: unknown split {split!r}; choose one of {tuple(SPLITS)}")
        if channels not in (1, 3):
            raise ValueError(f"channels: the embedded data set renders 1 or 3 channels, got {channels}")
        if not 0 < size_range[0] <= size_range[1] < image_size:
            raise ValueError(f"size_range: object sizes {size_range} must lie in (0, image_size={image_size})")
        if motion not in MOTIONS:
            raise ValueError(f"motion: unknown motion {motion!r}; choose one of {MOTIONS}")
        if offscreen < 0:
            raise ValueError(f"offscreen: must be >= 0, got {offscreen}")
        self.split, self.size, self.seed = split, size, seed
        self.render_args = dict(
            num_frames=num_frames,
            image_size=image_size,
            channels=channels,
            num_objects=num_objects,
            size_range=tuple(size_range),
            speed_range=tuple(speed_range),
        )
        if motion != "bounce":  # the default renders exactly as before
            self.render_args.update(motion=motion, offscreen=offscreen)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        video = render_moving_shapes(rng, **self.render_args)
        num_frames = self.render_args["num_frames"]
        return {
            "video": torch.from_numpy(video) * 2 - 1,
            "frame_indices": torch.arange(num_frames),
            "index": torch.tensor(index),
        }


class MovingShapesDataModule(ClipDataModule):
    """Bouncing squares, ready to train on without any download."""

    def __init__(
        self,
        num_frames: int = 8,
        image_size: int = 16,
        channels: int = 3,
        num_objects: int = 2,
        size_range: tuple[float, float] = (3.0, 5.0),
        speed_range: tuple[float, float] = (0.5, 1.5),
        train_size: int = 10000,
        val_size: int = 64,
        test_size: int = 128,
        predict_size: int = 8,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        motion: str = "bounce",
        offscreen: float = 0.0,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.save_hyperparameters(logger=False)  # logged under "data" by callbacks.RunConfigSaver
        self.num_frames, self.image_size, self.channels = num_frames, image_size, channels
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.predict_size = predict_size
        self.dataset_args = dict(
            num_frames=num_frames,
            image_size=image_size,
            channels=channels,
            num_objects=num_objects,
            size_range=size_range,
            speed_range=speed_range,
            seed=seed,
            motion=motion,
            offscreen=offscreen,
        )

    def dataset(self, split: str) -> MovingShapesDataset:
        return MovingShapesDataset(split, self.sizes[split], **self.dataset_args)

    def predict_dataset(self) -> MovingShapesDataset:
        """The first ``predict_size`` test clips."""
        return MovingShapesDataset("test", min(self.predict_size, self.sizes["test"]), **self.dataset_args)
