"""Shared plumbing of the real data sets: a cached file index, the skipped-video log, clip resizing and the common
DataModule behaviour (cache folder, end-of-epoch report); the loaders come from ``datamodules/loaders.py``.

File index. Probing a video (open it, read its frame count and frame rate, decode its last key frame) costs ~10 ms;
Kinetics-600 has ~500k videos. ``probe_cached`` stores what it learnt per file in a JSON file keyed by the path
relative to the data root, and reuses an entry while the file's size and mtime are unchanged, so a second start only
stats the files. Files that fail to probe are stored too (with the error) and never sampled.

Skipped videos. A file can still fail later (a truncation past the last key frame, a flaky network file system).
``__getitem__`` then returns the next index's clip instead (deterministic) and appends one line to a ``SkipLog``.
DataLoader workers are separate processes and DDP ranks separate programs, so the log lives in files, one per process,
under ``<cache_dir>/skipped/<session>/``: appends are process-local and need no lock, and any process can read the
whole session. The session name is made in ``setup()`` and broadcast from rank 0, so all ranks of one run write to
the same folder; the DataModule adds a ``SkippedVideoReport`` callback to its trainer that reports the new entries at
the end of every epoch on rank 0, after a barrier so every rank's lines are in; ``corrupt_files()`` on a DataModule
lists what failed at index time and at load time. Across nodes the report covers what rank 0 can see: all ranks
when ``cache_dir`` is on a shared file system (the default puts it beside the data), otherwise its own node.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from video_diffusion_lab.datamodules.loaders import ClipDataModule

INDEX_FORMAT = 1
MAX_SUBSTITUTES = 16  # consecutive unreadable files tolerated before the run stops: beyond that the data is broken


# ------------------------------------------------------------------------------------------------------ cache folder
def resolve_cache_dir(root: Path, cache_dir: str | Path | None, name: str) -> Path:
    """``cache_dir`` if given, else ``<root>/.vdiff_cache`` when the data folder is writable (shared by every node that
    sees the data), else a per-user folder keyed by the root's path."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    beside = root / ".vdiff_cache"
    if beside.is_dir() and os.access(beside, os.W_OK) or not beside.exists() and os.access(root, os.W_OK):
        return beside
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vdiff" / f"{name}-{digest}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write then rename, so a reader (another rank, another node) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


# -------------------------------------------------------------------------------------------------------- file index
def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def probe_cached(
    root: Path,
    relative_paths: Iterable[str],
    cache_file: Path,
    probe: Callable[[Path], dict[str, Any]],
    workers: int = 8,
) -> tuple[dict[str, dict[str, Any]], int]:
    """Probe information per file (``probe``'s dict, or ``{"error": ...}``), from ``cache_file`` where the file is
    unchanged. Returns (info by relative path, number of files probed now). Rewrites the cache when anything changed."""
    relative_paths = list(relative_paths)
    cached: dict[str, dict[str, Any]] = {}
    if cache_file.is_file():
        try:
            data = json.loads(cache_file.read_text())
            if data.get("format") == INDEX_FORMAT:
                cached = data["files"]
        except (OSError, ValueError, KeyError):
            cached = {}  # an unreadable cache is rebuilt, never fatal
    infos: dict[str, dict[str, Any]] = {}
    to_probe: list[tuple[str, tuple[int, int] | None]] = []
    for rel in relative_paths:
        key = _stat_key(root / rel)
        entry = cached.get(rel)
        if entry is not None and key is not None and [entry.get("size"), entry.get("mtime_ns")] == list(key):
            infos[rel] = entry
        else:
            to_probe.append((rel, key))

    def run(item: tuple[str, tuple[int, int] | None]) -> tuple[str, dict[str, Any]]:
        rel, key = item
        if key is None:
            return rel, {"error": "missing or unreadable file"}
        if key[0] == 0:
            return rel, {"size": 0, "mtime_ns": key[1], "error": "empty file"}
        try:
            info = dict(probe(root / rel))
        except Exception as error:  # noqa: BLE001 - any failure marks the file unusable; the run goes on
            info = {"error": f"{type(error).__name__}: {str(error).strip()[:300]}"}
        info.update(size=key[0], mtime_ns=key[1])
        return rel, info

    if to_probe:
        # Threads, not processes: decord and file reads release the GIL, and nothing forks a process that may
        # already hold CUDA or NCCL state.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            infos.update(pool.map(run, to_probe))
    if to_probe or set(cached) != set(infos):
        write_json_atomic(cache_file, {"format": INDEX_FORMAT, "root": str(root), "files": infos})
    return infos, len(to_probe)


