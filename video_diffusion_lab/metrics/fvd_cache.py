"""The data set's side of FVD kept on disk: each real clip's I3D features, computed once per weights file.

An entry is keyed by the sha256 of the clip's uint8 frames and shape, the exact input of both I3D preprocessing
recipes, and a cache file by the extractor family, the weights file's sha256 and the preprocessing version. A clip's
features are therefore reused exactly when the same pixels go through the same file and the same preprocessing: a
changed data set, split, frame window, clip length or resolution gives other pixels and so other keys, an edited data
file recomputes only its own clips, and another weights file or preprocessing opens another cache file. Names (data
set, split, root) are not trusted for this; they can stay the same while the pixels change.

The files live in the user cache directory, ``default_cache_dir() / "fvd_real_features"`` (``$VIDEO_DIFFUSION_CACHE``
moves the root, where the weight files are looked up too), not in a run folder: the statistics belong to the data and
the weights file, not to a run, so every run and checkpoint scored on the same clips shares them.

Writes are atomic (a temporary file, then a rename), and a write first merges what is on disk, so two processes that
save at once lose at most entries that the next run computes again; a file that does not load is reported and
replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .weights import default_cache_dir

CACHE_FORMAT = 1
DIGEST_BYTES = 32


def default_feature_cache_dir() -> Path:
    return default_cache_dir() / "fvd_real_features"


def clip_digests(clips: Tensor) -> Tensor:
    """(B, ...) uint8 clips -> (B, 32) uint8: the sha256 of each clip's shape and bytes."""
    if clips.dtype != torch.uint8:
        raise TypeError(f"clip_digests hashes uint8 clips, got {clips.dtype}")
    rows = []
    for clip in clips.detach().to("cpu").contiguous():
        digest = hashlib.sha256(repr(tuple(clip.shape)).encode())
        digest.update(clip.numpy().tobytes())
        rows.append(torch.frombuffer(bytearray(digest.digest()), dtype=torch.uint8))
    return torch.stack(rows) if rows else torch.zeros(0, DIGEST_BYTES, dtype=torch.uint8)


class RealFeatureCache:
    """Features of real clips by clip digest, for one extractor identity, stored in one file.

    ``identity`` (JSON-able: family, weights sha256, preprocessing, feature dimension) names the file and is stored
    in it; a file whose identity differs is never read. Features are kept in float32: the I3D files compute in
    float32, so the round trip to the float64 statistics is exact and a cached FVD equals a recomputed one.
    """

    def __init__(self, identity: Mapping[str, Any], directory: str | Path | None = None) -> None:
        self.identity = {"format": CACHE_FORMAT, **dict(identity)}
        key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]
        family = str(self.identity.get("family", "fvd"))
        self.path = Path(directory if directory is not None else default_feature_cache_dir()) / f"{family}-{key}.pt"
        self._rows: dict[bytes, Tensor] = self._read()

    def __len__(self) -> int:
        return len(self._rows)

    def _read(self) -> dict[bytes, Tensor]:
        if not self.path.is_file():
            return {}
        try:
            stored = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(stored, dict) or stored.get("identity") != self.identity:
                raise ValueError("its identity differs from the extractor's")
            digests, features = stored["digests"], stored["features"]
        # torch.load fails on a truncated or foreign file in many ways (IndexError among them); any of them means
        # the file is rebuilt, never trusted, and must not stop an evaluation.
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"FVD feature cache {self.path} is unreadable ({err}); it will be rebuilt", stacklevel=2)
            return {}
        return {bytes(d.tolist()): f for d, f in zip(digests, features, strict=True)}

    def lookup(self, digests: Tensor) -> tuple[Tensor, Tensor]:
        """For (B, 32) digests: which clips are cached (B,) bool, and their features (B, D) float64 (0 if not)."""
        keys = [bytes(d.tolist()) for d in digests.to("cpu")]
        hit = torch.tensor([k in self._rows for k in keys], dtype=torch.bool)
        dim = int(self.identity["feature_dim"])
        features = torch.zeros(len(keys), dim, dtype=torch.float64)
        for i, key in enumerate(keys):
            if hit[i]:
                features[i] = self._rows[key].to(torch.float64)
        return hit, features

    def add(self, digests: Tensor, features: Tensor) -> int:
        """Store features (N, D) under their clips' digests (N, 32); returns how many were new."""
        before = len(self._rows)
        for digest, feature in zip(digests.to("cpu"), features.detach().to("cpu", torch.float32), strict=True):
            self._rows[bytes(digest.tolist())] = feature
        return len(self._rows) - before

    def save(self) -> Path:
        """Write every entry (merged with what another process may have written meanwhile) atomically."""
        for key, value in self._read().items():
            self._rows.setdefault(key, value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._rows)
        payload = {
            "identity": self.identity,
            "digests": torch.tensor([list(k) for k in keys], dtype=torch.uint8).view(-1, DIGEST_BYTES),
            "features": torch.stack([self._rows[k] for k in keys]) if keys else torch.zeros(0, 0),
        }
        handle, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.path
