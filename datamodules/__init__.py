"""LightningDataModules, one file per data set, all yielding the same clip layout:
{"video": float (B, T, C, H, W) in [-1, 1], "frame_indices": long (B, T), "index": long (B,), ...extras}."""

from video_diffusion_lab.datamodules.bair import BAIRDataModule, BAIRDataset
from video_diffusion_lab.datamodules.carla import CARLADataModule, CARLADataset
from video_diffusion_lab.datamodules.kinetics import KineticsDataModule, KineticsDataset
from video_diffusion_lab.datamodules.maze import MazeDataModule, MazeDataset
from video_diffusion_lab.datamodules.moving_shapes import MovingShapesDataModule, MovingShapesDataset

try:
    from video_diffusion_lab.datamodules.streaming import StreamingVideoDataModule as StreamingVideoDataModule
except ModuleNotFoundError as missing:  # LitData is installed apart (setup.cfg, extra "streaming"): optional here
    if missing.name != "litdata":
        raise
from video_diffusion_lab.datamodules.video_index import SkippedVideoReport

__all__ = [
    "BAIRDataModule",
    "BAIRDataset",
    "CARLADataModule",
    "CARLADataset",
    "KineticsDataModule",
    "KineticsDataset",
    "MazeDataModule",
    "MazeDataset",
    "MovingShapesDataModule",
    "MovingShapesDataset",
    "SkippedVideoReport",
    *(["StreamingVideoDataModule"] if "StreamingVideoDataModule" in globals() else []),
]
