"""LightningDataModules, one file per data set, all yielding the same clip layout:
{"video": float (B, T, C, H, W) in [-1, 1], "frame_indices": long (B, T), ...extras}."""

from datamodules.moving_shapes import MovingShapesDataModule, MovingShapesDataset

__all__ = ["MovingShapesDataModule", "MovingShapesDataset"]
