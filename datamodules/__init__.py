"""LightningDataModules, one file per data set, all yielding the same clip layout:
{"video": float (B, T, C, H, W) in [-1, 1], "frame_indices": long (B, T), "index": long (B,), ...extras}."""

from datamodules.bair import BAIRDataModule, BAIRDataset
from datamodules.carla import CARLADataModule, CARLADataset
from datamodules.kinetics import KineticsDataModule, KineticsDataset
from datamodules.moving_shapes import MovingShapesDataModule, MovingShapesDataset
from datamodules.video_index import SkippedVideoReport

__all__ = [
    "BAIRDataModule",
    "BAIRDataset",
    "CARLADataModule",
    "CARLADataset",
    "KineticsDataModule",
    "KineticsDataset",
    "MovingShapesDataModule",
    "MovingShapesDataset",
    "SkippedVideoReport",
]
