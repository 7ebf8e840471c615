"""The evaluation protocol of ``test``: which metrics, over how many samples per video, with which weights.

``EvaluationProtocol`` is a config field of every method (``model.init_args.evaluation``); ``VideoEvaluation`` holds
the metric objects and turns N samples per test video into the papers' numbers:

- PSNR / SSIM of predicted frames, mean over the N samples and best-of-N (RaMViD's and RVD's comparisons);
- the same for the copy-last-frame baseline on the same clips, with its CRPS (= its mean absolute error);
- CRPS over the N samples (RVD), when N >= 2;
- FVD between the test clips and all generated clips (I3D weights from a local file);
- LPIPS of predicted frames (AlexNet weights from local files), when asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.metrics.baselines import copy_last_observed
from video_diffusion_lab.metrics.crps import CRPS
from video_diffusion_lab.metrics.frame_quality import FrameQuality
from video_diffusion_lab.metrics.fvd import FrechetVideoDistance
from video_diffusion_lab.metrics.lpips import LearnedPerceptualVideoSimilarity

FVD_CHOICES = ("off", "auto", "styleganv", "tats")
LPIPS_CHOICES = ("off", "auto", "on")
I3D_MIN_FRAMES = 9  # I3D's temporal pooling needs at least 9 frames; the FVD protocol uses 16


@dataclass
class EvaluationProtocol:
    """Settings of ``test``; every reported number is written next to them.

    fvd: "off"; "auto" computes FVD with the StyleGAN-V I3D when its file is found and records why not otherwise;
    "styleganv" / "tats" require that family's weights file and stop with a message naming it when it is missing.
    lpips: "off", "auto" (when its weights are found) or "on" (required).
    """

    num_samples: int = 1
    sample_batch_size: int = 64
    fvd: str = "auto"
    fvd_weights_path: str | None = None
    lpips: str = "off"
    lpips_alexnet_path: str | None = None
    lpips_linear_path: str | None = None

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"evaluation.num_samples: must be >= 1, got {self.num_samples}")
        if self.sample_batch_size < 1:
            raise ValueError(f"evaluation.sample_batch_size: must be >= 1, got {self.sample_batch_size}")
        if self.fvd not in FVD_CHOICES:
            raise ValueError(f"evaluation.fvd: unknown setting {self.fvd!r}; choose one of {FVD_CHOICES}")
        if self.lpips not in LPIPS_CHOICES:
            raise ValueError(f"evaluation.lpips: unknown setting {self.lpips!r}; choose one of {LPIPS_CHOICES}")


# Checkpoints store hyper-parameters; allow-listing the protocol keeps them loadable with weights_only=True.
torch.serialization.add_safe_globals([EvaluationProtocol])


class VideoEvaluation(nn.Module):
    def __init__(self, protocol: EvaluationProtocol, num_frames: int):
        super().__init__()
        self.protocol = protocol
        self.notes: dict[str, str] = {}
        self.quality = FrameQuality()
        self.copy_last_frame = FrameQuality()
        self.crps = CRPS() if protocol.num_samples >= 2 else None
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
        fvd = FrechetVideoDistance(weights=family, weights_path=protocol.fvd_weights_path)
        try:
            fvd.load_feature_extractor()
        except FileNotFoundError as missing:
            if protocol.fvd != "auto":
                raise
            self.notes["fvd"] = "not computed: " + str(missing).splitlines()[0]
            return None
        return fvd

    def _build_lpips(self, protocol: EvaluationProtocol) -> LearnedPerceptualVideoSimilarity | None:
        if protocol.lpips == "off":
            return None
        lpips = LearnedPerceptualVideoSimilarity(protocol.lpips_alexnet_path, protocol.lpips_linear_path)
        try:
            lpips.load_network()
        except FileNotFoundError as missing:
            if protocol.lpips != "auto":
                raise
            self.notes["lpips"] = "not computed: " + str(missing).splitlines()[0]
            return None
        return lpips

    @torch.no_grad()
    def update(self, samples: Tensor, video: Tensor, mask: FrameMask) -> None:
        """samples: (N, B, T, C, H, W) generated for the (B, T, C, H, W) test clips under ``mask``."""
        latent = mask.latent
        self.quality.update(samples, video, latent)
        copied = copy_last_observed(video, mask)[None]
        self.copy_last_frame.update(copied, video, latent)
        self.copy_last_frame_crps.update(copied, video, latent)
        if self.crps is not None:
            self.crps.update(samples, video, latent)
        if self.fvd is not None:
            self.fvd.update(video, real=True)
            self.fvd.update(samples.flatten(0, 1), real=False)
        if self.lpips is not None:
            self.lpips.update(samples, video, latent)

    def compute(self) -> dict[str, Any]:
        """All numbers, plus the settings and the weights they were computed with."""
        results: dict[str, Any] = {
            "model": {k: float(v) for k, v in self.quality.compute().items()},
            "copy_last_frame": {
                **{k: float(v) for k, v in self.copy_last_frame.compute().items()},
                "crps": float(self.copy_last_frame_crps.compute()),
            },
            "protocol": asdict(self.protocol),
        }
        if self.crps is not None:
            results["model"]["crps"] = float(self.crps.compute())
        if self.fvd is not None:
            results["model"]["fvd"] = float(self.fvd.compute())
            results["fvd_weights"] = self.fvd.weights_name
        if self.lpips is not None:
            results["model"]["lpips"] = float(self.lpips.compute())
        if self.notes:
            results["notes"] = dict(self.notes)
        return results

    def reset(self) -> None:
        for metric in (self.quality, self.copy_last_frame, self.copy_last_frame_crps, self.crps, self.fvd, self.lpips):
            if metric is not None:
                metric.reset()
