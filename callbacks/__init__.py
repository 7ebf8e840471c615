"""Callbacks own the side effects: logging sampled clips, writing predictions, periodic evaluation, checkpoints and
what makes a run safe to stop and resume (non-finite loss guard, exact resume, SIGTERM, per-subcommand configs)."""

from callbacks.carla_metrics import CARLAPositionMetrics
from callbacks.checkpointing import ResumableCheckpoint
from callbacks.compile import CompileNetwork
from callbacks.evaluation import PeriodicEvaluation
from callbacks.non_finite import NonFiniteLossError, NonFiniteLossGuard
from callbacks.resume import ExactResume
from callbacks.run_config import RunConfigSaver
from callbacks.sigterm import StopOnSigterm
from callbacks.video_logging import SampleVideoLogger, VideoPredictionWriter

__all__ = [
    "CARLAPositionMetrics",
    "CompileNetwork",
    "ExactResume",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PeriodicEvaluation",
    "ResumableCheckpoint",
    "RunConfigSaver",
    "SampleVideoLogger",
    "StopOnSigterm",
    "VideoPredictionWriter",
]
