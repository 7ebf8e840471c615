"""The real data sets (Kinetics-600, BAIR, CARLA Town01) read from small fixtures written in their on-disk formats."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

import video_diffusion_lab.datamodules.kinetics as kinetics
from tests.fixtures_real_data import (
    frame_level,
    spoil_keeping_stat,
    write_bair_pngs,
    write_bair_tfrecords,
    write_carla,
    write_kinetics,
)
from video_diffusion_lab.datamodules.bair import BAIRDataModule
from video_diffusion_lab.datamodules.carla import CARLADataModule
from video_diffusion_lab.datamodules.kinetics import KineticsDataModule
from video_diffusion_lab.video_io import write_png

CLASSES = ("abseiling", "juggling balls", "zumba")


def red_levels(video: torch.Tensor) -> torch.Tensor:
    """Mean red level (0..255) per frame of a (T, C, H, W) clip in [-1, 1]."""
    return (video[:, 0].mean(dim=(1, 2)) + 1) * 127.5


def check_clip(item: dict[str, torch.Tensor], num_frames: int, image_size: int) -> None:
    video = item["video"]
    assert video.shape == (num_frames, 3, image_size, image_size) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert item["frame_indices"].shape == (num_frames,) and item["frame_indices"].dtype == torch.long
    assert item["index"].shape == () and item["index"].dtype == torch.long


def quiet_setup(datamodule: pl.LightningDataModule, *stages: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for stage in stages:
            datamodule.setup(stage)


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".vdiff_cache"))
    return target


# ------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def kinetics_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {}
    for layout in ("folders", "annotations"):
        roots[layout] = tmp_path_factory.mktemp(f"kinetics_{layout}")
        write_kinetics(roots[layout], layout, CLASSES)
    return roots


@pytest.fixture(scope="module")
def bair_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    roots = {"tfrecord": tmp_path_factory.mktemp("bair_tf"), "png": tmp_path_factory.mktemp("bair_png")}
    write_bair_tfrecords(roots["tfrecord"], {"train": 12, "test": 4}, per_file=4)
    write_bair_pngs(roots["png"], {"train": 6, "test": 2})
    return roots


@pytest.fixture(scope="module")
def carla_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_carla(tmp_path_factory.mktemp("carla") / "no-traffic", num_train=4, num_test=2, num_frames=40, size=32)


# ------------------------------------------------------------------------------------------------------- Kinetics
@pytest.mark.parametrize("layout", ["folders", "annotations"])
def test_kinetics_clips_labels_and_splits(kinetics_roots: dict[str, Path], layout: str) -> None:
    dm = KineticsDataModule(str(kinetics_roots[layout]), num_frames=8, image_size=32, frame_stride=2)
    with pytest.warns(UserWarning, match="2 of 8 videos unreadable"):
        dm.setup("fit")
    dm.setup("test")
    assert dm.classes == sorted(CLASSES) and dm.num_classes == 3
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 6, "val": 3, "test": 3}
    labels = []
    for i in range(3):
        item = dm.datasets["val"][i]
        check_clip(item, 8, 32)
        assert item["frame_indices"].tolist() == list(range(0, 16, 2))  # evaluation: the first window
        expected = torch.tensor(frame_level(item["frame_indices"].numpy())).float()
        assert torch.allclose(red_levels(item["video"]), expected, atol=6)  # the frames at frame_indices
        labels.append(int(item["label"]))
    assert labels == [0, 1, 2]
    corrupt = {Path(p).name for p in dm.corrupt_files()}
    assert corrupt == {"truncatedvid_000000_000010.mp4", "emptyvideo0_000000_000010.mp4"}
    assert dm.index_problems["train"]["missing"] == (1 if layout == "annotations" else 0)


def test_kinetics_training_windows_fps_and_augmentation(kinetics_roots: dict[str, Path]) -> None:
    dm = KineticsDataModule(
        str(kinetics_roots["folders"]),
        num_frames=6,
        image_size=24,
        target_fps=12.5,
        random_crop=True,
        horizontal_flip=True,
    )
    quiet_setup(dm, "fit")
    starts = set()
    torch.manual_seed(0)
    for _ in range(12):
        item = dm.datasets["train"][0]
        check_clip(item, 6, 24)
        positions = item["frame_indices"]
        assert (positions.diff() == 2).all() and positions[-1] < 24  # 25 fps -> 12.5 fps, inside the video
        starts.add(int(positions[0]))
        assert torch.allclose(red_levels(item["video"]), torch.tensor(frame_level(positions.numpy())).float(), atol=6)
    assert len(starts) > 1  # random windows in training
    with pytest.raises(ValueError, match="frame_stride, target_fps"):
        KineticsDataModule(str(kinetics_roots["folders"]), frame_stride=2, target_fps=10.0)


def test_kinetics_too_short_videos_are_left_out(kinetics_roots: dict[str, Path]) -> None:
    dm = KineticsDataModule(str(kinetics_roots["folders"]), num_frames=16, frame_stride=2, image_size=16)
    with pytest.raises(ValueError, match="no usable video"):
        quiet_setup(dm, "validate")  # 24-frame videos, clips need 31 frames
    assert len(dm.index_problems["val"]["too_short"]) == 3


def test_kinetics_index_cache_is_reused(kinetics_roots: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    root = copy_tree(kinetics_roots["annotations"], tmp_path / "k600")
    calls: list[str] = []
    real_probe = kinetics.probe_video
    monkeypatch.setattr(kinetics, "probe_video", lambda path: calls.append(path.name) or real_probe(path))
    quiet_setup(KineticsDataModule(str(root), num_frames=4, image_size=16), "fit")
    assert len(calls) == 7 + 3  # train: 6 good + the truncated one (the empty one is known from its size); val: 3
    calls.clear()
    dm = KineticsDataModule(str(root), num_frames=4, image_size=16)  # a second start
    quiet_setup(dm, "fit")
    assert calls == [] and len(dm.datasets["train"]) == 6
    assert (root / ".vdiff_cache" / "kinetics-index-train.json").is_file()
    changed = next((root / "val").glob("*.mp4"))
    changed.write_bytes(changed.read_bytes() + b"\0")  # a changed file is probed again, alone
    quiet_setup(KineticsDataModule(str(root), num_frames=4, image_size=16), "fit")
    assert calls == [changed.name]


def test_kinetics_corrupt_file_at_load_is_skipped_and_reported(kinetics_roots: dict[str, Path], tmp_path: Path) -> None:
    root = copy_tree(kinetics_roots["folders"], tmp_path / "k600")
    quiet_setup(KineticsDataModule(str(root), num_frames=4, image_size=16), "validate")  # index while files are fine
    spoiled = spoil_keeping_stat(root / "val" / "juggling balls" / "va1x0abcdef_000000_000010.mp4")
    dm = KineticsDataModule(str(root), num_frames=4, image_size=16, eval_batch_size=1, num_workers=2)
    quiet_setup(dm, "validate")
    items = list(dm.val_dataloader())
    assert [int(b["index"]) for b in items] == [0, 1, 2]
    assert [int(b["source_index"]) for b in items] == [0, 2, 2]  # the spoiled video 1 is replaced by video 2
    assert [int(b["label"]) for b in items] == [0, 2, 2]
    assert [path for path, _ in dm.skipped_files()] == [str(spoiled)]  # written by a worker process
    assert str(spoiled) in dm.corrupt_files()


def test_kinetics_skips_are_reported_at_epoch_end(kinetics_roots: dict[str, Path], tmp_path: Path) -> None:
    root = copy_tree(kinetics_roots["folders"], tmp_path / "k600")
    quiet_setup(KineticsDataModule(str(root), num_frames=4, image_size=16), "validate")
    spoil_keeping_stat(root / "val" / "zumba" / "va2x0abcdef_000000_000010.mp4")

    class Consume(pl.LightningModule):
        def validation_step(self, batch: dict, batch_idx: int) -> None:
            assert batch["video"].shape == (1, 4, 3, 16, 16)

    dm = KineticsDataModule(str(root), num_frames=4, image_size=16, eval_batch_size=1, num_workers=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match=r"1 clip\(s\) replaced .*va2x0abcdef"):
        trainer.validate(Consume(), datamodule=dm, verbose=False)


# ----------------------------------------------------------------------------------------------------------- BAIR
@pytest.mark.parametrize("layout", ["tfrecord", "png"])
def test_bair_clips_and_splits(bair_roots: dict[str, Path], layout: str) -> None:
    root = bair_roots[layout] / ("softmotion30_44k" if layout == "tfrecord" else "")  # both roots are accepted
    dm = BAIRDataModule(str(root), num_frames=20, eval_num_frames=16, val_size=2)
    quiet_setup(dm, "fit", "test")
    n_train = 12 if layout == "tfrecord" else 6
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": n_train - 2, "val": 2, "test": n_train // 3}
    trajectories = {}
    for split, length in (("train", 20), ("val", 16), ("test", 16)):
        ids = []
        for i in range(len(dm.datasets[split])):
            item = dm.datasets[split][i]
            check_clip(item, length, 64)
            positions = item["frame_indices"]
            assert (positions.diff() == 1).all() and positions[-1] < 30
            if split != "train":
                assert positions[0] == 0  # evaluation clips start at the first frame
            assert red_levels(item["video"]).round().tolist() == frame_level(positions.numpy()).tolist()
            assert torch.all(item["video"][:, 2] == 200 / 127.5 - 1)  # the aux1 camera
            trajectory = round(float((item["video"][0, 1, 0, 0] + 1) * 127.5))
            if layout == "tfrecord":
                assert item["actions"].shape == (length, 4) and item["endeffector_pos"].shape == (length, 3)
                assert item["actions"][:, 1].tolist() == positions.float().tolist()  # actions of the returned steps
                assert torch.all(item["actions"][:, 0] == trajectory)
            ids.append(trajectory)
        trajectories[split] = ids
    assert not set(trajectories["train"]) & set(trajectories["val"])  # validation carved out of train
    assert sorted(trajectories["train"] + trajectories["val"]) == list(range(n_train))
    assert trajectories["test"] == list(range(n_train // 3))
    if layout == "tfrecord":
        assert len(list((bair_roots["tfrecord"] / ".vdiff_cache" / "tfrecord-index" / "train").glob("*.index"))) == 3


def test_bair_validation_split_is_fixed(bair_roots: dict[str, Path]) -> None:
    def val_ids(seed: int) -> list[int]:
        dm = BAIRDataModule(str(bair_roots["tfrecord"]), num_frames=4, val_size=3, seed=seed)
        quiet_setup(dm, "validate")
        return [int(dm.datasets["val"][i]["actions"][0, 0]) for i in range(3)]

    assert val_ids(0) == val_ids(0)
    assert val_ids(0) != val_ids(1)


# ---------------------------------------------------------------------------------------------------------- CARLA
def as_model_input(dm: CARLADataModule, item: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CARLA item as the model receives it: uint8 from the data set, float after the data module's batch hook."""
    assert item["video"].dtype == torch.uint8
    return dm.on_after_batch_transfer(item, 0)


