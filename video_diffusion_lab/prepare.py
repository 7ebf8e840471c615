"""``vdiff-prepare``: a data set in its published format -> LitData optimized chunks at training resolution, per split.

    vdiff-prepare DATASET SOURCE OUTPUT --image-size S --num-frames T [--workers N] [--splits train val test]

DATASET is ``kinetics`` | ``bair`` | ``carla`` | ``folder``; SOURCE is the folder the file-based data module takes as
its ``root``; OUTPUT gets one LitData data set per split (``OUTPUT/<split>/index.json`` + ``chunk-*.bin``) and
``OUTPUT/vdiff_prepare.json``, the index of the run: settings, every split's source count, samples written,
skipped sources (path and reason) and class names. ``datamodules.StreamingVideoDataModule`` reads OUTPUT, on local
disk or after a copy to an object store.

What is read. The sources are listed and read by the file-based data modules themselves (``build_dataset(split)``
and the data set's ``read``), so a split holds exactly the videos the file-based module trains and evaluates on
(BAIR's and CARLA's validation carved from train with the same ``--val-size`` and ``--seed``); ``folder`` is any
folder of videos in split folders, ``SOURCE/{train,val,test}/**/*.{mp4,webm,mkv,avi}`` (class sub-folders give
labels), read like Kinetics class folders.

What is stored, per source video: every frame (or the first ``--max-frames``) resized to ``--image-size`` (short
side, centre crop, as the data modules do) as uint8 (T, 3, S, S), its ``frame_indices`` in the source, the source's
``index`` in its split (line ``index + 1`` of ``OUTPUT/<split>/sources.txt`` names the file), and the data set's
labels: ``label`` (Kinetics class index; ``classes`` in the index), ``actions`` and ``endeffector_pos`` (BAIR
TFRecords), ``coords`` (CARLA). Whole sources, not one window: the paper configs train for about 20 (RaMViD) to 140
(VDM) epochs of Kinetics, so a fixed window per video would show the model the same 16 frames every time; the
streaming module draws a random window per epoch, as the file-based one does. uint8, not re-encoded video: a stored
window becomes a clip by a copy, over a hundred times cheaper than decoding it from H.264 and without H.264's loss
(benchmarks/results/dataloader_throughput.md measures both).

Resumable. Each split is written in parts of ``--part-size`` sources, each a ``litdata.optimize`` call appending
to the split's chunks; the index records the parts done. A rerun with the same settings skips them, cuts the
split's ``index.json`` back to the last recorded part (a part interrupted after LitData wrote it is redone, never
counted twice) and goes on. Unreadable sources (corrupt, truncated, missing) are skipped and listed; they never
stop the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

try:
    from litdata import optimize
except ModuleNotFoundError as missing:
    raise SystemExit(
        "vdiff-prepare needs LitData: pip install --no-deps litdata==0.2.76 && pip install -e '.[streaming]' "
        "(without its declared torchvision, which would replace the installed torch)"
    ) from missing
from torch.utils.data import Dataset
from tqdm import tqdm

from video_diffusion_lab.datamodules.bair import BAIRDataModule
from video_diffusion_lab.datamodules.carla import CARLADataModule
from video_diffusion_lab.datamodules.kinetics import KineticsDataModule
from video_diffusion_lab.datamodules.video_index import RealDataModule, SkipLog, resize_uint8, write_json_atomic

DATASETS = ("kinetics", "bair", "carla", "folder")
SPLITS = ("train", "val", "test")
INDEX_NAME = "vdiff_prepare.json"
INDEX_FORMAT = 1
SOURCES_NAME = "sources.txt"
CHUNK_BYTES = "256MB"  # LitData's unit of download and cache eviction: a few hundred Kinetics videos at 64x64


@dataclass(frozen=True)
class Settings:
    """What the chunks depend on: a rerun must use the same to continue a run."""

    dataset: str
    source: str
    image_size: int
    num_frames: int
    max_frames: int | None
    val_size: int | None
    seed: int
    part_size: int


# ------------------------------------------------------------------------------------------------------ the sources
def source_module(settings: Settings, cache_dir: Path | None) -> RealDataModule:
    """The file-based data module that lists and reads the sources."""
    root = settings.source
    common = {"image_size": settings.image_size, "cache_dir": None if cache_dir is None else str(cache_dir)}
    carve = {} if settings.val_size is None else {"val_size": settings.val_size}
    if settings.dataset in ("kinetics", "folder"):
        return KineticsDataModule(root, num_frames=settings.num_frames, **common)
    if settings.dataset == "bair":
        return BAIRDataModule(root, num_frames=settings.num_frames, seed=settings.seed, **carve, **common)
    return CARLADataModule(root, num_frames=settings.num_frames, seed=settings.seed, **carve, **common)


def split_sources(module: RealDataModule, split: str) -> tuple[Dataset, dict[str, str], int]:
    """(the data set of a split, {path: reason} of the sources left out when it was indexed, the number of
    annotated sources absent from disk)."""
    dataset = module.build_dataset(split)
    problems = getattr(module, "index_problems", {}).get(split, {})
    left_out = dict(problems.get("corrupt", {}))
    left_out.update(dict.fromkeys(problems.get("too_short", []), "shorter than one clip"))
    return dataset, left_out, problems.get("missing", 0)


class SourceWriter:
    """What ``litdata.optimize`` runs per source (in its worker processes, hence a picklable object): read the
    source with its data set's reader, store it at training resolution; None (skipped, logged) if it is unreadable."""

    def __init__(self, dataset: Dataset, image_size: int, max_frames: int | None, skip_log: SkipLog):
        self.dataset, self.image_size, self.max_frames, self.skip_log = dataset, image_size, max_frames, skip_log

    def kept_frames(self, available: int) -> range:
        return range(min(available, self.max_frames or available))

    def __call__(self, index: int) -> dict[str, Any] | None:
        try:
            item = self.dataset.read(index, self.kept_frames)
        except self.dataset.read_errors as error:
            self.skip_log.record(self.dataset.describe(index), error)
            return None
        frames = item.pop("frames")
        sample: dict[str, Any] = {"video": resize_uint8(frames, self.image_size).numpy(), "index": index}
        sample.update({key: np.asarray(value) for key, value in item.items()})  # frame_indices, labels
        return sample


