"""Callbacks own the side effects: logging sampled clips, writing predictions, periodic evaluation."""

from callbacks.checkpointing import ResumableCheckpoint
from callbacks.video_logging import SampleVideoLogger, VideoPredictionWriter

__all__ = ["ResumableCheckpoint", "SampleVideoLogger", "VideoPredictionWriter"]