def test_carla_whole_videos_travel_as_uint8_and_reach_the_model_as_the_float_clip(carla_root: Path, tmp_path) -> None:
    from video_diffusion_lab.datamodules.carla import load_video
    from video_diffusion_lab.datamodules.video_index import frames_to_clip

    for size in (32, 16):  # the stored size (a copy) and a resize (rounded to uint8: within half a level)
        dm = CARLADataModule(str(carla_root), image_size=size, return_coords=False, num_workers=0, batch_size=2)
        quiet_setup(dm, "fit")
        item = dm.datasets["train"][0]
        assert item["video"].dtype == torch.uint8 and item["video"].shape == (40, 3, size, size)
        expected = frames_to_clip(load_video(carla_root / dm.datasets["train"].names[0]), size)
        tolerance = 0 if size == 32 else 0.5 / 127.5 + 1e-6
        torch.testing.assert_close(as_model_input(dm, item)["video"], expected, rtol=0, atol=tolerance)

    class Probe(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.videos: list[torch.Tensor] = []

        def training_step(self, batch, batch_idx):
            self.videos.append(batch["video"])
            return self.weight * batch["video"].mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    probe = Probe()
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(probe, datamodule=dm)
    (video,) = probe.videos
    assert video.dtype == torch.float32 and video.shape == (2, 40, 3, 16, 16) and -1 <= video.min() <= video.max() <= 1


def test_fdm_gets_uint8_training_videos_and_converts_only_the_frames_it_picks(carla_root: Path, tmp_path) -> None:
    from video_diffusion_lab.groups import ClipShape, TaskConfig
    from video_diffusion_lab.lightning_modules.fdm import FDM, FDMUNetConfig

    torch.manual_seed(0)
    model = FDM(
        clip=ClipShape(num_frames=4, image_size=16),
        task=TaskConfig(num_given=2, video_length=8),
        network=FDMUNetConfig(model_channels=8, channel_mult=(1, 2), attention_resolutions=(8,), num_heads=2),
    )
    dm = CARLADataModule(str(carla_root), image_size=16, return_coords=False, num_workers=0, batch_size=2)
    seen: list[torch.Tensor] = []
    training_loss = model.training_loss

    def spy(batch):
        seen.append(batch["video"])
        return training_loss(batch)

    model.training_loss = spy
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    (video,) = seen
    assert video.dtype == torch.uint8 and video.shape == (2, 40, 3, 16, 16), "the whole videos were converted"
    batch = {"video": video, "frame_indices": torch.arange(40).expand(2, 40)}
    torch.manual_seed(1)
    from_uint8 = model.training_loss(batch)
    torch.manual_seed(1)
    from_float = model.training_loss({**batch, "video": video.float() / 127.5 - 1})
    torch.testing.assert_close(from_uint8, from_float, rtol=0, atol=0)


def test_carla_clips_coordinates_and_splits(carla_root: Path) -> None:
    dm = CARLADataModule(str(carla_root.parent), num_frames=8, frame_stride=3, image_size=32, val_size=1)
    quiet_setup(dm, "fit", "test")
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 3, "val": 1, "test": 2}
    seen = {}
    for split in ("train", "val", "test"):
        seen[split] = []
        for i in range(len(dm.datasets[split])):
            item = as_model_input(dm, dm.datasets[split][i])
            check_clip(item, 8, 32)
            positions = item["frame_indices"]
            video_id = round(float((item["video"][0, 1, 0, 0] + 1) * 127.5))
            assert (positions.diff() == 3).all() and positions[-1] < 40
            if split != "train":
                assert positions[0] == 0
            assert red_levels(item["video"]).round().tolist() == frame_level(positions.numpy()).tolist()
            expected = torch.stack([1000.0 * video_id + positions, -positions.float()], dim=1)
            assert item["coords"].shape == (8, 2) and torch.equal(item["coords"], expected)
            seen[split].append(video_id)
    assert sorted(seen["train"] + seen["val"]) == [0, 1, 2, 3] and seen["test"] == [4, 5]


