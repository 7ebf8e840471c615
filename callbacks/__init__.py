"""Callbacks own the side effects: logging sampled clips, writing predictions, periodic evaluation, the test report,
checkpoints and what makes a run safe to stop and resume (non-finite loss guard, exact resume, SIGTERM, per-subcommand
configs)."""

from video_diffusion_lab.callbacks.carla_metrics import CARLAPositionMetrics
from video_diffusion_lab.callbacks.checkpointing import ResumableCheckpoint
from video_diffusion_lab.callbacks.compile import CompileNetwork
from video_diffusion_lab.callbacks.evaluation import PeriodicEvaluation
from video_diffusion_lab.callbacks.non_finite import NonFiniteLossError, NonFiniteLossGuard
from video_diffusion_lab.callbacks.resume import ExactResume
from video_diffusion_lab.callbacks.run_config import RunConfigSaver
from video_diffusion_lab.callbacks.sigterm import StopOnSigterm
from video_diffusion_lab.callbacks.test_report import TestReport
from video_diffusion_lab.callbacks.video_logging import SampleVideoLogger, VideoPredictionWriter

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
    "TestReport",
    "VideoPredictionWriter",
]
