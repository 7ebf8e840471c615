"""BAIR robot pushing (softmotion30_44k), read from the published TFRecords without TensorFlow, or from PNG frames.

Layouts:
- TFRecords: ``<root>/softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords`` (``root`` may also be the
  softmotion30_44k folder). Every record is one 30-step trajectory; step t holds ``"{t}/image_aux1/encoded"`` (the
  64x64x3 uint8 frame, raw bytes, the camera every paper uses), ``"{t}/image_main/encoded"``, ``"{t}/action"``
  (4 floats) and ``"{t}/endeffector_pos"`` (3 floats).
- PNGs (as converted by the SVG / RaMViD scripts): ``<root>/{train,test}/<trajectory>/<t>.png`` (0.png .. 29.png;
  the trajectory folders may sit deeper, e.g. ``<file>/<k>/``); no actions.

Random access: ``tfrecord.tools.tfrecord2idx.create_index`` writes, once, each file's (byte offset, length) table into
``cache_dir``; the dataset is a map over (file, offset) pairs, so a sampler (shuffle, DDP) and the DataLoader workers
split it exactly, without duplicates. Splits: test is the published test set (256 trajectories); validation is
``val_size`` trajectories drawn from train with a fixed seed, and left out of train.

Clips: ``num_frames`` steps every ``frame_stride`` (16 = 1 given + 15 predicted for evaluation, 20 for RaMViD
training; ``eval_num_frames`` sets val/test apart), a random window in training and the first frames in val/test.
Extras with TFRecords: ``"actions"`` (T, 4) and ``"endeffector_pos"`` (T, 3) of the returned steps.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from google.protobuf.message import DecodeError
from pytorch_lightning.utilities import rank_zero_warn
from tfrecord import example_pb2
from tfrecord.tools.tfrecord2idx import create_index
from torch.utils.data import Dataset

from video_diffusion_lab.datamodules.video_index import (
    RealDataModule,
    SkipLog,
    carve_validation,
    frames_to_clip,
    load_or_substitute,
    window_start,
)

SPLITS = ("train", "test")
CAMERAS = {"aux1": "image_aux1", "main": "image_main"}
READ_ERRORS = (OSError, ValueError, KeyError, DecodeError, av.FFmpegError)
HOW_TO_GET = (
    "BAIR robot pushing is the tarball http://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar "
    "(~30 GB); `tar -xf` it into root to get <root>/softmotion30_44k/{train,test}/traj_*_to_*.tfrecords. "
    "Frames converted to PNG (<root>/{train,test}/<trajectory>/<t>.png) are read as well."
)


# ----------------------------------------------------------------------------------------------------------- layout
def tfrecord_folder(root: Path, split: str) -> Path | None:
    for folder in (root / "softmotion30_44k" / split, root / split):
        if folder.is_dir() and any(folder.glob("*.tfrecords")):
            return folder
    return None


def png_trajectories(root: Path, split: str) -> list[Path]:
    """Folders holding 0.png under <root>/<split> (or <root>/processed_data/<split>), sorted naturally."""
    for folder in (root / split, root / "processed_data" / split):
        if folder.is_dir():
            found = [Path(current) for current, _, files in os.walk(folder) if "0.png" in files]
            if found:
                return sorted(found, key=natural_key)
    return []


def natural_key(path: Path | str) -> list[Any]:
    """traj_2 before traj_10: file names carry numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


# ------------------------------------------------------------------------------------------------------- TFRecords
def record_table(tfrecord: Path, index_file: Path) -> tuple[list[tuple[int, int]], int]:
    """(offset, length) of every complete record, from the cached index (built with tfrecord's create_index when
    absent or older than the file), and how many records were cut off (a truncated file)."""
    if not index_file.is_file() or index_file.stat().st_mtime_ns < tfrecord.stat().st_mtime_ns:
        index_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_file.with_name(f".{index_file.name}.{os.getpid()}.tmp")
        create_index(str(tfrecord), str(tmp))
        os.replace(tmp, index_file)  # atomic: ranks that build it at once never read half a table
    size = tfrecord.stat().st_size
    table, cut = [], 0
    for line in index_file.read_text().split("\n"):
        if line.strip():
            offset, length = map(int, line.split())
            if offset + length <= size:
                table.append((offset, length))
            else:
                cut += 1
    return table, cut


def read_record(path: str, offset: int, length: int) -> example_pb2.Example:
    """One Example from its byte range: 8-byte length, 4-byte CRC, payload, 4-byte CRC."""
    with open(path, "rb") as file:
        file.seek(offset)
        data = file.read(length)
    if len(data) != length or length < 16:
        raise OSError(f"record at byte {offset} is cut short")
    (size,) = struct.unpack("<Q", data[:8])
    if size + 16 != length:
        raise ValueError(f"record at byte {offset}: stored length {size} does not match the index ({length - 16})")
    example = example_pb2.Example()
    example.ParseFromString(data[12 : 12 + size])
    return example