# --------------------------------------------------------------------------------------------------- skipped videos
class SkipLog:
    """Append-only record of files that failed at load time; shared through files so that DataLoader workers and
    DDP ranks all add to one session. Picklable (only a folder path), so it travels into workers."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else None

    def record(self, path: str, error: BaseException) -> None:
        if self.directory is None:
            return
        message = f"{type(error).__name__}: {str(error).strip()}".replace("\t", " ").replace("\n", " ")[:300]
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / f"{socket.gethostname()}-{os.getpid()}.tsv", "a") as log:
                log.write(f"{path}\t{message}\n")
        except OSError:
            pass  # losing a log line must never stop training

    def entries_by_process(self) -> dict[str, list[tuple[str, str]]]:
        """(path, error) per skip event, in order, for each process (log file) of the session."""
        if self.directory is None or not self.directory.is_dir():
            return {}
        found = {}
        for file in sorted(self.directory.glob("*.tsv")):
            found[file.name] = [tuple(line.partition("\t")[::2]) for line in file.read_text().splitlines()]
        return found

    def entries(self) -> list[tuple[str, str]]:
        """(path, error) per skip event of the session, all processes."""
        return [entry for entries in self.entries_by_process().values() for entry in entries]


def new_session_name() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def load_or_substitute(
    dataset_size: int,
    index: int,
    load: Callable[[int], dict[str, torch.Tensor]],
    describe: Callable[[int], str],
    errors: tuple[type[BaseException], ...],
    skip_log: SkipLog,
) -> dict[str, torch.Tensor]:
    """``load(index)``; when it raises one of ``errors``, log the file and try index+1, index+2, ... so a run never
    stops for one bad file and evaluation stays deterministic. ``"index"`` stays the requested index (the evaluation
    seed and output names use it); ``"source_index"`` says whose clip it really is."""
    if not 0 <= index < dataset_size:
        raise IndexError(index)
    last_error: BaseException | None = None
    tries = min(dataset_size, MAX_SUBSTITUTES)
    for offset in range(tries):
        source = (index + offset) % dataset_size
        try:
            item = load(source)
        except errors as error:
            skip_log.record(describe(source), error)
            last_error = error
            continue
        item["index"] = torch.tensor(index)
        item["source_index"] = torch.tensor(source)
        return item
    raise RuntimeError(
        f"{tries} consecutive items from index {index} could not be read "
        f"(last: {describe((index + tries - 1) % dataset_size)}); the data set looks broken"
    ) from last_error


class SkippedVideoReport(Callback):
    """Reports, on rank 0 at the end of every epoch, the files skipped since the last report."""

    def __init__(self, datamodule: RealDataModule, show: int = 5):
        self.datamodule, self.show = datamodule, show
        self.reported: dict[str, int] = {}  # lines already reported, per log file

    def report(self, trainer: pl.Trainer, when: str) -> None:
        trainer.strategy.barrier("skipped_video_report")  # every rank has finished the epoch: its lines are written
        if trainer.global_rank != 0:
            return
        by_process = self.datamodule.skip_log.entries_by_process()
        new = [entry for name, entries in by_process.items() for entry in entries[self.reported.get(name, 0) :]]
        self.reported = {name: len(entries) for name, entries in by_process.items()}
        if not new:
            return
        distinct = {path for entries in by_process.values() for path, _ in entries}
        first = "; ".join(f"{path} ({message})" for path, message in new[: self.show])
        rank_zero_warn(
            f"{type(self.datamodule).__name__}: {len(new)} clip(s) replaced by the next one because their file could "
            f"not be read ({when}, epoch {trainer.current_epoch}); {len(distinct)} distinct unreadable file(s) this "
            f"run, log in {self.datamodule.skip_log.directory}. First: {first}"
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report(trainer, "training")

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report(trainer, "validation")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report(trainer, "test")

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report(trainer, "predict")


# ------------------------------------------------------------------------------------------------------------ frames
def uint8_to_unit_range(video: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [-1, 1], the same arithmetic as ``frames_to_clip`` (bit for bit)."""
    return video.to(torch.float32).div_(127.5).sub_(1)


