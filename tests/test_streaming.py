"""``vdiff-prepare`` then ``StreamingVideoDataModule``: every published format prepared into LitData chunks and
trained on from the CLI; the clips equal the file-based data modules'; a 2-process DDP epoch sees every sample once;
a killed run resumes loss for loss; an interrupted preparation continues; broken prepared data stops with its name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback

from tests.fixtures_real_data import (
    fixture_frames,
    truncate,
    write_bair_tfrecords,
    write_carla,
    write_kinetics,
    write_mp4,
)
from tests.run_callbacks import read_losses
from tests.tiny_run import run_vdiff, run_vdiff_ddp, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab import prepare
from video_diffusion_lab.datamodules import StreamingVideoDataModule
from video_diffusion_lab.datamodules.bair import BAIRDataModule
from video_diffusion_lab.datamodules.carla import CARLADataModule
from video_diffusion_lab.datamodules.kinetics import KineticsDataModule
from video_diffusion_lab.datamodules.video_index import uint8_to_unit_range

pytestmark = pytest.mark.usefixtures("single_thread")  # losses compared bit for bit with a one-thread subprocess
CLIP = ["--image-size", "8", "--num-frames", "4"]  # the tiny RaMViD config's clips (tests/tiny_run.py)


class RecordIndices(Callback):
    """Appends {"rank", "epoch", "index": [...], "start": [...]} per trained batch to ``path``: which samples each rank
    trained on, from which frame."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        record = {
            "rank": trainer.global_rank,
            "epoch": trainer.current_epoch,
            "index": batch["index"].tolist(),
            "start": batch["frame_indices"][:, 0].tolist(),
        }
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")


def write_folder(root: Path) -> Path:
    """A plain folder of videos in split folders, no classes, one of them truncated."""
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for i in range(count):
            write_mp4(root / split / f"clip{i}.mp4", fixture_frames(12, 24, 32, seed=i))
    truncate(write_mp4(root / "train" / "broken.mp4", fixture_frames(12, 24, 32)), 0.4)
    return root


SOURCES = {  # format -> (fixture writer, the file-based data module on the same root)
    "kinetics": (
        lambda root: write_kinetics(root, "folders") and root,
        lambda root: KineticsDataModule(str(root), num_frames=4, image_size=8),
    ),
    "bair": (
        lambda root: write_bair_tfrecords(root, {"train": 10, "test": 4}, per_file=4).parent,
        lambda root: BAIRDataModule(str(root), num_frames=4, image_size=8, val_size=2),
    ),
    "carla": (
        lambda root: write_carla(root, num_train=4, num_test=2, num_frames=20, size=16),
        lambda root: CARLADataModule(str(root), num_frames=4, image_size=8),
    ),
    "folder": (write_folder, lambda root: KineticsDataModule(str(root), num_frames=4, image_size=8)),
}


def prepare_fixture(name: str, tmp: Path, *extra: str) -> tuple[Path, Path]:
    source = SOURCES[name][0](tmp / f"{name}_source")
    output = tmp / f"{name}_prepared"
    args = [name, str(source), str(output), *CLIP, "--workers", "2"]
    if name == "bair":
        args += ["--val-size", "2"]
    assert prepare.main([*args, *extra]) == 0
    return source, output


def streaming_config(run_dir: Path, input_dir: Path, callbacks: list[dict] | None = None, **fields: Any) -> Path:
    """The tiny RaMViD config reading ``input_dir`` through StreamingVideoDataModule."""
    trainer = fields.pop("trainer", {})
    config_path = tiny_config(run_dir, trainer=trainer, callbacks=callbacks)
    config = yaml.safe_load(config_path.read_text())
    config["data"] = {
        "class_path": "StreamingVideoDataModule",
        "init_args": {
            "input_dir": str(input_dir),
            "num_frames": 4,
            "image_size": 8,
            "batch_size": 4,
            "num_workers": 0,
            **fields,
        },
    }
    config_path.write_text(yaml.safe_dump(config))
    return config_path