# ------------------------------------------------------------------------------------------------------------ index
def load_index(output: Path, settings: Settings) -> dict[str, Any]:
    path = output / INDEX_NAME
    if not path.is_file():
        return {"format": INDEX_FORMAT, "settings": asdict(settings), "splits": {}}
    index = json.loads(path.read_text())
    if index.get("settings") != asdict(settings):
        changed = {
            k: (index.get("settings", {}).get(k), v)
            for k, v in asdict(settings).items()
            if index.get("settings", {}).get(k) != v
        }
        raise ValueError(
            f"{path}: {output} was prepared with other settings ({changed}, as (then, now)); "
            "rerun with the same settings to continue it, or choose another OUTPUT"
        )
    return index


def litdata_index(folder: Path) -> dict[str, Any] | None:
    path = folder / "index.json"
    return json.loads(path.read_text()) if path.is_file() else None


def roll_back(folder: Path, chunks_done: int) -> None:
    """Keep the split's chunks up to the last recorded part: cut ``index.json`` there and delete chunk files it no
    longer names (a part interrupted after LitData wrote them)."""
    index = litdata_index(folder)
    if index is not None and len(index["chunks"]) > chunks_done:
        index["chunks"] = index["chunks"][:chunks_done]
        write_json_atomic(folder / "index.json", index)
    named = {chunk["filename"] for chunk in (index or {"chunks": []})["chunks"]}
    for file in folder.glob("chunk-*.bin") if folder.is_dir() else ():
        if file.name not in named:
            file.unlink()


def save_index(output: Path, index: dict[str, Any]) -> None:
    write_json_atomic(output / INDEX_NAME, index)


