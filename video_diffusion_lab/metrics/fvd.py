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

``describe()`` gives what decides the number besides the clips: the family, the weights file byte for byte (sha256,
and whether it is the published file), the preprocessing and the covariance. With ``cache_dir`` set, real clips'
features are kept on disk (``metrics.fvd_cache``) and a later evaluation of the same clips with the same file reads
them back. With ``runs`` > 1 the generated side keeps one set of statistics per run (``update(..., run=r)``) against
one real side, and ``compute()`` gives one FVD per run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from .frechet import frechet_distance, gaussian_from_sums
from .fvd_cache import RealFeatureCache, clip_digests
from .i3d import InceptionI3d, load_i3d_state_dict
from .weights import I3D_STATE_DICT, I3D_TORCHSCRIPT, WeightSpec, describe_weights_file, resolve_spec

_FAMILIES: dict[str, WeightSpec] = {"styleganv": I3D_TORCHSCRIPT, "tats": I3D_STATE_DICT}
# Covariance normalisation of each family's reference implementation (see module docstring).
_DDOF: dict[str, int] = {"styleganv": 0, "tats": 1, "custom": 1}
# What each family does to a clip before and inside the network, for the report. "version" changes with the code
# below; it is part of the feature cache's key.
PREPROCESSING: dict[str, dict[str, Any]] = {
    "styleganv": {
        "version": 1,
        "input": "uint8 (B, 3, T, H, W): frames in [-1, 1] as (x * 127.5 + 128) clamped to [0, 255], truncated",
        "resize": "to 224x224 inside the TorchScript model (resize=True)",
        "value_range": "[0, 255] to [-1, 1] inside the TorchScript model (rescale=True)",
        "grayscale": "repeated to 3 channels",
        "features": "400 pre-softmax logits (return_features=True)",
        "covariance": "biased, divided by n (StyleGAN-V FeatureStats)",
    },
    "tats": {
        "version": 1,
        "input": "the same uint8 frames, as float",
        "resize": "each frame to 224x224, bilinear, align_corners=False",
        "value_range": "2 x / 255 - 1, i.e. [-1, 1]",
        "grayscale": "repeated to 3 channels",
        "features": "400 logits averaged over time",
        "covariance": "unbiased, divided by n - 1 (tf-gan, VideoGPT/TATS)",
    },
    "custom": {"version": 1, "input": "a user-supplied extractor on (B, T, C, H, W) in [-1, 1]"},
}