# ------------------------------------------------------------------------------------------------ every format
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_published_format_prepares_into_chunks_that_match_the_file_reader_and_train(
    name: str, tmp_path: Path
) -> None:
    source, output = prepare_fixture(name, tmp_path)
    index = json.loads((output / "vdiff_prepare.json").read_text())
    file_module = SOURCES[name][1](source)
    file_module.setup("test")
    expected_test = file_module.datasets["test"]
    assert index["splits"]["test"]["samples"] == len(expected_test)
    if name in ("kinetics", "folder"):  # the truncated (and empty) training videos are skipped and named
        skipped = index["splits"]["train"]["skipped"]
        assert any("truncated" in path or "broken" in path for path in skipped), skipped
    if name == "kinetics":
        assert index["classes"] == ["abseiling", "juggling balls", "zumba"]

    # The streamed test clips are the file-based module's, to the uint8 rounding of the stored frames.
    streaming = StreamingVideoDataModule(str(output), num_frames=4, image_size=8, batch_size=2)
    streaming.setup("test")
    clips = {int(clip["index"]): clip for clip in streaming.clips("test")}
    assert sorted(clips) == list(range(len(expected_test)))
    for position, clip in clips.items():
        reference = expected_test[position]
        video, expected = (
            uint8_to_unit_range(v) if v.dtype == torch.uint8 else v for v in (clip["video"], reference["video"])
        )  # CARLA's module ships uint8 too
        assert clip["video"].dtype == torch.uint8 and video.shape == expected.shape
        assert (video - expected).abs().max() <= 1 / 127.5 + 1e-6
        assert torch.equal(clip["frame_indices"], reference["frame_indices"])
        for key in set(reference) - {"video", "frame_indices", "index", "source_index"}:
            assert torch.allclose(clip[key].to(reference[key].dtype), reference[key]), key

    run_dir = tmp_path / "run"
    vdiff.run(["fit", "--config", str(streaming_config(run_dir, output)), "--trainer.max_steps", "2"])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert "StreamingClipLoader" not in str(checkpoint.get("loops", {}))  # only plain types are saved


