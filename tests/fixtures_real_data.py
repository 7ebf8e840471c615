"""Writers of small data sets in the real on-disk formats (Kinetics videos, BAIR TFRecords and PNGs, CARLA tensors),
used by tests/test_datamodules_real.py and benchmarks/dataloader_throughput.py.

Frame t of every fixture video carries ``frame_level(t)`` in its red channel (uniform over the frame), so a reader's
frame positions can be checked from the pixels: exactly for the lossless formats, within a few levels for H.264.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import av
import numpy as np
import torch
from tfrecord.writer import TFRecordWriter

from video_diffusion_lab.video_io import write_png

BAIR_STEPS = 30


def frame_level(t: int | np.ndarray) -> int | np.ndarray:
    """Red level of frame t (distinct for t < 30, spaced for lossy codecs)."""
    return (16 + 8 * np.asarray(t)) % 256


def fixture_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): red = frame_level(t), green = a horizontal ramp moving with t, blue = a per-seed level."""
    t = np.arange(num_frames)[:, None, None]
    x = np.arange(width)[None, None, :]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    frames[..., 0] = frame_level(t)
    frames[..., 1] = ((x * 255) // max(width - 1, 1) + 3 * t) % 256
    frames[..., 2] = (40 + 37 * seed) % 256
    return frames


def textured_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3): coarse random texture panning across the frame. Unlike ``fixture_frames`` it compresses
    like camera footage (~400 kbit/s at 340x256, crf 23), so decoding costs about what a real clip costs."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (height // 4 + 41, width // 4 + 41, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    return np.stack(
        [texture[(t // 2) % 160 : (t // 2) % 160 + height, t % 160 : t % 160 + width] for t in range(num_frames)]
    )


# ---------------------------------------------------------------------------------------------------------- videos
def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 25, crf: int = 12, preset: str = "ultrafast") -> Path:
    """H.264 yuv420p (moov atom at the end, as ffmpeg writes by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"preset": preset, "crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def truncate(path: str | Path, keep: float = 0.5) -> Path:
    """Cut a file short, as an interrupted download or copy does."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def spoil_keeping_stat(path: str | Path) -> Path:
    """Overwrite a file with junk of the same size and mtime: it passes a cached index, then fails to decode."""
    path = Path(path)
    stat = path.stat()
    path.write_bytes(b"\0junk" * (stat.st_size // 5) + b"\0" * (stat.st_size % 5))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return path


def kinetics_name(youtube_id: str, start: int, end: int, ext: str = ".mp4") -> str:
    return f"{youtube_id}_{start:06d}_{end:06d}{ext}"


def write_kinetics(
    root: str | Path,
    layout: str = "folders",
    classes: tuple[str, ...] = ("abseiling", "juggling balls", "zumba"),
    videos_per_class: dict[str, int] | None = None,
    num_frames: int = 24,
    height: int = 48,
    width: int = 64,
    fps: int = 25,
    broken: bool = True,
) -> dict[str, list[Path]]:
    """Kinetics in ``layout`` "folders" (<split>/<label>/<id>_<s>_<e>.mp4) or "annotations" (annotations/<split>.csv
    + flat <split>/). With ``broken``, the train split also holds one truncated and one empty video, and the
    annotations list one video that is absent. Returns the good videos per split."""
    root = Path(root)
    videos_per_class = videos_per_class or {"train": 2, "val": 1, "test": 1}
    written: dict[str, list[Path]] = {}
    for split, count in videos_per_class.items():
        rows, written[split] = [], []
        for c, label in enumerate(classes):
            for i in range(count):
                youtube_id = f"{split[:2]}{c}x{i}abcdef"[:11]
                name = kinetics_name(youtube_id, 10 * i, 10 * i + 10)
                folder = root / split / label if layout == "folders" else root / split
                seed = len(written[split])
                written[split].append(write_mp4(folder / name, fixture_frames(num_frames, height, width, seed), fps))
                rows.append({"label": label, "youtube_id": youtube_id, "time_start": 10 * i, "time_end": 10 * i + 10})
        if broken and split == "train":
            folder = root / split / classes[0] if layout == "folders" else root / split
            bad = write_mp4(folder / kinetics_name("truncatedvid", 0, 10), fixture_frames(num_frames, height, width))
            truncate(bad, 0.5)
            (folder / kinetics_name("emptyvideo0", 0, 10)).write_bytes(b"")
            rows += [
                {"label": classes[0], "youtube_id": yid, "time_start": 0, "time_end": 10}
                for yid in ("truncatedvid", "emptyvideo0", "missingvid0")
            ]
        if layout == "annotations":
            (root / "annotations").mkdir(parents=True, exist_ok=True)
            with open(root / "annotations" / f"{split}.csv", "w", newline="") as file:
                writer = csv.DictWriter(file, ["label", "youtube_id", "time_start", "time_end", "split"])
                writer.writeheader()
                writer.writerows({**row, "split": split} for row in rows)
    return written


# ------------------------------------------------------------------------------------------------------------ BAIR
def bair_frame(trajectory: int, t: int, camera: int = 1, size: int = 64) -> np.ndarray:
    """uint8 (size, size, 3): red = frame_level(t), green = trajectory id, blue = camera (1 aux1, 0 main)."""
    frame = np.zeros((size, size, 3), dtype=np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = frame_level(t), trajectory % 256, 200 * camera
    return frame


def write_bair_tfrecords(
    root: str | Path, splits: dict[str, int] | None = None, per_file: int = 4, steps: int = BAIR_STEPS
) -> Path:
    """<root>/softmotion30_44k/<split>/traj_<a>_to_<b>.tfrecords with the published keys; trajectory ids count
    up through all files of a split. Action of step t = (trajectory, t, 0, 1)."""
    base = Path(root) / "softmotion30_44k"
    for split, count in (splits or {"train": 12, "test": 4}).items():
        (base / split).mkdir(parents=True, exist_ok=True)
        for first in range(0, count, per_file):
            last = min(count, first + per_file) - 1
            writer = TFRecordWriter(str(base / split / f"traj_{first}_to_{last}.tfrecords"))
            for trajectory in range(first, last + 1):
                datum = {}
                for t in range(steps):
                    datum[f"{t}/image_aux1/encoded"] = (bair_frame(trajectory, t, 1).tobytes(), "byte")
                    datum[f"{t}/image_main/encoded"] = (bair_frame(trajectory, t, 0).tobytes(), "byte")
                    datum[f"{t}/action"] = ([float(trajectory), float(t), 0.0, 1.0], "float")
                    datum[f"{t}/endeffector_pos"] = ([0.1 * t, 0.0, float(trajectory)], "float")
                writer.write(datum)
            writer.close()
    return base


def write_bair_pngs(root: str | Path, splits: dict[str, int] | None = None, steps: int = BAIR_STEPS) -> Path:
    """The converted layout <root>/<split>/<trajectory>/<t>.png."""
    root = Path(root)
    for split, count in (splits or {"train": 6, "test": 2}).items():
        for trajectory in range(count):
            for t in range(steps):
                write_png(root / split / f"traj_{trajectory:05d}" / f"{t}.png", bair_frame(trajectory, t))
    return root


# ----------------------------------------------------------------------------------------------------------- CARLA
def carla_coords(video: int, num_frames: int) -> np.ndarray:
    """(T, 3) float: x = 1000 * video + t, y = -t, a third column that must not be returned."""
    t = np.arange(num_frames, dtype=np.float64)
    return np.stack([1000.0 * video + t, -t, np.full_like(t, 7.0)], axis=1)


def write_carla(
    root: str | Path,
    num_train: int = 4,
    num_test: int = 2,
    num_frames: int = 40,
    size: int = 32,
    csv_dir: str = "/original/machine/no-traffic",
) -> Path:
    """video_<i>.pt (uint8 (T, H, W, 3)), coords_<i>.npy and video_{train,test}.csv as the FDM release has them
    (the CSVs name the files by an absolute path from another machine; only the file name counts)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(num_train + num_test):
        frames = fixture_frames(num_frames, size, size, seed=i)
        frames[..., 1] = i  # green = video id
        torch.save(torch.from_numpy(frames), root / f"video_{i}.pt")
        np.save(root / f"coords_{i}.npy", carla_coords(i, num_frames))
    for split, ids in (("train", range(num_train)), ("test", range(num_train, num_train + num_test))):
        lines = [",path"] + [f"{n},{csv_dir}/video_{i}.pt" for n, i in enumerate(ids)]
        (root / f"video_{split}.csv").write_text("\n".join(lines) + "\n")
    return root
