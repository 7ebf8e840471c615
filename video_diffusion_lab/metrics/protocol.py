"""The evaluation protocol of ``test``: which metrics, over how many samples per video and runs, with which weights.

``EvaluationProtocol`` is a config field of every method (``model.init_args.evaluation``); ``VideoEvaluation`` holds
the metric objects and turns N samples per test video, in R runs, into the papers' numbers:

- PSNR / SSIM of predicted frames, mean over the N samples and best-of-N (RaMViD's and RVD's comparisons);
- the same for the copy-last-frame baseline on the same clips, with its CRPS (= its mean absolute error);
- CRPS over the N samples (RVD), when N >= 2;
- FVD between the test clips and all generated clips (I3D weights from a local file), with its protocol record: the
  weights file byte for byte, preprocessing, clip counts and length, given frames, sampler, seeds, runs; the test
  clips' features cached on disk (``metrics.fvd_cache``);
- LPIPS of predicted frames (AlexNet weights from local files), when asked for.

With ``runs`` R > 1 every metric of the model is computed once per run (R sample sets drawn with seeds
``sampling.seed + r``) and reported as the mean over runs, with the standard deviation and the per-run values beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.metrics.baselines import copy_last_observed
from video_diffusion_lab.metrics.crps import CRPS
from video_diffusion_lab.metrics.frame_quality import FrameQuality
from video_diffusion_lab.metrics.fvd import FrechetVideoDistance
from video_diffusion_lab.metrics.fvd_cache import default_feature_cache_dir
from video_diffusion_lab.metrics.lpips import LearnedPerceptualVideoSimilarity

FVD_CHOICES = ("off", "auto", "styleganv", "tats")
LPIPS_CHOICES = ("off", "auto", "on")
I3D_MIN_FRAMES = 9  # I3D's temporal pooling needs at least 9 frames; the FVD protocol uses 16
# report_settings() keys of the LightningModule that the FVD record repeats.
SAMPLING_SETTINGS = ("sampler", "sampling_steps", "grid", "eval_seed", "weights")


@dataclass
class EvaluationProtocol:
    """Settings of ``test``; every reported number is written next to them.

    num_samples: samples per test clip (best-of-N, CRPS). runs: independent sample sets (seeds sampling.seed + r);
    every metric is reported as mean and standard deviation over them.
    fvd: "off"; "auto" computes FVD with the StyleGAN-V I3D when its file is found and records why not otherwise;
    "styleganv" / "tats" require that family's weights file and stop with a message naming it when it is missing.
    fvd_cache: keep the test clips' I3D features on disk and reuse them (``metrics.fvd_cache``); fvd_cache_dir: where
    (default ``~/.cache/video_diffusion/fvd_real_features``, root overridable with ``$VIDEO_DIFFUSION_CACHE``).
    lpips: "off", "auto" (when its weights are found) or "on" (required).
    """

    num_samples: int = 1
    sample_batch_size: int = 64
    runs: int = 1
    fvd: str = "auto"
    fvd_weights_path: str | None = None
    fvd_cache: bool = True
    fvd_cache_dir: str | None = None
    lpips: str = "off"
    lpips_alexnet_path: str | None = None
    lpips_linear_path: str | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"evaluation.num_samples: must be >= 1, got {self.num_samples}")
        if self.sample_batch_size < 1:
            raise ValueError(f"evaluation.sample_batch_size: must be >= 1, got {self.sample_batch_size}")
        if self.runs < 1:
            raise ValueError(f"evaluation.runs: must be >= 1, got {self.runs}")
        if self.fvd not in FVD_CHOICES:
            raise ValueError(f"evaluation.fvd: unknown setting {self.fvd!r}; choose one of {FVD_CHOICES}")
        if self.lpips not in LPIPS_CHOICES:
            raise ValueError(f"evaluation.lpips: unknown setting {self.lpips!r}; choose one of {LPIPS_CHOICES}")

    def feature_cache_dir(self) -> Path | None:
        if not self.fvd_cache:
            return None
        return Path(self.fvd_cache_dir).expanduser() if self.fvd_cache_dir else default_feature_cache_dir()


# Checkpoints store hyper-parameters; allow-listing the protocol keeps them loadable with weights_only=True.
torch.serialization.add_safe_globals([EvaluationProtocol])


def fvd_rank_deficiency(num_real: int, num_generated: int, feature_dim: int) -> str | None:
    """Why an FVD from these clip counts rests on a singular covariance, or None when it does not.

    A covariance estimated from n feature vectors has rank at most n - 1, so with n <= feature_dim it is singular and
    the FVD depends on n itself: such a value compares only with FVDs over the same numbers of clips.
    """
    if num_real > feature_dim and num_generated > feature_dim:
        return None
    return (
        f"FVD from {num_real} real and {num_generated} generated clips: with no more clips than the {feature_dim} "
        "features, the covariance is singular (rank <= clips - 1), so the value depends on the clip count and "
        "compares only with FVDs over the same numbers of clips"
    )


class VideoEvaluation(nn.Module):
    """The metric objects of one evaluation; ``update`` per batch (and run), ``compute`` for the report.

    ``settings``: the module's ``report_settings()`` (sampler, steps, seed...), repeated in the FVD record so that
    the record is complete on its own; None where the samples come from elsewhere (``vdiff-metrics``).
    """

    def __init__(self, protocol: EvaluationProtocol, num_frames: int, *, settings: Mapping[str, Any] | None = None):
        super().__init__()
        self.protocol = protocol
        self.runs = protocol.runs
        self.settings = dict(settings) if settings is not None else None
        self.notes: dict[str, str] = {}
        # Facts about the scored clips, from the first batch: (T, C, H, W) and the given frames per clip.
        self.clip_shape: tuple[int, ...] | None = None
        self.num_given: int | None = None
        self.quality = nn.ModuleList(FrameQuality() for _ in range(self.runs))
        self.crps = nn.ModuleList(CRPS() for _ in range(self.runs)) if protocol.num_samples >= 2 else None
        self.copy_last_frame = FrameQuality()
        # The CRPS of a point forecast is its mean absolute error: the one-sample "ensemble" CRPS.
        self.copy_last_frame_crps = CRPS(estimator="ensemble")
        self.fvd = self._build_fvd(protocol, num_frames)
        self.lpips = self._build_lpips(protocol)

    def _build_fvd(self, protocol: EvaluationProtocol, num_frames: int) -> FrechetVideoDistance | None:
        if protocol.fvd == "off":
            return None
        if num_frames < I3D_MIN_FRAMES:
            if protocol.fvd == "auto":
                self.notes["fvd"] = f"not computed: clips of {num_frames} frames are too short for I3D (>= 9)"
                return None
            raise ValueError(f"evaluation.fvd: I3D needs clips of at least {I3D_MIN_FRAMES} frames, got {num_frames}")
        family = "styleganv" if protocol.fvd == "auto" else protocol.fvd
        fvd = FrechetVideoDistance(
            weights=family,
            weights_path=protocol.fvd_weights_path,
            runs=self.runs,
            cache_dir=protocol.feature_cache_dir(),
        )
        try:
            fvd.load_feature_extractor()
        except FileNotFoundError as missing:
            if protocol.fvd != "auto":
                raise
            self.notes["fvd"] = "not computed: " + str(missing).splitlines()[0]
            return None
        return fvd

    def _build_lpips(self, protocol: EvaluationProtocol) -> nn.ModuleList | None:
        if protocol.lpips == "off":
            return None
        first = LearnedPerceptualVideoSimilarity(protocol.lpips_alexnet_path, protocol.lpips_linear_path)
        try:
            net = first.load_network()
        except FileNotFoundError as missing:
            if protocol.lpips != "auto":
                raise
            self.notes["lpips"] = "not computed: " + str(missing).splitlines()[0]
            return None
        # Every run scores with the one loaded network.
        return nn.ModuleList([first, *(LearnedPerceptualVideoSimilarity(net=net) for _ in range(self.runs - 1))])

    @torch.no_grad()
    def update(self, samples: Tensor, video: Tensor, mask: FrameMask, run: int = 0) -> None:
        """samples: (N, B, T, C, H, W) generated in run ``run`` for the (B, T, C, H, W) test clips under ``mask``.

        Every run passes the same test clips; the clips' own statistics (FVD's real side, the copy-last-frame
        baseline) are taken from run 0 only.
        """
        if not 0 <= run < self.runs:
            raise ValueError(f"run must be in [0, {self.runs}) (evaluation.runs = {self.runs}), got {run}")
        self._note_clips(video, mask)
        latent = mask.latent
        self.quality[run].update(samples, video, latent)
        if self.crps is not None:
            self.crps[run].update(samples, video, latent)
        if self.lpips is not None:
            self.lpips[run].update(samples, video, latent)
        if run == 0:
            copied = copy_last_observed(video, mask)[None]
            self.copy_last_frame.update(copied, video, latent)
            self.copy_last_frame_crps.update(copied, video, latent)
        if self.fvd is not None:
            if run == 0:
                self.fvd.update(video, real=True)
            self.fvd.update(samples.flatten(0, 1), real=False, run=run)

    @torch.no_grad()
    def update_fvd(self, videos: Tensor, *, real: bool, run: int = 0) -> None:
        """Clips that enter FVD only (no frame-by-frame partner), (B, T, C, H, W) in [-1, 1]."""
        if self.fvd is not None:
            self._note_clips(videos, None)
            self.fvd.update(videos, real=real, run=run)

    def _note_clips(self, video: Tensor, mask: FrameMask | None) -> None:
        if self.clip_shape is None:
            self.clip_shape = tuple(video.shape[1:])
        if mask is not None and self.num_given is None:
            self.num_given = int(mask.observed.sum(dim=1).max())

    def compute(self) -> dict[str, Any]:
        """All numbers, plus the settings and the weights they were computed with.

        ``model``: each metric's mean over runs (its value when there is one run); with several runs also
        ``model_std`` (standard deviation over runs, n - 1 in the denominator) and ``model_runs`` (per run).
        ``fvd_protocol`` and ``fvd_rank_deficient`` come with every FVD.
        """
        per_run = [self._run_numbers(run) for run in range(self.runs)]
        values = {k: np.array([numbers[k] for numbers in per_run]) for k in per_run[0]}
        results: dict[str, Any] = {"model": {k: float(v.mean()) for k, v in values.items()}}
        if self.runs > 1:
            with np.errstate(invalid="ignore"):  # identical frames give PSNR inf in every run: std nan (null)
                results["model_std"] = {k: float(v.std(ddof=1)) for k, v in values.items()}
            results["model_runs"] = per_run
        results["copy_last_frame"] = {
            **{k: float(v) for k, v in self.copy_last_frame.compute().items()},
            "crps": float(self.copy_last_frame_crps.compute()),
        }
        results["protocol"] = asdict(self.protocol)
        if self.fvd is not None:
            record = self.fvd_record()
            results["fvd_protocol"] = record
            results["fvd_rank_deficient"] = record["rank_deficient"]
        if self.notes:
            results["notes"] = dict(self.notes)
        return results

    def _run_numbers(self, run: int) -> dict[str, float]:
        numbers = {k: float(v) for k, v in self.quality[run].compute().items()}
        if self.crps is not None:
            numbers["crps"] = float(self.crps[run].compute())
        if self.fvd is not None:
            fvd = self.fvd.compute()  # computed once (torchmetrics keeps the result until the next update)
            numbers["fvd"] = float(fvd if self.runs == 1 else fvd[run])
        if self.lpips is not None:
            numbers["lpips"] = float(self.lpips[run].compute())
        return numbers

    def fvd_record(self) -> dict[str, Any]:
        """What decides the FVD besides the model: extractor and weights file, preprocessing, clips, sampling, runs.

        Warns when the value rests on a singular covariance (``fvd_rank_deficiency``).
        """
        assert self.fvd is not None
        self.fvd.compute()  # sets the all-process clip counts
        counts = self.fvd.counts
        assert counts is not None
        generated = min(counts.generated)
        deficiency = fvd_rank_deficiency(counts.real, generated, self.fvd.num_features)
        if deficiency is not None:
            rank_zero_warn(deficiency + " (fvd_rank_deficient: true in the report; see docs/fvd.md)")
        frames, channels, height, width = self.clip_shape or (None, None, None, None)
        settings = self.settings
        seed = settings.get("eval_seed") if settings is not None else None
        return {
            **self.fvd.describe(),
            "num_real_clips": counts.real,
            "num_generated_clips": generated if len(set(counts.generated)) == 1 else list(counts.generated),
            "frames_per_clip": frames,
            "clip_size": [height, width] if height is not None else None,
            "channels": channels,
            "given_frames": self.num_given,
            # The samplers return the given frames unchanged, so the scored clips hold them.
            "given_frames_in_scored_clips": bool(self.num_given),
            "sampling": {k: settings.get(k) for k in SAMPLING_SETTINGS} if settings is not None else None,
            "runs": self.runs,
            "run_seeds": [seed + run for run in range(self.runs)] if isinstance(seed, int) else None,
            "real_statistics": {
                "cache_file": str(self.fvd.real_cache.path) if self.fvd.real_cache is not None else None,
                "clips_from_cache": counts.real_from_cache,
                "clips_computed": counts.real - counts.real_from_cache,
            },
            "rank_deficient": deficiency is not None,
        }

    def reset(self) -> None:
        metrics = [*self.quality, self.copy_last_frame, self.copy_last_frame_crps, self.fvd]
        metrics += [*(self.crps or []), *(self.lpips or [])]
        for metric in metrics:
            if metric is not None:
                metric.reset()