# -------------------------------------------------------------------------------------------------------- DDP
def test_two_processes_train_on_every_sample_exactly_once_per_epoch(tmp_path: Path) -> None:
    _, output = prepare_fixture("bair", tmp_path)  # 8 training trajectories: batch 2 x 2 workers x 2 ranks
    record = tmp_path / "indices.jsonl"
    config = streaming_config(
        tmp_path / "run",
        output,
        batch_size=2,
        num_workers=2,
        trainer={"max_steps": -1, "max_epochs": 2, "limit_val_batches": 0},
        callbacks=[{"class_path": "tests.test_streaming.RecordIndices", "init_args": {"path": str(record)}}],
    )
    result = run_vdiff_ddp("fit", "--config", str(config), timeout=200)
    assert result.returncode == 0, result.stderr[-4000:]
    batches = [json.loads(line) for line in record.read_text().splitlines()]
    for epoch in (0, 1):
        seen = [i for b in batches if b["epoch"] == epoch for i in b["index"]]
        assert sorted(seen) == list(range(8)), f"epoch {epoch}: {sorted(seen)}"
        ranks = [{i for b in batches if b["epoch"] == epoch and b["rank"] == r for i in b["index"]} for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == 4
    starts = [
        {i: s for b in batches if b["epoch"] == epoch for i, s in zip(b["index"], b["start"])} for epoch in (0, 1)
    ]
    assert starts[0] != starts[1], "every epoch draws its own windows"


# ----------------------------------------------------------------------------------------------------- resume
def test_a_killed_run_resumes_with_the_same_batches_and_losses(tmp_path: Path) -> None:
    _, output = prepare_fixture("bair", tmp_path)  # 8 clips in batches of 2: 4 steps per epoch, 2 workers

    def config(run_dir: Path) -> Path:
        callbacks = [
            {"class_path": "tests.run_callbacks.RecordLosses", "init_args": {"path": str(run_dir / "losses.jsonl")}},
            {"class_path": "tests.test_streaming.RecordIndices", "init_args": {"path": str(run_dir / "indices.jsonl")}},
        ]
        return streaming_config(
            run_dir,
            output,
            batch_size=2,
            num_workers=2,
            callbacks=callbacks,
            trainer={"max_steps": 7, "limit_val_batches": 0},
        )

    vdiff.run(["fit", "--config", str(config(tmp_path / "reference"))])  # in-process, one thread, as the kill
    stopped = config(tmp_path / "stopped")
    killed = run_vdiff(
        "fit",
        "--config",
        str(stopped),
        "--trainer.callbacks+=tests.run_callbacks.SignalAt",
        "--trainer.callbacks.step=3",
        "--trainer.callbacks.signal_name=SIGKILL",
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert torch.load(tmp_path / "stopped" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    vdiff.run(["fit", "--config", str(stopped), "--ckpt_path", "last"])  # mid-epoch 0, on into epoch 1

    expected = read_losses(tmp_path / "reference" / "losses.jsonl")
    assert sorted(expected) == list(range(1, 8))
    assert read_losses(tmp_path / "stopped" / "losses.jsonl") == expected  # step 3 again after the kill: same loss

    def batches(run: str) -> list[list[int]]:
        return [json.loads(line)["index"] for line in (tmp_path / run / "indices.jsonl").read_text().splitlines()]

    reference_batches, stopped_batches = batches("reference"), batches("stopped")
    assert len(stopped_batches) == 7 + 1, "steps 1-7, and step 3 again after the kill"
    assert stopped_batches[:3] + stopped_batches[4:] == reference_batches and stopped_batches[3] == reference_batches[2]


# --------------------------------------------------------------------------------------------- preparation resume
def test_an_interrupted_preparation_continues_without_duplicates(tmp_path: Path, monkeypatch) -> None:
    _, clean = prepare_fixture("carla", tmp_path / "clean", "--part-size", "1")
    real_optimize, calls = prepare.optimize, []

    def interrupted(*args: Any, **kwargs: Any) -> None:
        calls.append(args[1])
        real_optimize(*args, **kwargs)
        if len(calls) == 3:  # LitData wrote the part's chunks and index, the run died before recording it
            raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "optimize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_fixture("carla", tmp_path, "--part-size", "1")
    monkeypatch.setattr(prepare, "optimize", real_optimize)
    prepare_fixture("carla", tmp_path, "--part-size", "1")  # the same command again
    output = tmp_path / "carla_prepared"

    def samples(folder: Path, split: str) -> list[tuple[int, bytes]]:
        module = StreamingVideoDataModule(str(folder), num_frames=None, image_size=8)
        module.setup("test" if split == "test" else "fit")
        return sorted((int(c["index"]), c["video"].numpy().tobytes()) for c in module.clips(split))

    for split in ("train", "val", "test"):
        assert samples(output, split) == samples(clean, split), split


# --------------------------------------------------------------------------------------------- broken prepared data
def test_missing_or_corrupt_prepared_data_stops_with_its_name(tmp_path: Path) -> None:
    missing = StreamingVideoDataModule(str(tmp_path / "nowhere"), num_frames=4, image_size=8)
    with pytest.raises(FileNotFoundError, match="nowhere/vdiff_prepare.json"):
        missing.setup("fit")
    _, output = prepare_fixture("carla", tmp_path)
    with pytest.raises(ValueError, match="prepared at 8x8"):
        StreamingVideoDataModule(str(output), num_frames=4, image_size=16).setup("fit")

    chunk = sorted((output / "train").glob("chunk-*.bin"))[0]
    garbled = bytearray(chunk.read_bytes())
    garbled[:64] = b"\xff" * 64  # the chunk's header: sample offsets now point nowhere
    chunk.write_bytes(bytes(garbled))
    module = StreamingVideoDataModule(str(output), num_frames=4, image_size=8, batch_size=1)
    module.setup("fit")  # same size: only reading can tell
    with pytest.raises(RuntimeError, match=f"{output / 'train'}.*corrupt"):
        list(module.clips("train"))

    truncate(chunk, 0.5)
    with pytest.raises(ValueError, match=f"chunk {chunk} is .* bytes"):
        module.setup("fit")
    (output / "test" / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match=str(output / "test" / "index.json")):
        module.setup("test")