def frames_to_clip(
    frames: np.ndarray | torch.Tensor,
    image_size: int,
    random_crop: bool = False,
    flip: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (T, H, W, C) frames -> float (T, C, image_size, image_size) in [-1, 1]: resize the short side to
    ``image_size`` (antialiased, only when needed), then crop the centre (or a random square), optionally flip."""
    video = torch.as_tensor(frames).permute(0, 3, 1, 2)  # a view: long clips (CARLA, 1000 frames) are copied once
    height, width = video.shape[-2:]
    if min(height, width) != image_size:
        scale = image_size / min(height, width)
        size = (max(image_size, round(height * scale)), max(image_size, round(width * scale)))
        video = F.interpolate(video.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        video = video.clamp_(0, 255)
    height, width = video.shape[-2:]
    if random_crop:
        top = int(torch.randint(height - image_size + 1, (1,), generator=generator))
        left = int(torch.randint(width - image_size + 1, (1,), generator=generator))
    else:
        top, left = (height - image_size) // 2, (width - image_size) // 2
    video = video[:, :, top : top + image_size, left : left + image_size]
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        video = video.flip(-1)
    clip = torch.empty(video.shape, dtype=torch.float32)
    clip.copy_(video)  # converts and makes (T, C, H, W) contiguous in one pass
    return clip.div_(127.5).sub_(1)


def resize_uint8(frames: np.ndarray | torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> uint8 (T, 3, S, S): the frames as they are when already S x S, else resized and cropped
    as ``frames_to_clip`` does and rounded back to uint8 (an error of at most half a level)."""
    frames = torch.as_tensor(frames)
    if frames.shape[1] == frames.shape[2] == image_size:
        return frames.permute(0, 3, 1, 2).contiguous()
    return frames_to_clip(frames, image_size).add_(1).mul_(127.5).round_().to(torch.uint8)


def unit_range_after_transfer(trainer: pl.Trainer | None, batch: Any) -> Any:
    """A batch whose "video" is uint8 (loaders ship a quarter of the bytes) -> float in [-1, 1], where the batch now
    is (on the accelerator). A model that keeps whole training videos on the CPU and converts only the frames it picks
    (``converts_training_frames``: FDM) gets them as uint8 in training. For ``on_after_batch_transfer``."""
    video = batch.get("video") if isinstance(batch, dict) else None
    module = trainer.lightning_module if trainer is not None else None
    if trainer is not None and trainer.training and getattr(module, "converts_training_frames", False):
        return batch
    if isinstance(video, torch.Tensor) and video.dtype == torch.uint8:
        batch = {**batch, "video": uint8_to_unit_range(video)}
    return batch


def window_start(available: int, span: int, random: bool) -> int:
    """First frame of a ``span``-frame window in ``available`` frames: uniform in training, 0 in evaluation.
    Uses the torch RNG, which the training loader seeds per (seed, epoch, clip) (``datamodules.loaders``)."""
    if span > available:
        raise ValueError(f"a window of {span} frames does not fit in {available} frames")
    return int(torch.randint(available - span + 1, (1,))) if random else 0


def carve_validation(count: int, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) positions out of ``count`` items: ``val_size`` of them drawn with a fixed seed, both sorted."""
    if not 0 <= val_size < count:
        raise ValueError(f"val_size: must lie in [0, {count}) (training items available), got {val_size}")
    chosen = np.random.default_rng(seed).permutation(count)[:val_size]
    is_val = np.zeros(count, dtype=bool)
    is_val[chosen] = True
    return np.flatnonzero(~is_val).tolist(), np.flatnonzero(is_val).tolist()


# -------------------------------------------------------------------------------------------------------- DataModule
class RealDataModule(ClipDataModule):
    """Loaders, cache folder and skipped-file reporting shared by the real data sets. Subclasses set
    ``self.root``, ``self.cache_name`` and implement ``build_dataset(split)``; ``setup()`` fills ``self.datasets``."""

    cache_name = "data"

    def __init__(self, batch_size: int, eval_batch_size: int | None, num_workers: int, cache_dir: str | None):
        super().__init__(batch_size, eval_batch_size, num_workers)
        self._cache_dir_arg = cache_dir
        self.datasets: dict[str, Dataset] = {}
        self.skip_log = SkipLog(None)
        self._session_trainer: pl.Trainer | None = None

    @property
    def pin_memory(self) -> bool:
        return torch.cuda.is_available()

    @property
    def cache_dir(self) -> Path:
        return resolve_cache_dir(self.root, self._cache_dir_arg, self.cache_name)

    def check_layout(self) -> None:
        """Raise FileNotFoundError / ValueError saying what was expected where; subclasses extend."""
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{type(self).__name__}: root {str(self.root)!r} is not a folder. {self.how_to_get}"
            )

    how_to_get = ""

    def build_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def stage_splits(self, stage: str | None) -> tuple[str, ...]:
        return {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage or "", ("train", "val", "test")
        )

    def setup(self, stage: str | None = None) -> None:
        self.check_layout()
        self.start_skip_session()
        for split in self.stage_splits(stage):
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)
                rank_zero_info(f"{type(self).__name__}: {split} split, {len(self.datasets[split])} items")

    def start_skip_session(self) -> None:
        """One skipped-file log per run (per trainer), shared by all ranks; the report callback joins the trainer
        once. The datasets hold this same SkipLog object, so a new session reaches datasets built earlier."""
        trainer = self.trainer
        if self.skip_log.directory is None or trainer is not None and self._session_trainer is not trainer:
            session = new_session_name()
            if trainer is not None and trainer.world_size > 1:
                session = trainer.strategy.broadcast(session, src=0)  # setup runs on every rank: a safe collective
            self.skip_log.directory = self.cache_dir / "skipped" / session
            self._session_trainer = trainer
        if trainer is not None and not any(
            isinstance(c, SkippedVideoReport) and c.datamodule is self for c in trainer.callbacks
        ):
            trainer.callbacks.append(SkippedVideoReport(self))

    def skipped_files(self) -> list[tuple[str, str]]:
        """(path, error) for every clip replaced at load time this run, from all workers and ranks."""
        return self.skip_log.entries()

    def dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
            self.datasets.setdefault(split, self.build_dataset(split))
        return self.datasets[split]