def test_carla_whole_videos_resize_and_default_validation(carla_root: Path) -> None:
    dm = CARLADataModule(str(carla_root), image_size=16, return_coords=False)
    quiet_setup(dm, "fit")
    item = as_model_input(dm, dm.datasets["train"][0])
    check_clip(item, 40, 16)
    assert item["frame_indices"].tolist() == list(range(40)) and "coords" not in item
    assert len(dm.datasets["val"]) == 2  # no validation split in FDM: validate on test
    assert dm.num_frames is None and dm.image_size == 16 and dm.channels == 3


# ------------------------------------------------------------------------------------------------ all three shared
def make_datamodule(name: str, kinetics_roots, bair_roots, carla_root, **kwargs) -> pl.LightningDataModule:
    if name == "kinetics":
        return KineticsDataModule(str(kinetics_roots["folders"]), num_frames=4, image_size=16, **kwargs)
    if name == "bair":
        return BAIRDataModule(str(bair_roots["tfrecord"]), num_frames=4, image_size=16, val_size=2, **kwargs)
    return CARLADataModule(str(carla_root), num_frames=4, image_size=16, **kwargs)


@pytest.mark.parametrize("name", ["kinetics", "bair", "carla"])
def test_two_workers_yield_every_item_once(name: str, kinetics_roots, bair_roots, carla_root) -> None:
    dm = make_datamodule(name, kinetics_roots, bair_roots, carla_root, batch_size=2, num_workers=2)
    quiet_setup(dm, "fit")
    loader = dm.train_dataloader()
    dataset = loader.dataset
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=2)  # keep the last, odd batch too
    indices = Counter(int(i) for batch in loader for i in batch["index"])
    assert indices == Counter(range(len(dataset)))
    sources = Counter(int(i) for batch in loader for i in batch["source_index"])
    assert sources == Counter(range(len(dataset)))  # no file failed, so every clip is its own


