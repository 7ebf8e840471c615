"""CARLA Town01 ("no-traffic"), as released with FDM (Harvey et al. 2022, plai-group/flexible-video-diffusion-modeling).

Layout of the extracted ``no-traffic.tar.gz``: one folder with ``video_<i>.pt`` (a uint8 tensor (T=1000, 128, 128, 3)),
``coords_<i>.npy`` (per-frame position of the car; the first two columns are the map x, y) and the split lists
``video_train.csv`` / ``video_test.csv`` (header ``,path``; rows ``<n>,<path ending in video_<i>.pt>``, written on the
authors' machine, so only the file name is used). ``root`` may also be the folder above ``no-traffic/``.

Clips: ``num_frames`` frames every ``frame_stride`` (``num_frames=None``: the whole video, as FDM trains, choosing
its frames itself), a random start in training and frame 0 in val/test. The data set yields the frames as uint8
(T, 3, S, S) (a whole video: 49 MB, not a 196 MB float clip, through the loader workers); the data module turns
"video" into float in [-1, 1] after the batch reaches the model's device (``on_after_batch_transfer``), so the
model sees what every other data module gives it. With ``return_coords``, ``"coords"`` (T, 2)
holds x, y of exactly the returned frames. Videos are memory-mapped, so a short clip reads only its own frames.
FDM has no validation split: ``val_size`` > 0 carves one from train with a fixed seed; 0 (default) validates on test.
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import Dataset

from video_diffusion_lab.datamodules.video_index import (
    RealDataModule,
    SkipLog,
    carve_validation,
    load_or_substitute,
    resize_uint8,
    unit_range_after_transfer,
    window_start,
)

READ_ERRORS = (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, IndexError)
HOW_TO_GET = (
    "CARLA Town01 is FDM's release: `wget https://www.cs.ubc.ca/~wsgh/fdm/carla/no-traffic.tar.gz && tar -xzf "
    "no-traffic.tar.gz` (datasets/carla/download.sh in plai-group/flexible-video-diffusion-modeling); root is the "
    "extracted no-traffic/ folder with video_<i>.pt, coords_<i>.npy, video_train.csv and video_test.csv."
)


def read_split_list(csv_path: Path) -> list[str]:
    """File names (video_<i>.pt) listed in a split CSV; the directories in it belong to another machine."""
    with open(csv_path, newline="") as file:
        rows = list(csv.reader(file))
    return [Path(row[-1]).name for row in rows[1:] if row and row[-1].endswith(".pt")]


def coords_name(video_name: str) -> str:
    return video_name.replace("video_", "coords_", 1)[: -len(".pt")] + ".npy"


def load_video(path: Path) -> torch.Tensor:
    """uint8 (T, H, W, 3), memory-mapped where the file allows (zip format), so slicing reads only those frames."""
    try:
        video = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        video = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) file
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(
            f"expected a uint8 (T, H, W, 3) tensor, got {type(video).__name__} {tuple(getattr(video, 'shape', ()))}"
        )
    return video


class CARLADataset(Dataset):
    """One clip per video: {"video": uint8 (T, 3, S, S), "frame_indices": (T,), "coords": (T, 2), ...}."""

    read_errors = READ_ERRORS

    def __init__(
        self,
        root: str | Path,
        names: list[str],
        num_frames: int | None = None,
        image_size: int = 128,
        frame_stride: int = 1,
        train: bool = False,
        return_coords: bool = True,
        skip_log: SkipLog | None = None,
    ):
        self.root, self.names = Path(root), names
        self.num_frames, self.image_size, self.frame_stride = num_frames, image_size, frame_stride
        self.train, self.return_coords = train, return_coords
        self.skip_log = skip_log or SkipLog(None)

    def __len__(self) -> int:
        return len(self.names)

    def positions(self, available: int) -> range:
        count = self.num_frames or (available - 1) // self.frame_stride + 1
        span = (count - 1) * self.frame_stride + 1
        start = window_start(available, span, random=self.train)
        return range(start, start + span, self.frame_stride)

    def describe(self, index: int) -> str:
        return str(self.root / self.names[index])

    def read(self, index: int, choose: Callable[[int], range]) -> dict[str, torch.Tensor]:
        """The video's reader: uint8 "frames" (T, H, W, 3) at ``choose(number of frames)`` (evenly spaced),
        their "frame_indices" and, with ``return_coords``, "coords" (T, 2)."""
        name = self.names[index]
        video = load_video(self.root / name)
        positions = choose(video.shape[0])
        # A strided slice of the memory map, not fancy indexing: no intermediate copy of the frames.
        item = {
            "frames": video[positions.start : positions.stop : positions.step],
            "frame_indices": torch.arange(positions.start, positions.stop, positions.step),
        }
        if self.return_coords:
            coords = np.load(self.root / coords_name(name), mmap_mode="r")
            if coords.shape[0] != video.shape[0]:
                raise ValueError(f"{coords_name(name)} has {coords.shape[0]} rows for {video.shape[0]} frames")
            item["coords"] = torch.from_numpy(
                np.asarray(coords[positions.start : positions.stop : positions.step, :2], dtype=np.float32)
            )
        return item

    def load(self, index: int) -> dict[str, torch.Tensor]:
        item = self.read(index, self.positions)
        return {"video": resize_uint8(item.pop("frames"), self.image_size), **item}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return load_or_substitute(len(self), index, self.load, self.describe, READ_ERRORS, self.skip_log)


class CARLADataModule(RealDataModule):
    """CARLA Town01 driving videos (128x128, 1000 frames) with the car's map coordinates."""

    cache_name = "carla"
    how_to_get = HOW_TO_GET

    def __init__(
        self,
        root: str,
        num_frames: int | None = None,
        image_size: int = 128,
        frame_stride: int = 1,
        eval_num_frames: int | None = None,
        return_coords: bool = True,
        val_size: int = 0,
        seed: int = 0,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        cache_dir: str | None = None,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, cache_dir)
        self.save_hyperparameters(logger=False)  # logged under "data" by callbacks.RunConfigSaver
        if num_frames is not None and num_frames < 1 or frame_stride < 1:
            raise ValueError(f"num_frames (or None) and frame_stride must be >= 1, got {num_frames}, {frame_stride}")
        root_path = Path(root).expanduser()
        nested = root_path / "no-traffic"
        self.root = nested if not (root_path / "video_train.csv").exists() and nested.is_dir() else root_path
        # None: whole videos; the model check then only compares image_size and channels.
        self.num_frames, self.image_size, self.channels = num_frames, image_size, 3
        self.eval_num_frames = eval_num_frames or num_frames
        self.frame_stride, self.return_coords = frame_stride, return_coords
        self.val_size, self.seed = val_size, seed

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 "video" -> float in [-1, 1] on the accelerator (FDM keeps whole training videos as uint8)."""
        return unit_range_after_transfer(self.trainer, batch)

    def check_layout(self) -> None:
        super().check_layout()
        for split in ("train", "test"):
            if not (self.root / f"video_{split}.csv").is_file():
                raise FileNotFoundError(f"CARLADataModule: {self.root / f'video_{split}.csv'} is missing. {HOW_TO_GET}")

    def split_names(self, split: str) -> list[str]:
        """Videos of a published split whose files (and coordinates, when returned) are present."""
        names = read_split_list(self.root / f"video_{split}.csv")
        present = [
            n
            for n in names
            if (self.root / n).is_file() and (not self.return_coords or (self.root / coords_name(n)).is_file())
        ]
        if len(present) < len(names):
            absent = [n for n in names if n not in set(present)]
            rank_zero_warn(
                f"CARLADataModule: {len(absent)} of {len(names)} videos listed in video_{split}.csv are absent from "
                f"{self.root} (or lack coords_<i>.npy); left out: {', '.join(absent[:5])}"
            )
        if not present:
            raise FileNotFoundError(
                f"CARLADataModule: none of the {len(names)} videos listed in {self.root / f'video_{split}.csv'} is "
                f"in {self.root}. {HOW_TO_GET}"
            )
        return present

    def build_dataset(self, split: str) -> CARLADataset:
        if split == "test" or split == "val" and self.val_size == 0:
            names = self.split_names("test")
        else:
            names = self.split_names("train")
            train, val = carve_validation(len(names), self.val_size, self.seed)
            names = [names[i] for i in (train if split == "train" else val)]
        num_frames = self.num_frames if split == "train" else self.eval_num_frames
        self.check_clip_fits(names[0], num_frames)
        return CARLADataset(
            self.root,
            names,
            num_frames=num_frames,
            image_size=self.image_size,
            frame_stride=self.frame_stride,
            train=split == "train",
            return_coords=self.return_coords,
            skip_log=self.skip_log,
        )

    def check_clip_fits(self, name: str, num_frames: int | None) -> None:
        """A clip longer than the videos is a configuration error: say so now (one memory-mapped header read)."""
        span = (num_frames - 1) * self.frame_stride + 1 if num_frames else 1
        length = load_video(self.root / name).shape[0]
        if span > length:
            raise ValueError(
                f"CARLADataModule: {num_frames} frames every {self.frame_stride} span {span} frames; "
                f"{name} has {length}"
            )

    def corrupt_files(self) -> list[str]:
        """Distinct files that failed at load time this run, from all workers and ranks."""
        return sorted({path for path, _ in self.skipped_files()})
