"""Fréchet Video Distance (Unterthiner et al. 2018) as a DDP-exact torchmetrics Metric.

Only sufficient statistics are kept (n, sum_i f_i, sum_i f_i f_i^T in float64, all
sum-reduced), so the value does not depend on how videos are sharded across ranks.
Two public I3D weight families are supported; they give different numbers, so the
family used is exposed as ``weights_name`` and should be stored with every result:

* ``"styleganv"`` -- the TorchScript port of the tf.hub I3D used by the original FVD,
  called the way StyleGAN-V does (universome/stylegan-v, src/metrics/
  frechet_video_distance.py and metric_utils.py): uint8 videos (B, C, T, H, W),
  ``detector(x, rescale=True, resize=True, return_features=True)`` -- the model itself
  maps [0, 255] to [-1, 1] and resizes to 224x224; features are the 400 pre-softmax
  logits. StyleGAN-V's FeatureStats uses the biased covariance (divide by n).
* ``"tats"`` -- the pytorch-i3d ``i3d_pretrained_400.pt`` state_dict of VideoGPT/TATS
  (songweige/TATS, tats/fvd/fvd.py): frames resized to 224x224 (bilinear,
  align_corners=False), scaled to [-1, 1], logits averaged over time; unbiased
  covariance (divide by n - 1).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from .frechet import frechet_distance, gaussian_from_sums
from .i3d import InceptionI3d, load_i3d_state_dict
from .weights import I3D_STATE_DICT, I3D_TORCHSCRIPT, WeightSpec, resolve_spec

_FAMILIES: dict[str, WeightSpec] = {"styleganv": I3D_TORCHSCRIPT, "tats": I3D_STATE_DICT}
# Covariance normalisation of each family's reference implementation (see module docstring).
_DDOF: dict[str, int] = {"styleganv": 0, "tats": 1, "custom": 1}


def to_uint8_range(videos: Tensor) -> Tensor:
    """[-1, 1] -> uint8 in [0, 255], rounding as StyleGAN-V does for generated frames."""
    return (videos * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def preprocess_styleganv(videos: Tensor) -> Tensor:
    """(B, T, C, H, W) in [-1, 1] -> uint8 (B, 3, T, H, W); resizing is left to the TorchScript model."""
    x = to_uint8_range(videos).permute(0, 2, 1, 3, 4).contiguous()
    return _to_rgb(x)


def preprocess_tats(videos: Tensor, size: int = 224) -> Tensor:
    """(B, T, C, H, W) in [-1, 1] -> float (B, 3, T, 224, 224) in [-1, 1], as tats/fvd/fvd.py."""
    b, t = videos.shape[:2]
    # The reference starts from uint8 frames; quantise identically so real and generated
    # videos are treated the same way.
    frames = to_uint8_range(videos).flatten(0, 1).float()
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    x = frames.view(b, t, frames.shape[1], size, size).transpose(1, 2)
    return _to_rgb(2.0 * x / 255.0 - 1.0)


def _to_rgb(x: Tensor) -> Tensor:
    """Grayscale (channel axis 1 of size 1) -> 3 identical channels, as StyleGAN-V does."""
    return x.expand(-1, 3, *x.shape[2:]) if x.shape[1] == 1 else x


def _extract_styleganv(detector: nn.Module, videos: Tensor) -> Tensor:
    return detector(preprocess_styleganv(videos), rescale=True, resize=True, return_features=True)


def _extract_tats(detector: nn.Module, videos: Tensor) -> Tensor:
    return detector(preprocess_tats(videos))


def _extract_custom(detector: nn.Module, videos: Tensor) -> Tensor:
    return detector(videos)


class FrechetVideoDistance(Metric):
    """FVD between the videos passed with ``real=True`` and those passed with ``real=False``.

    Args:
        weights: ``"styleganv"`` (``i3d_torchscript.pt``, env ``FVD_I3D_TORCHSCRIPT``) or
            ``"tats"`` (``i3d_pretrained_400.pt``, env ``FVD_I3D_STATE_DICT``).
        weights_path: explicit weight file (or directory holding it); see ``metrics.weights``.
        feature_batch_size: videos pushed through the I3D at once (bounds memory).
        feature_extractor: an already-built module used instead of loading weights; it is
            called on the framework-layout videos (B, T, C, H, W) in [-1, 1] and must return
            (B, num_features). ``weights_name`` is then ``"custom"``.
        num_features: feature dimension (400 for both I3D families).

    The I3D is loaded on the first ``update`` (or by ``load_feature_extractor()``, to fail
    fast), moved to the metric's device, kept in eval mode, and held outside the module
    tree so it never enters ``state_dict`` or checkpoints.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    real_n: Tensor
    real_sum: Tensor
    real_outer: Tensor
    fake_n: Tensor
    fake_sum: Tensor
    fake_outer: Tensor

    def __init__(
        self,
        weights: str = "styleganv",
        weights_path: str | None = None,
        feature_batch_size: int = 16,
        feature_extractor: nn.Module | None = None,
        num_features: int = 400,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if feature_extractor is None and weights not in _FAMILIES:
            raise ValueError(f"weights must be one of {sorted(_FAMILIES)}, got {weights!r}")
        if feature_batch_size < 1:
            raise ValueError("feature_batch_size must be >= 1")
        self.weights_name = "custom" if feature_extractor is not None else weights
        self.weights_path = weights_path
        self.feature_batch_size = feature_batch_size
        self.num_features = num_features
        self.ddof = _DDOF[self.weights_name]
        # object.__setattr__ keeps the network out of _modules: no state_dict entry, no
        # parameters seen by optimizers or Lightning's summaries.
        object.__setattr__(self, "_extractor", feature_extractor)
        object.__setattr__(self, "_extractor_is_user", feature_extractor is not None)
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{prefix}_outer",
                torch.zeros(num_features, num_features, dtype=torch.float64),
                dist_reduce_fx="sum",
            )

    # -- feature extractor -------------------------------------------------------------
    def load_feature_extractor(self) -> nn.Module:
        """Load (once) and return the feature network on the metric's device."""
        extractor = self._extractor
        if extractor is None:
            extractor = self._load_weights()
        extractor = extractor.to(self.device).eval()
        object.__setattr__(self, "_extractor", extractor)
        return extractor

    def _load_weights(self) -> nn.Module:
        # resolve_spec raises the explanatory FileNotFoundError when the file is absent.
        path = resolve_spec(_FAMILIES[self.weights_name], self.weights_path)
        if self.weights_name == "styleganv":
            with warnings.catch_warnings():
                # TorchScript is deprecated in recent PyTorch, but the StyleGAN-V detector
                # exists only as a TorchScript file.
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu")
        return load_i3d_state_dict(InceptionI3d(num_classes=400), str(path))

    def _extract_fn(self) -> Callable[[nn.Module, Tensor], Tensor]:
        return {"styleganv": _extract_styleganv, "tats": _extract_tats, "custom": _extract_custom}[self.weights_name]

    @torch.no_grad()
    def extract_features(self, videos: Tensor) -> Tensor:
        """(B, T, C, H, W) in [-1, 1] -> (B, num_features) float64 features."""
        if videos.ndim != 5:
            raise ValueError(f"expected videos (B, T, C, H, W), got shape {tuple(videos.shape)}")
        extractor = self.load_feature_extractor()
        extract = self._extract_fn()
        videos = videos.to(device=self.device, dtype=torch.float32)
        # Features must not depend on the trainer's precision setting: no autocast here.
        with torch.autocast(device_type=self.device.type, enabled=False):
            feats = [extract(extractor, chunk) for chunk in videos.split(self.feature_batch_size)]
        out = torch.cat(feats).to(torch.float64)
        if out.shape != (videos.shape[0], self.num_features):
            raise ValueError(
                f"feature extractor returned shape {tuple(out.shape)}, expected "
                f"({videos.shape[0]}, {self.num_features})"
            )
        return out

    # -- Metric API ----------------------------------------------------------------------
    def update(self, videos: Tensor, real: bool) -> None:
        """Add a batch of real (``real=True``) or generated videos, (B, T, C, H, W) in [-1, 1]."""
        feats = self.extract_features(videos)
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_n", getattr(self, f"{prefix}_n") + feats.shape[0])
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + feats.sum(dim=0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + feats.T @ feats)

    def compute(self) -> Tensor:
        for prefix in ("real", "fake"):
            n = float(getattr(self, f"{prefix}_n"))
            if n < 2:
                raise ValueError(f"FVD needs at least 2 {prefix} videos, got {n:g}")
        mu_r, sigma_r = gaussian_from_sums(self.real_n, self.real_sum, self.real_outer, ddof=self.ddof)
        mu_f, sigma_f = gaussian_from_sums(self.fake_n, self.fake_sum, self.fake_outer, ddof=self.ddof)
        value = frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
        return torch.tensor(value, dtype=torch.float64, device=self.device)

    # Copies (deepcopy, pickling for spawn) re-load weights lazily instead of carrying
    # the loaded network; a user-supplied extractor is kept.
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if not state.get("_extractor_is_user", False):
            state["_extractor"] = None
        return state