@pytest.mark.parametrize("name", ["kinetics", "bair", "carla"])
def test_missing_root_and_wrong_layout_fail_clearly(name: str, tmp_path: Path) -> None:
    cls = {"kinetics": KineticsDataModule, "bair": BAIRDataModule, "carla": CARLADataModule}[name]
    with pytest.raises(FileNotFoundError, match="is not a folder.*(obtained|tarball|wget)"):
        cls(str(tmp_path / "nowhere")).setup("fit")
    (tmp_path / "empty").mkdir()
    expected = "(expected|found|missing|no videos).*(obtained|tarball|wget)"  # what was looked for, how to get it
    with pytest.raises((FileNotFoundError, ValueError), match=expected):
        cls(str(tmp_path / "empty")).setup("fit")


def test_clips_longer_than_the_videos_fail_at_setup(bair_roots, carla_root) -> None:
    with pytest.raises(ValueError, match="span 39 steps; the trajectories have 30"):
        quiet_setup(BAIRDataModule(str(bair_roots["tfrecord"]), num_frames=20, frame_stride=2, val_size=2), "fit")
    with pytest.raises(ValueError, match="span 41 frames"):
        quiet_setup(CARLADataModule(str(carla_root), num_frames=41), "fit")


def test_kinetics_widths_decord_cannot_copy_are_decoded_with_pyav(tmp_path: Path) -> None:
    # decord 0.6 rejects valid videos of some widths (dmlc/decord#336); they must load, not count as corrupt.
    write_kinetics(tmp_path, num_frames=20, height=36, width=48, broken=False)
    dm = KineticsDataModule(str(tmp_path), num_frames=8, image_size=16, num_workers=0)
    dm.prepare_data()
    dm.setup("test")
    item = dm.test_dataloader().dataset[0]
    assert item["video"].shape == (8, 3, 16, 16) and not dm.corrupt_files()


def test_bair_horizontal_flip_mirrors_some_training_clips_and_never_evaluation_clips(tmp_path: Path) -> None:
    root = tmp_path / "bair_flip"
    for split, count in (("train", 3), ("test", 1)):
        for t in range(6):
            frame = np.zeros((64, 64, 3), dtype=np.uint8)
            frame[:, :32, 0] = 255  # left half red: a mirrored clip has it on the right
            for trajectory in range(count):
                write_png(root / split / f"traj_{trajectory:05d}" / f"{t}.png", frame)
    dm = BAIRDataModule(str(root), num_frames=4, val_size=1, horizontal_flip=True)
    quiet_setup(dm, "fit", "test")

    def red_on_left(item: dict) -> bool:
        return bool(item["video"][0, 0, :, :32].mean() > item["video"][0, 0, :, 32:].mean())

    torch.manual_seed(0)
    train = [red_on_left(dm.datasets["train"][i % 2]) for i in range(40)]
    assert any(train) and not all(train), "training clips are mirrored with probability 1/2"
    assert all(red_on_left(dm.datasets[split][0]) for split in ("val", "test") for _ in range(10))