@dataclass(frozen=True)
class ClipCounts:
    """How many clips an FVD value rests on, over all processes: real, generated per run, real read from cache."""

    real: int
    generated: tuple[int, ...]
    real_from_cache: int


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
        runs: number of generated sample sets, each scored against the same real clips; ``update(..., run=r)``.
        cache_dir: folder of the real-feature cache (``metrics.fvd_cache``); None: no cache. Only for the two I3D
            families (their weights file identifies the features); a custom extractor is never cached.

    The I3D is loaded on the first ``update`` (or by ``load_feature_extractor()``, to fail
    fast), moved to the metric's device, kept in eval mode, and held outside the module
    tree so it never enters ``state_dict`` or checkpoints.

    ``compute()`` returns the FVD (a 0-d tensor) when ``runs`` is 1, one FVD per run (``(runs,)``) otherwise, and
    sets ``counts`` (``ClipCounts``, over all processes) to the clips behind it.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    real_n: Tensor
    real_sum: Tensor
    real_outer: Tensor
    real_from_cache: Tensor
    fake_n: Tensor  # (runs,)
    fake_sum: Tensor  # (runs, D)
    fake_outer: Tensor  # (runs, D, D)

    def __init__(
        self,
        weights: str = "styleganv",
        weights_path: str | None = None,
        feature_batch_size: int = 16,
        feature_extractor: nn.Module | None = None,
        num_features: int = 400,
        runs: int = 1,
        cache_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if feature_extractor is None and weights not in _FAMILIES:
            raise ValueError(f"weights must be one of {sorted(_FAMILIES)}, got {weights!r}")
        if feature_batch_size < 1:
            raise ValueError("feature_batch_size must be >= 1")
        if runs < 1:
            raise ValueError(f"runs must be >= 1, got {runs}")
        self.weights_name = "custom" if feature_extractor is not None else weights
        self.weights_path = weights_path
        self.feature_batch_size = feature_batch_size
        self.num_features = num_features
        self.runs = runs
        self.ddof = _DDOF[self.weights_name]
        self.cache_dir = None if cache_dir is None or feature_extractor is not None else Path(cache_dir)
        self.weights_file: dict[str, Any] | None = None  # describe_weights_file(), once the file is loaded
        self.real_cache: RealFeatureCache | None = None  # opened with the weights file
        self.counts: ClipCounts | None = None  # set by compute()
        # object.__setattr__ keeps the network out of _modules: no state_dict entry, no
        # parameters seen by optimizers or Lightning's summaries.
        object.__setattr__(self, "_extractor", feature_extractor)
        object.__setattr__(self, "_extractor_is_user", feature_extractor is not None)
        d = num_features
        self.add_state("real_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("real_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("real_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("real_from_cache", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_n", torch.zeros(runs, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_sum", torch.zeros(runs, d, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_outer", torch.zeros(runs, d, d, dtype=torch.float64), dist_reduce_fx="sum")
        # Real clips computed here that the cache lacks, (digests, features) on the CPU; compute() gathers them from
        # every process so that rank 0 can save them. Not a metric state: nothing to reduce, only to collect.
        self._new_real: list[tuple[Tensor, Tensor]] = []

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
        spec = _FAMILIES[self.weights_name]
        path = resolve_spec(spec, self.weights_path)
        self.weights_file = describe_weights_file(spec, path)
        if self.weights_file["is_published_file"] is False:
            warnings.warn(f"FVD weights {path}: {self.weights_file['note']}", stacklevel=3)
        if self.cache_dir is not None:
            self.real_cache = RealFeatureCache(self._cache_identity(), self.cache_dir)
        if self.weights_name == "styleganv":
            with warnings.catch_warnings():
                # TorchScript is deprecated in recent PyTorch, but the StyleGAN-V detector
                # exists only as a TorchScript file.
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu")
        return load_i3d_state_dict(InceptionI3d(num_classes=400), str(path))

    def _cache_identity(self) -> dict[str, Any]:
        assert self.weights_file is not None
        return {
            "family": self.weights_name,
            "weights_sha256": self.weights_file["sha256"],
            "preprocessing_version": PREPROCESSING[self.weights_name]["version"],
            "feature_dim": self.num_features,
        }

    def describe(self) -> dict[str, Any]:
        """The extractor behind the numbers: family, weights file (sha256, published or not), preprocessing."""
        return {
            "extractor": self.weights_name,
            "weights": self.weights_file,
            "preprocessing": {k: v for k, v in PREPROCESSING[self.weights_name].items() if k != "version"},
            "feature_dim": self.num_features,
        }

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
    def update(self, videos: Tensor, real: bool, run: int = 0) -> None:
        """Add a batch of real (``real=True``) or generated videos, (B, T, C, H, W) in [-1, 1]; generated ones
        belong to sample set ``run``."""
        if real:
            feats = self._real_features(videos)
            self.real_n += feats.shape[0]
            self.real_sum += feats.sum(dim=0)
            self.real_outer += feats.T @ feats
            return
        if not 0 <= run < self.runs:
            raise ValueError(f"run must be in [0, {self.runs}), got {run}")
        feats = self.extract_features(videos)
        self.fake_n[run] += feats.shape[0]
        self.fake_sum[run] += feats.sum(dim=0)
        self.fake_outer[run] += feats.T @ feats

    def _real_features(self, videos: Tensor) -> Tensor:
        """Features of real clips: from the cache where it holds them, computed (and queued for it) otherwise."""
        self.load_feature_extractor()  # opens the cache with the weights file
        if self.real_cache is None:
            return self.extract_features(videos)
        if videos.ndim != 5:
            raise ValueError(f"expected videos (B, T, C, H, W), got shape {tuple(videos.shape)}")
        # Both families' features are a function of these uint8 frames, so they are the cache key.
        digests = clip_digests(to_uint8_range(videos))
        hit, feats = self.real_cache.lookup(digests)
        feats = feats.to(self.device)
        missing = (~hit).nonzero().flatten()
        if missing.numel():
            computed = self.extract_features(videos[missing.to(videos.device)])
            feats[missing.to(self.device)] = computed
            self._new_real.append((digests[missing], computed.cpu()))
        self.real_from_cache += float(hit.sum())
        return feats

    def compute(self) -> Tensor:
        real_n = int(self.real_n)
        fake_n = tuple(int(n) for n in self.fake_n)
        if real_n < 2:
            raise ValueError(f"FVD needs at least 2 real videos, got {real_n}")
        for run, n in enumerate(fake_n):
            if n < 2:
                in_run = f" in run {run}" if self.runs > 1 else ""
                raise ValueError(f"FVD needs at least 2 generated videos{in_run}, got {n}")
        self.counts = ClipCounts(real=real_n, generated=fake_n, real_from_cache=int(self.real_from_cache))
        self._save_new_real_features()
        mu_r, sigma_r = gaussian_from_sums(self.real_n, self.real_sum, self.real_outer, ddof=self.ddof)
        values = []
        for run in range(self.runs):
            fake = (self.fake_n[run], self.fake_sum[run], self.fake_outer[run])
            mu_f, sigma_f = gaussian_from_sums(*fake, ddof=self.ddof)
            values.append(frechet_distance(mu_r, sigma_r, mu_f, sigma_f))
        out = torch.tensor(values, dtype=torch.float64, device=self.device)
        return out[0] if self.runs == 1 else out

    def _save_new_real_features(self) -> None:
        """Add the real features computed in this evaluation, gathered from every process, to the cache; rank 0
        writes the file. A collective call under DDP, as the states' synchronisation in ``compute()`` is."""
        if self.real_cache is None:
            return
        entries = list(self._new_real)
        distributed = dist.is_available() and dist.is_initialized() and self.sync_on_compute
        if distributed and dist.get_world_size(self.process_group) > 1:
            gathered: list[Any] = [None] * dist.get_world_size(self.process_group)
            dist.all_gather_object(gathered, entries, group=self.process_group)
            entries = [entry for rank_entries in gathered for entry in rank_entries]
        if not entries:
            return
        added = self.real_cache.add(torch.cat([d for d, _ in entries]), torch.cat([f for _, f in entries]))
        if added and (not distributed or dist.get_rank() == 0):
            self.real_cache.save()

    def reset(self) -> None:
        super().reset()
        self._new_real = []

    # Copies (deepcopy, pickling for spawn) re-load weights lazily instead of carrying
    # the loaded network; a user-supplied extractor is kept.
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if not state.get("_extractor_is_user", False):
            state["_extractor"] = None
        return state
