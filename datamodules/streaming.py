"""Clips streamed from the LitData chunks that ``vdiff-prepare`` writes, on a local folder or an object store
(``s3://``, ``gs://``, ``azure://`` as LitData supports), for any number of processes and nodes.

``input_dir`` is the prepare OUTPUT: ``<input_dir>/{train,val,test}/`` (LitData data sets) and
``<input_dir>/vdiff_prepare.json`` (settings, class names). Each stored sample is one whole source video at
training resolution (uint8), so a clip is a slice of it:
- training: the samples in a shuffled order (LitData: chunks, then samples in a chunk, from the run's seed and the
  epoch), split between the DDP ranks of all nodes and their loader workers, each sample once per epoch (a tail that
  would leave ranks with unequal batches is dropped); a random ``num_frames`` window every ``frame_stride`` frames,
  drawn from (seed, epoch, sample index) alone, so it is the same with any number of workers and after a resume;
- validation and test: every sample once, in order, the first ``eval_num_frames`` frames.
Batches have the framework's layout: {"video", "frame_indices", "index", and the data set's labels: "label",
"actions", "endeffector_pos", "coords"}. "video" leaves the workers as uint8 and becomes float in [-1, 1] on the
device (as ``CARLADataModule`` does: a 1000-frame CARLA video is 49 MB, not 196 MB, through the loader).

Resume. The training loader is LitData's ``StreamingDataLoader``, whose state (epoch, samples yielded, the
shuffle) Lightning keeps in the checkpoint. Lightning fetches a batch ahead of the one it trains on, so the state
saved is that of the batches trained (``callbacks.ExactResume`` moves ``position`` after each), and a resumed run
continues with the next batch the interrupted run would have trained on. Resume with the same number of processes,
workers and batch size for the same batches; LitData re-stripes the rest of the epoch otherwise.

A missing or incomplete prepared folder (no ``index.json``, a chunk file of another size than the index says) stops
at ``setup`` with an error naming the file; a chunk that cannot be decoded stops with an error naming it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.fs_provider import _get_fs_provider
from pytorch_lightning.utilities import rank_zero_info

from video_diffusion_lab.datamodules.loaders import TracksTrainedBatches, item_seed, shuffle_seed
from video_diffusion_lab.datamodules.video_index import unit_range_after_transfer

PREPARED_INDEX = "vdiff_prepare.json"  # written by video_diffusion_lab.prepare
HOW_TO_PREPARE = (
    "Write it with `vdiff-prepare DATASET SOURCE OUTPUT --image-size S --num-frames T` "
    "(docs/streaming.md) and pass OUTPUT as data.init_args.input_dir."
)


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def read_prepared_index(input_dir: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """``vdiff_prepare.json`` of a prepared folder or bucket prefix; an error naming it when absent or unreadable."""
    location = f"{input_dir.rstrip('/')}/{PREPARED_INDEX}"
    try:
        if not is_remote(input_dir):
            return json.loads(Path(input_dir.removeprefix("file://"), PREPARED_INDEX).read_text())
        with tempfile.TemporaryDirectory() as tmp:
            local = str(Path(tmp) / PREPARED_INDEX)
            _get_fs_provider(location, storage_options or {}).download_file(location, local)
            return json.loads(Path(local).read_text())
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"StreamingVideoDataModule: cannot read {location} ({error}). {HOW_TO_PREPARE}"
        ) from error


def check_local_split(folder: Path) -> None:
    """The split's LitData index exists and names chunk files of the sizes it records (a stat per chunk)."""
    index_file = folder / "index.json"
    try:
        chunks = json.loads(index_file.read_text())["chunks"]
    except (OSError, ValueError, KeyError) as error:
        raise FileNotFoundError(
            f"StreamingVideoDataModule: {index_file} is missing or unreadable ({error}); the "
            f"prepared folder {folder.parent} is incomplete. {HOW_TO_PREPARE}"
        ) from error
    for chunk in chunks:
        path = folder / chunk["filename"]
        size = path.stat().st_size if path.is_file() else None
        if size != chunk["chunk_bytes"]:
            raise ValueError(
                f"StreamingVideoDataModule: chunk {path} is {'missing' if size is None else f'{size} bytes'}"
                f", {index_file} says {chunk['chunk_bytes']} bytes: the prepared data is corrupt or was "
                "copied incompletely; copy it again or rerun vdiff-prepare into a new folder"
            )


