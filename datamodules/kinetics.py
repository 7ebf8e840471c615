"""Kinetics-600 video files, decoded with decord.

Two layouts are read (both as produced by the common download scripts):
- class folders: ``<root>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``;
- annotation CSVs: ``<root>/annotations/<split>.csv`` (columns ``label,youtube_id,time_start,time_end,split``) with
  the videos in ``<root>/<split>/`` (flat, or in class sub-folders). Rows whose video is absent are left out (many
  YouTube videos are gone) and counted.
Extensions .mp4 .webm .mkv .avi. Class indices follow the sorted class names found over all splits (``classes``).

Each video gives one clip per epoch: ``num_frames`` frames every ``frame_stride`` frames (or resampled to
``target_fps``), a random window in training and the first one in evaluation; the short side is resized to
``image_size`` and a centre (or random, ``random_crop``) square is cut. Videos are opened inside ``__getitem__``
(never in the parent before the workers fork) and only the needed frames are decoded.

The index (frame count, frame rate, size per file) is built once by ``prepare_data`` (or ``setup``) and cached as JSON
in ``cache_dir`` (see ``video_index``); videos that cannot be opened or are too short for one clip are left out and
reported. Files that fail later are replaced by the next clip and reported at the end of every epoch.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import decord
import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from video_diffusion_lab.datamodules.video_index import (
    RealDataModule,
    SkipLog,
    frames_to_clip,
    load_or_substitute,
    probe_cached,
    window_start,
)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi")
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "validate", "valid"), "test": ("test",)}
DECODE_ERRORS = (RuntimeError, decord.DECORDError, OSError, ValueError, IndexError)
HOW_TO_GET = (
    "Kinetics-600 is obtained with the CVDF scripts (github.com/cvdfoundation/kinetics-dataset: k600_downloader.sh "
    "then k600_extractor.sh gives <root>/{train,val,test}/*.mp4 and <root>/annotations/*.csv) or a YouTube crawler "
    "that writes class folders <root>/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4."
)


# ---------------------------------------------------------------------------------------------------------- probing
def _decord_size_bug(error: BaseException) -> bool:
    """decord 0.6 fails on valid videos of some frame widths (e.g. 48, 72, 144) with a buffer-size check
    (dmlc/decord#336); those files are decoded with PyAV instead of being counted as corrupt."""
    return isinstance(error, decord.DECORDError) and "DECORDArrayCopyFromTo" in str(error)


def read_frames_pyav(path: Path, indices: list[int] | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3) frames at ``indices`` (all frames if None), decoded in order with PyAV."""
    wanted = None if indices is None else set(indices)
    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if wanted is None or i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24")
            if wanted is not None and len(frames) == len(wanted):
                break
    order = sorted(frames) if indices is None else indices
    missing = [i for i in order if i not in frames]
    if missing:
        raise IndexError(f"frame {missing[0]} requested, the video has {len(frames)} decodable frames")
    return np.stack([frames[i] for i in order])


def probe_video(path: Path) -> dict[str, Any]:
    """Frame count, frame rate and size; decoding the last key frame catches files cut short after their header."""
    try:
        return _probe_decord(path)
    except decord.DECORDError as error:
        if not _decord_size_bug(error):
            raise
        with av.open(str(path)) as container:
            fps = float(container.streams.video[0].average_rate or 0)
        frames = read_frames_pyav(path)
        return {"frames": len(frames), "fps": fps, "height": frames.shape[1], "width": frames.shape[2]}


def _probe_decord(path: Path) -> dict[str, Any]:
    reader = decord.VideoReader(str(path), num_threads=1)
    frames = len(reader)
    if frames == 0:
        raise RuntimeError("no frames")
    keys = reader.get_key_indices()
    height, width = reader[int(keys[-1]) if len(keys) else frames - 1].shape[:2]
    return {"frames": frames, "fps": float(reader.get_avg_fps()), "height": int(height), "width": int(width)}


def read_frames(path: Path, indices: list[int]) -> np.ndarray:
    """uint8 (T, H, W, 3) frames at ``indices``; opens the file here so every worker has its own reader."""
    reader = decord.VideoReader(str(path), num_threads=1)
    if max(indices) >= len(reader):
        raise IndexError(f"frame {max(indices)} requested, the video has {len(reader)}")
    try:
        batch = reader.get_batch(indices)
    except decord.DECORDError as error:
        if not _decord_size_bug(error):
            raise
        return read_frames_pyav(path, indices)
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)  # whatever bridge is set


# ----------------------------------------------------------------------------------------------------------- layout
def split_folder(root: Path, split: str) -> Path | None:
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    return None


def annotation_file(root: Path, split: str) -> Path | None:
    for name in SPLIT_FOLDERS[split]:
        if (root / "annotations" / f"{name}.csv").is_file():
            return root / "annotations" / f"{name}.csv"
    return None


def uses_annotations(root: Path) -> bool:
    return any(annotation_file(root, split) for split in SPLIT_FOLDERS)


def walk_videos(folder: Path, root: Path) -> list[str]:
    """Video paths under ``folder`` relative to ``root``, sorted; hidden folders (the cache) are skipped."""
    found = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.relpath(os.path.join(current, f), root) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)
        ]
    return sorted(found)


def has_video(folder: Path | None) -> bool:
    """Stops at the first video found: a layout check must not list half a million files."""
    if folder is None:
        return False
    for _, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.lower().endswith(VIDEO_EXTENSIONS) for f in files):
            return True
    return False


def read_annotations(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def clip_stem(row: dict[str, str]) -> str:
    return f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"


def split_videos(root: Path, split: str) -> tuple[list[tuple[str, str | None]], int]:
    """(relative path, class name or None) per video of a split, and how many annotated videos are absent."""
    folder = split_folder(root, split)
    on_disk = walk_videos(folder, root) if folder is not None else []
    csv_path = annotation_file(root, split) if uses_annotations(root) else None
    if csv_path is None:  # class folders: the folder right under the split names the class
        return [(rel, _class_from_path(rel)) for rel in on_disk], 0
    by_stem = {Path(rel).stem: rel for rel in on_disk}
    videos, missing = [], 0
    for row in read_annotations(csv_path):
        rel = by_stem.get(clip_stem(row))
        if rel is None:
            missing += 1
        else:
            videos.append((rel, row.get("label") or None))
    return sorted(videos), missing


def _class_from_path(rel: str) -> str | None:
    parts = Path(rel).parts
    return parts[1] if len(parts) >= 3 else None  # <split>/<label>/<file>; files right in <split>/ are unlabelled


def find_classes(root: Path) -> list[str]:
    """Sorted class names over every split present, so train, val and test share one numbering."""
    names: set[str] = set()
    for split in SPLIT_FOLDERS:
        csv_path = annotation_file(root, split)
        if csv_path is not None:
            names.update(row["label"] for row in read_annotations(csv_path) if row.get("label"))
        folder = split_folder(root, split)
        if folder is not None and not uses_annotations(root):
            names.update(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    return sorted(names)


# ---------------------------------------------------------------------------------------------------------- dataset
class KineticsDataset(Dataset):
    """One clip per video: {"video": (T, 3, S, S) in [-1, 1], "frame_indices": (T,), "label", "index", ...}."""

    read_errors = DECODE_ERRORS

    def __init__(
        self,
        root: str | Path,
        videos: list[dict[str, Any]],
        num_frames: int = 16,
        image_size: int = 64,
        frame_stride: int | None = None,
        target_fps: float | None = None,
        train: bool = False,
        random_crop: bool = False,
        horizontal_flip: bool = False,
        skip_log: SkipLog | None = None,
    ):
        self.root = Path(root)
        # Numpy arrays, not a list of dicts: forked workers touching Python objects would copy the pages of a
        # 500k-entry index into every worker (refcounts); fixed-width bytes and numbers are never written to.
        self.paths = np.array([v["path"].encode() for v in videos], dtype=np.bytes_)
        self.labels = np.array([v["label"] for v in videos], dtype=np.int64)
        self.frame_counts = np.array([v["frames"] for v in videos], dtype=np.int64)
        self.fps = np.array([v["fps"] for v in videos], dtype=np.float64)
        self.num_frames, self.image_size = num_frames, image_size
        self.frame_stride, self.target_fps = frame_stride, target_fps
        self.train = train
        self.random_crop, self.horizontal_flip = random_crop and train, horizontal_flip and train
        self.skip_log = skip_log or SkipLog(None)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> Path:
        return self.root / self.paths[index].decode()

    def frame_positions(self, index: int) -> list[int]:
        step = frame_step(float(self.fps[index]), self.frame_stride, self.target_fps)
        span = clip_span(self.num_frames, step)
        start = window_start(int(self.frame_counts[index]), span, random=self.train)
        return np.floor(start + step * np.arange(self.num_frames) + 1e-6).astype(int).tolist()

    def describe(self, index: int) -> str:
        return str(self.path(index))

    def read(self, index: int, choose: Callable[[int], Sequence[int]]) -> dict[str, torch.Tensor]:
        """The video's reader: uint8 "frames" (T, H, W, 3) at ``choose(number of frames)``, decoded with decord,
        their "frame_indices" and the class "label"."""
        positions = list(choose(int(self.frame_counts[index])))
        return {
            "frames": read_frames(self.path(index), positions),
            "frame_indices": torch.tensor(positions, dtype=torch.long),
            "label": torch.tensor(int(self.labels[index]), dtype=torch.long),
        }

    def load(self, index: int) -> dict[str, torch.Tensor]:
        item = self.read(index, lambda _: self.frame_positions(index))
        frames = item.pop("frames")
        return {
            "video": frames_to_clip(frames, self.image_size, random_crop=self.random_crop, flip=self.horizontal_flip),
            **item,
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return load_or_substitute(len(self), index, self.load, self.describe, DECODE_ERRORS, self.skip_log)


def frame_step(fps: float, frame_stride: int | None, target_fps: float | None) -> float:
    """Source frames per clip frame: a fixed stride, or the ratio that resamples this video to ``target_fps``."""
    if target_fps is None:
        return float(frame_stride or 1)
    return max(fps, 1e-3) / target_fps


def clip_span(num_frames: int, step: float) -> int:
    """Source frames one clip covers."""
    return int(np.floor((num_frames - 1) * step + 1e-6)) + 1


# ------------------------------------------------------------------------------------------------------- datamodule
class KineticsDataModule(RealDataModule):
    """Kinetics-600 clips with class labels; ``classes`` lists the class names in label order."""

    cache_name = "kinetics"
    how_to_get = HOW_TO_GET

    def __init__(
        self,
        root: str,
        num_frames: int = 16,
        image_size: int = 64,
        frame_stride: int | None = None,
        target_fps: float | None = None,
        random_crop: bool = False,
        horizontal_flip: bool = False,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        cache_dir: str | None = None,
        index_workers: int = 8,
    ):
        super().__init__(batch_size, eval_batch_size, num_workers, cache_dir)
        self.save_hyperparameters(logger=False)  # logged under "data" by callbacks.RunConfigSaver
        if frame_stride is not None and target_fps is not None:
            raise ValueError("frame_stride, target_fps: set one of them (or neither for every frame), not both")
        if frame_stride is not None and frame_stride < 1 or target_fps is not None and target_fps <= 0:
            raise ValueError(f"frame_stride must be >= 1 and target_fps > 0, got {frame_stride}, {target_fps}")
        self.root = Path(root).expanduser()
        self.num_frames, self.image_size, self.channels = num_frames, image_size, 3
        self.frame_stride, self.target_fps = frame_stride, target_fps
        self.random_crop, self.horizontal_flip = random_crop, horizontal_flip
        self.index_workers = index_workers
        self.index_problems: dict[str, dict[str, Any]] = {}  # per split: corrupt {path: error}, too_short, missing
        self._classes: list[str] | None = None
        self._indices: dict[str, tuple] = {}

    # ---------------------------------------------------------------------------------------------------- layout
    def check_layout(self) -> None:
        super().check_layout()
        if uses_annotations(self.root):
            if not any(split_folder(self.root, s) for s in SPLIT_FOLDERS):
                raise FileNotFoundError(
                    f"KineticsDataModule: found {self.root / 'annotations'} but no video folder "
                    f"{self.root}/{{train,val,test}}/. {HOW_TO_GET}"
                )
            return
        if not any(has_video(split_folder(self.root, s)) for s in SPLIT_FOLDERS):
            raise ValueError(
                f"KineticsDataModule: no videos ({', '.join(VIDEO_EXTENSIONS)}) under {self.root}/{{train,val,test}}/ "
                f"and no {self.root}/annotations/{{train,val,test}}.csv. {HOW_TO_GET}"
            )

    def check_split(self, split: str) -> None:
        if split_folder(self.root, split) is None:
            raise FileNotFoundError(
                f"KineticsDataModule: the {split} split needs the folder {self.root / SPLIT_FOLDERS[split][0]}/ "
                f"(videos of that split). {HOW_TO_GET}"
            )

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = find_classes(self.root)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ----------------------------------------------------------------------------------------------------- index
    def prepare_data(self) -> None:
        """Runs once per node before ``setup`` under DDP: build every split's index so other ranks only read it."""
        self.check_layout()
        for split in SPLIT_FOLDERS:
            if split_folder(self.root, split) is not None:
                self.index(split)

    def index(self, split: str) -> tuple[list[tuple[str, str | None]], dict[str, dict[str, Any]], int]:
        """(videos of the split, probe info by path, annotated videos absent), probing only new or changed files;
        kept for the process, so ``setup`` after ``prepare_data`` does not stat every file again."""
        if split not in self._indices:
            self._indices[split] = self._build_index(split)
        return self._indices[split]

    def _build_index(self, split: str) -> tuple[list[tuple[str, str | None]], dict[str, dict[str, Any]], int]:
        videos, missing = split_videos(self.root, split)
        infos, _ = probe_cached(
            self.root,
            [rel for rel, _ in videos],
            self.cache_dir / f"kinetics-index-{split}.json",
            probe_video,
            self.index_workers,
        )
        return videos, infos, missing

    def usable(self, info: dict[str, Any]) -> bool:
        if self.target_fps is not None and not 0 < info["fps"] < float("inf"):
            return False  # no usable frame rate to resample from
        step = frame_step(info["fps"], self.frame_stride, self.target_fps)
        return info["frames"] >= clip_span(self.num_frames, step)

    def build_dataset(self, split: str) -> KineticsDataset:
        self.check_split(split)
        videos, infos, missing = self.index(split)
        label_of = {name: i for i, name in enumerate(self.classes)}
        kept, corrupt, short = [], {}, []
        for rel, name in videos:
            info = infos[rel]
            if "error" in info:
                corrupt[rel] = info["error"]
            elif not self.usable(info):
                short.append(rel)
            else:
                label = label_of.get(name, -1)  # -1: unlabelled (files right in the split folder)
                kept.append({"path": rel, "label": label, "frames": info["frames"], "fps": info["fps"]})
        self.index_problems[split] = {"corrupt": corrupt, "too_short": short, "missing": missing}
        self.report_index(split, len(videos), corrupt, short, missing)
        if not kept:
            raise ValueError(
                f"KineticsDataModule: no usable video in the {split} split under {self.root} ({len(corrupt)} "
                f"unreadable, {len(short)} shorter than one clip, {missing} annotated but absent). {HOW_TO_GET}"
            )
        return KineticsDataset(
            self.root,
            kept,
            num_frames=self.num_frames,
            image_size=self.image_size,
            frame_stride=self.frame_stride,
            target_fps=self.target_fps,
            train=split == "train",
            random_crop=self.random_crop,
            horizontal_flip=self.horizontal_flip,
            skip_log=self.skip_log,
        )

    def report_index(self, split: str, total: int, corrupt: dict[str, str], short: list[str], missing: int) -> None:
        if corrupt or short:
            first = "; ".join(f"{rel} ({error})" for rel, error in list(corrupt.items())[:5])
            rank_zero_warn(
                f"KineticsDataModule: {split} split, {len(corrupt)} of {total} videos unreadable and {len(short)} "
                f"shorter than one clip; left out. Unreadable: {first or 'none'}"
            )
        if missing:
            rank_zero_info(f"KineticsDataModule: {split} split, {missing} annotated videos are not on disk; left out")

    def corrupt_files(self) -> list[str]:
        """Distinct paths found unreadable, at index time (every split built so far) or at load time (this run)."""
        found = {str(self.root / rel) for problems in self.index_problems.values() for rel in problems["corrupt"]}
        return sorted(found | {path for path, _ in self.skipped_files()})