def record_steps(example: example_pb2.Example, camera_key: str) -> int:
    suffix = f"/{camera_key}/encoded"
    return sum(1 for key in example.features.feature if key.endswith(suffix))


def raw_frame(data: bytes) -> np.ndarray:
    """Raw square RGB bytes (64x64x3 in the release) -> uint8 (H, W, 3)."""
    side = int(round((len(data) / 3) ** 0.5))
    if side * side * 3 != len(data):
        raise ValueError(f"an image feature of {len(data)} bytes is not a raw square RGB frame")
    return np.frombuffer(data, dtype=np.uint8).reshape(side, side, 3)


def float_feature(example: example_pb2.Example, key: str) -> list[float]:
    features = example.features.feature
    if key not in features:
        raise KeyError(f"feature {key!r} missing from the record")
    return list(features[key].float_list.value)


def bytes_feature(example: example_pb2.Example, key: str) -> bytes:
    features = example.features.feature
    if key not in features:
        raise KeyError(f"feature {key!r} missing from the record")
    return features[key].bytes_list.value[0]


def read_png(path: Path) -> np.ndarray:
    """uint8 (H, W, 3); PyAV's PNG decoder, since PIL is not a dependency."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path}: no image decoded")


# ---------------------------------------------------------------------------------------------------------- dataset
class BAIRDataset(Dataset):
    """One clip per trajectory. ``items``: ("tfrecord", path, offset, length) or ("png", folder, steps)."""

    read_errors = READ_ERRORS

    def __init__(
        self,
        items: list[tuple],
        num_frames: int = 16,
        image_size: int = 64,
        frame_stride: int = 1,
        train: bool = False,
        camera: str = "aux1",
        skip_log: SkipLog | None = None,
        horizontal_flip: bool = False,
    ):
        self.items = items
        self.num_frames, self.image_size, self.frame_stride = num_frames, image_size, frame_stride
        self.train, self.camera_key, self.horizontal_flip = train, CAMERAS[camera], horizontal_flip
        self.skip_log = skip_log or SkipLog(None)

    def __len__(self) -> int:
        return len(self.items)

    def positions(self, steps: int) -> list[int]:
        span = (self.num_frames - 1) * self.frame_stride + 1
        start = window_start(steps, span, random=self.train)
        return list(range(start, start + span, self.frame_stride))

    def read(self, index: int, choose: Callable[[int], Sequence[int]]) -> dict[str, torch.Tensor]:
        """The trajectory's reader: uint8 "frames" (T, H, W, 3) at the steps ``choose(number of steps)``, their
        "frame_indices" and, from TFRecords, the "actions" (T, 4) and "endeffector_pos" (T, 3) of those steps."""
        kind, *where = self.items[index]
        if kind == "png":
            folder, steps = where
            positions = list(choose(steps))
            return {
                "frames": np.stack([read_png(Path(folder) / f"{t}.png") for t in positions]),
                "frame_indices": torch.tensor(positions, dtype=torch.long),
            }
        example = read_record(*where)
        positions = list(choose(record_steps(example, self.camera_key)))
        frames = [raw_frame(bytes_feature(example, f"{t}/{self.camera_key}/encoded")) for t in positions]
        return {
            "frames": np.stack(frames),
            "frame_indices": torch.tensor(positions, dtype=torch.long),
            "actions": torch.tensor([float_feature(example, f"{t}/action") for t in positions]),
            "endeffector_pos": torch.tensor([float_feature(example, f"{t}/endeffector_pos") for t in positions]),
        }

    def load(self, index: int) -> dict[str, torch.Tensor]:
        item = self.read(index, self.positions)
        return {"video": frames_to_clip(item.pop("frames"), self.image_size, flip=self.horizontal_flip), **item}

    def describe(self, index: int) -> str:
        kind, path, *rest = self.items[index]
        return f"{path}@{rest[0]}" if kind == "tfrecord" else str(path)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return load_or_substitute(len(self), index, self.load, self.describe, READ_ERRORS, self.skip_log)


# ------------------------------------------------------------------------------------------------------- datamodule
class BAIRDataModule(RealDataModule):
    """BAIR robot pushing clips (64x64), with actions when read from the TFRecords.

    ``horizontal_flip``: training clips are mirrored left-right with probability 1/2 (VDM's BAIR augmentation); the
    actions and end-effector positions are not mirrored, so leave it off for action-conditioned models.
    """

    cache_name = "bair"
    how_to_get = HOW_TO_GET

    def __init__(
        self,
        root: str,
        num_frames: int = 16,
        image_size: int = 64,
        frame_stride: int = 1,
        eval_num_frames: int | None = None,
        camera: str = "aux1",
        val_size: int = 256,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        cache_dir: str | None = None,
        horizontal_flip: bool = False,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, cache_dir)
        self.save_hyperparameters(logger=False)  # logged under "data" by callbacks.RunConfigSaver
        self.horizontal_flip = horizontal_flip
        if camera not in CAMERAS:
            raise ValueError(f"camera: choose one of {tuple(CAMERAS)}, got {camera!r}")
        if frame_stride < 1 or num_frames < 1:
            raise ValueError(f"num_frames and frame_stride must be >= 1, got {num_frames}, {frame_stride}")
        root_path = Path(root).expanduser()
        # Also accept root pointing at softmotion30_44k itself.
        self.root = root_path.parent if root_path.name == "softmotion30_44k" else root_path
        self.num_frames, self.image_size, self.channels = num_frames, image_size, 3
        self.eval_num_frames = eval_num_frames or num_frames
        self.frame_stride, self.camera, self.val_size, self.seed = frame_stride, camera, val_size, seed
        self.cut_records = 0
        self._items: dict[str, list[tuple]] = {}

    def layout(self) -> str:
        if any(tfrecord_folder(self.root, s) for s in SPLITS):
            return "tfrecord"
        if any(png_trajectories(self.root, s) for s in SPLITS):
            return "png"
        return "none"

    def check_layout(self) -> None:
        super().check_layout()
        if self.layout() == "none":
            raise FileNotFoundError(
                f"BAIRDataModule: found neither {self.root}/softmotion30_44k/{{train,test}}/*.tfrecords nor "
                f"{self.root}/{{train,test}}/<trajectory>/0.png. {HOW_TO_GET}"
            )

    def prepare_data(self) -> None:
        """Builds the TFRecord index tables once per node before ``setup`` reads them on every rank."""
        self.check_layout()
        for split in SPLITS:
            if self.layout() == "tfrecord" and tfrecord_folder(self.root, split):
                self.split_items(split)

    def split_items(self, split: str) -> list[tuple]:
        """Every trajectory of a published split, in file order (kept for the process: ``setup`` after
        ``prepare_data`` reads the tables once)."""
        if split not in self._items:
            self._items[split] = self._find_items(split)
        return self._items[split]

    def _find_items(self, split: str) -> list[tuple]:
        if self.layout() == "png":
            folders = png_trajectories(self.root, split)
            return [("png", str(folder), len(list(folder.glob("*.png")))) for folder in folders]
        folder = tfrecord_folder(self.root, split)
        if folder is None:
            return []
        items, cut = [], 0
        for tfrecord in sorted(folder.glob("*.tfrecords"), key=natural_key):
            index_file = self.cache_dir / "tfrecord-index" / split / f"{tfrecord.stem}.index"
            table, cut_here = record_table(tfrecord, index_file)
            items += [("tfrecord", str(tfrecord), offset, length) for offset, length in table]
            cut += cut_here
        if cut:
            rank_zero_warn(
                f"BAIRDataModule: {cut} record(s) of the {split} split are cut off (truncated files); skipped"
            )
        self.cut_records += cut
        return items

    def build_dataset(self, split: str) -> BAIRDataset:
        source = "test" if split == "test" else "train"
        items = self.split_items(source)
        if not items:
            raise FileNotFoundError(
                f"BAIRDataModule: the {split} split needs the published {source} trajectories under {self.root} "
                f"({self.layout()} layout), none found. {HOW_TO_GET}"
            )
        num_frames = self.num_frames if split == "train" else self.eval_num_frames
        self.check_clip_fits(items[0], num_frames)
        if source == "train":
            train, val = carve_validation(len(items), self.val_size, self.seed)
            items = [items[i] for i in (train if split == "train" else val)]
        return BAIRDataset(
            items,
            num_frames=num_frames,
            image_size=self.image_size,
            frame_stride=self.frame_stride,
            train=split == "train",
            camera=self.camera,
            skip_log=self.skip_log,
            horizontal_flip=self.horizontal_flip and split == "train",
        )

    def check_clip_fits(self, item: tuple, num_frames: int) -> None:
        """A clip longer than a trajectory is a configuration error: say so now, not as unreadable files later."""
        kind, *where = item
        steps = where[1] if kind == "png" else record_steps(read_record(*where), CAMERAS[self.camera])
        span = (num_frames - 1) * self.frame_stride + 1
        if span > steps:
            raise ValueError(
                f"BAIRDataModule: {num_frames} frames every {self.frame_stride} steps span {span} steps; the "
                f"trajectories have {steps}"
            )

    def corrupt_files(self) -> list[str]:
        """Distinct records / files that failed at load time this run (cut-off records are counted in
        ``cut_records``)."""
        return sorted({path for path, _ in self.skipped_files()})