def prepare_split(dataset: Dataset, split: str, index: dict[str, Any], output: Path, workers: int) -> dict[str, Any]:
    """Write the split's remaining parts; its record in ``index`` (saved after every part) says what is done."""
    settings = index["settings"]
    record = index["splits"][split]
    folder, skip_log = output / split, SkipLog(output / ".vdiff_prepare" / "skipped" / split)
    folder.mkdir(parents=True, exist_ok=True)
    # Line i names the source of the samples with "index" i (LitData would read a path string as a video file).
    (folder / SOURCES_NAME).write_text("".join(f"{dataset.describe(i)}\n" for i in range(len(dataset))))
    writer = SourceWriter(dataset, settings["image_size"], settings["max_frames"], skip_log)
    part_size = settings["part_size"]
    done = min(record["parts_done"] * part_size, len(dataset))
    with tqdm(total=len(dataset), initial=done, desc=f"{split}", unit="video", file=sys.stdout) as progress:
        for number, start in enumerate(range(0, len(dataset), part_size)):
            if number < record["parts_done"]:
                continue
            stop = min(start + part_size, len(dataset))
            roll_back(folder, record["chunks"])
            # fork: workers start in milliseconds (spawn re-imports torch per part) and inherit the data set.
            optimize(
                writer,
                list(range(start, stop)),
                str(folder),
                chunk_bytes=CHUNK_BYTES,
                num_workers=workers,
                mode="append" if record["chunks"] else None,
                start_method="fork",
                verbose=False,
            )
            chunks = (litdata_index(folder) or {"chunks": []})["chunks"]
            record.update(parts_done=number + 1, chunks=len(chunks), samples=sum(c["chunk_size"] for c in chunks))
            record["skipped"].update(dict(skip_log.entries()))
            save_index(output, index)
            progress.update(stop - start)
    return record


# ------------------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vdiff-prepare",
        description=__doc__.split("\n\n")[0],
        epilog="Rerun the same command to continue an interrupted run. Docs: docs/streaming.md",
    )
    parser.add_argument("dataset", choices=DATASETS, help="the published format of SOURCE")
    parser.add_argument("source", type=Path, help="the folder the file-based data module takes as its root")
    parser.add_argument("output", type=Path, help="where the chunks go (a local or shared folder)")
    parser.add_argument("--image-size", type=int, required=True, help="training resolution S (short side + crop)")
    parser.add_argument(
        "--num-frames",
        type=int,
        required=True,
        help="training clip length T: sources shorter than T frames are left out",
    )
    parser.add_argument(
        "--max-frames", type=int, default=None, help="keep the first N frames of each source (default: all; N >= T)"
    )
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes reading sources")
    parser.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="BAIR / CARLA: validation sources carved from train (default: the data module's)",
    )
    parser.add_argument("--seed", type=int, default=0, help="BAIR / CARLA: seed of the validation carve")
    parser.add_argument(
        "--part-size",
        type=int,
        default=2000,
        help="sources per resumable part (work redone at most once after an interruption)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="the file index cache (default: the data module's, beside SOURCE)"
    )
    args = parser.parse_args(argv)
    for name in ("image_size", "num_frames", "workers", "part_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_frames is not None and args.max_frames < args.num_frames:
        parser.error(f"--max-frames {args.max_frames} is shorter than a clip (--num-frames {args.num_frames})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        args.dataset,
        str(args.source.expanduser().resolve()),
        args.image_size,
        args.num_frames,
        args.max_frames,
        args.val_size,
        args.seed,
        args.part_size,
    )
    output = args.output.expanduser()
    output.mkdir(parents=True, exist_ok=True)
    index = load_index(output, settings)
    module = source_module(settings, args.cache_dir)
    module.check_layout()
    if hasattr(module, "classes"):
        index["classes"] = module.classes
    for split in args.splits:
        dataset, left_out, absent = split_sources(module, split)
        record = index["splits"].setdefault(
            split, {"sources": len(dataset), "parts_done": 0, "chunks": 0, "samples": 0, "skipped": {}}
        )
        if record["sources"] != len(dataset):
            raise ValueError(
                f"{output / INDEX_NAME}: the {split} split had {record['sources']} sources when this "
                f"run started, {settings.source} now gives {len(dataset)}; use a new OUTPUT"
            )
        record["skipped"].update(left_out)
        record["annotated_but_absent"] = absent
        record = prepare_split(dataset, split, index, output, args.workers)
        print(
            f"{split}: {record['samples']} of {record['sources'] + len(left_out)} sources written to "
            f"{output / split}, {len(record['skipped'])} skipped"
        )
        for path, reason in list(record["skipped"].items())[:10]:
            print(f"  skipped {path}: {reason}")
        if len(record["skipped"]) > 10:
            print(f"  ... all {len(record['skipped'])} listed under splits.{split}.skipped in {output / INDEX_NAME}")
    save_index(output, index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
