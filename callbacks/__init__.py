"""Callbacks own the side effects: logging sampled clips, writing predictions, periodic evaluation."""

from callbacks.checkpointing import ResumableCheckpoint
from callbacks.evaluation import PeriodicEvaluation
from callbacks.video_logging import SampleVideoLogger, VideoPredictionWriter

__all__ = ["PeriodicEvaluation", "ResumableCheckpoint", "SampleVideoLogger", "VideoPredictionWriter"]
