"""Callbacks own the side effects: logging sampled clips, writing predictions, periodic evaluation."""

from callbacks.carla_metrics import CARLAPositionMetrics
from callbacks.checkpointing import ResumableCheckpoint
from callbacks.compile import CompileNetwork
from callbacks.evaluation import PeriodicEvaluation
from callbacks.video_logging import SampleVideoLogger, VideoPredictionWriter

__all__ = [
    "CARLAPositionMetrics",
    "CompileNetwork",
    "PeriodicEvaluation",
    "ResumableCheckpoint",
    "SampleVideoLogger",
    "VideoPredictionWriter",
]
