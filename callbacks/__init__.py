"""Callbacks own the side effects: logging sampled clips, writing predictions, periodic evaluation."""

from callbacks.carla_metrics import CARLAPositionMetrics
from callbacks.checkpointing import ResumableCheckpoint
from callbacks.evaluation import PeriodicEvaluation
from callbacks.video_logging import SampleVideoLogger, VideoPredictionWriter

__all__ = ["CARLAPositionMetrics", "PeriodicEvaluation", "ResumableCheckpoint", "SampleVideoLogger", "VideoPredictionWriter"]