class StreamingClips(StreamingDataset):
    """One prepared split: each stored source video -> one clip (a window of it) per epoch."""

    def __init__(
        self, input_dir: str, num_frames: int | None, frame_stride: int, train: bool, seed: int, **streaming: Any
    ):
        super().__init__(input_dir, shuffle=train, drop_last=train, seed=seed, **streaming)
        self.num_frames, self.frame_stride, self.train, self.window_seed = num_frames, frame_stride, train, seed
        self.location = input_dir

    @contextmanager
    def reading(self) -> Iterator[None]:
        """LitData's errors on a chunk that cannot be read, with what to do about it."""
        try:
            yield
        except (OSError, ValueError, RuntimeError, KeyError, IndexError) as error:
            raise RuntimeError(
                f"StreamingVideoDataModule: the prepared data in {self.location} cannot be read, it "
                f"is corrupt ({type(error).__name__}: {error}); copy it again or rerun vdiff-prepare "
                "into a new folder"
            ) from error

    def __iter__(self) -> StreamingClips:
        with self.reading():  # opens the first chunks
            return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        with self.reading():
            item = super().__getitem__(index)
        return self.clip(item) if isinstance(item, dict) else item

    def clip(self, item: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The sample's window: random in training (from seed, epoch, index), the first frames in evaluation."""
        video, index = item.pop("video"), int(item.pop("index"))
        available = video.shape[0]
        count = self.num_frames or (available - 1) // self.frame_stride + 1
        span = (count - 1) * self.frame_stride + 1
        if span > available:
            raise ValueError(
                f"StreamingVideoDataModule: sample {index} of {self.location} (sources.txt line {index + 1}) "
                f"has {available} frames; a clip of {count} frames every {self.frame_stride} spans {span}"
            )
        start = 0
        if self.train:
            generator = torch.Generator().manual_seed(item_seed(self.window_seed, self.current_epoch, index))
            start = int(torch.randint(available - span + 1, (1,), generator=generator))
        window = slice(start, start + span, self.frame_stride)
        clip = {"video": torch.from_numpy(np.ascontiguousarray(video[window])), "index": torch.tensor(index)}
        for key, value in item.items():  # frame_indices and per-frame labels follow the window; per-video stay
            value = np.asarray(value)
            clip[key] = torch.from_numpy(np.ascontiguousarray(value[window] if value.ndim else value))
        clip["frame_indices"] = clip["frame_indices"].long()
        return clip


class StreamingClipLoader(TracksTrainedBatches, StreamingDataLoader):
    """LitData's loader whose state is that of the batches trained on, not of those already fetched."""

    def state_dict(self) -> dict[str, Any]:
        trained, per_epoch = self.position["batches"], len(self)
        loaded = self._num_samples_yielded_streaming, self._latest_worker_idx
        # After the epoch's last batch, the state of a finished epoch: the resumed loader starts the next one.
        self._num_samples_yielded_streaming = len(self.dataset) if trained >= per_epoch else trained * self.batch_size
        self._latest_worker_idx = (trained - 1) % max(self.num_workers, 1)
        try:
            return super().state_dict()
        finally:
            self._num_samples_yielded_streaming, self._latest_worker_idx = loaded


class StreamingVideoDataModule(pl.LightningDataModule):
    """Prepared clips (``vdiff-prepare``) streamed from a local folder or an object store.

    ``num_frames`` None: whole stored videos (FDM's CARLA training). ``cache_dir`` / ``max_cache_size``: where and
    how much LitData keeps of a remote data set on each node's disk; ``storage_options``: the object store's client
    options (endpoint, credentials), as LitData takes them.
    """

    def __init__(
        self,
        input_dir: str,
        num_frames: int | None = 16,
        image_size: int = 64,
        frame_stride: int = 1,
        eval_num_frames: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        cache_dir: str | None = None,
        max_cache_size: str = "100GB",
        storage_options: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)  # logged under "data" by callbacks.RunConfigSaver
        if num_frames is not None and num_frames < 1 or frame_stride < 1:
            raise ValueError(f"num_frames (or None) and frame_stride must be >= 1, got {num_frames}, {frame_stride}")
        self.input_dir = str(input_dir).rstrip("/")
        self.num_frames, self.image_size, self.channels = num_frames, image_size, 3
        self.eval_num_frames = eval_num_frames or num_frames
        self.frame_stride = frame_stride
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.streaming = dict(cache_dir=cache_dir, max_cache_size=max_cache_size, storage_options=storage_options or {})
        self.prepared: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Check the prepared folder before any loader starts: its index, the clip size, the split's chunks."""
        self.prepared = read_prepared_index(self.input_dir, self.streaming["storage_options"])
        prepared_size = self.prepared["settings"]["image_size"]
        if prepared_size != self.image_size:
            raise ValueError(
                f"data.image_size: {self.image_size}, but {self.input_dir} was prepared at "
                f"{prepared_size}x{prepared_size}; prepare again with --image-size {self.image_size}"
            )
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage or "", ("train", "val", "test")):
            if split not in self.prepared["splits"]:
                raise FileNotFoundError(
                    f"StreamingVideoDataModule: {self.input_dir} has no prepared {split} split "
                    f"(it has {sorted(self.prepared['splits'])}). {HOW_TO_PREPARE}"
                )
            if not is_remote(self.input_dir):
                check_local_split(Path(self.input_dir.removeprefix("file://")) / split)
            rank_zero_info(
                f"StreamingVideoDataModule: {split} split, {self.prepared['splits'][split]['samples']} "
                f"videos in {self.input_dir}/{split}"
            )

    @property
    def classes(self) -> list[str]:
        if self.prepared is None:
            self.prepared = read_prepared_index(self.input_dir, self.streaming["storage_options"])
        return list(self.prepared.get("classes", []))

    @property
    def num_classes(self) -> int | None:
        return len(self.classes) or None

    def clips(self, split: str) -> StreamingClips:
        train = split == "train"
        return StreamingClips(
            f"{self.input_dir}/{split}",
            self.num_frames if train else self.eval_num_frames,
            self.frame_stride,
            train,
            shuffle_seed(),
            **self.streaming,
        )

    # ---------------------------------------------------------------------------------------------------- loaders
    def loader(self, split: str, batch_size: int) -> StreamingDataLoader:
        loader_type = StreamingClipLoader if split == "train" else StreamingDataLoader
        # Worker seeds come from this generator, not from the global RNG that training draws its noise from; workers
        # are not persistent: LitData hands each epoch's order to fresh workers.
        return loader_type(
            self.clips(split),
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(shuffle_seed()),
        )

    def train_dataloader(self) -> StreamingClipLoader:
        return self.loader("train", self.batch_size)

    def val_dataloader(self) -> StreamingDataLoader:
        return self.loader("val", self.eval_batch_size)

    def test_dataloader(self) -> StreamingDataLoader:
        return self.loader("test", self.eval_batch_size)

    def predict_dataloader(self) -> StreamingDataLoader:
        return self.loader("test", self.eval_batch_size)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return unit_range_after_transfer(self.trainer, batch)
