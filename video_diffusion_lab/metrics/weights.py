"""Locating pretrained weight files on local disk.

Evaluation networks (I3D for FVD, AlexNet + linear heads for LPIPS) need weights
that this project never downloads: clusters often have no internet, and silently
fetching a different file changes the numbers. A file is looked up, in order,
from an explicit path, an environment variable, or the shared cache directory
(``~/.cache/video_diffusion/``, overridable with ``VIDEO_DIFFUSION_CACHE``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ENV_VAR = "VIDEO_DIFFUSION_CACHE"


@dataclass(frozen=True)
class WeightSpec:
    """Everything needed to find one weight file and to explain how to get it."""

    name: str
    filename: str
    env_var: str
    how_to_get: str
    # The sha256 of the standard file where one is published, and where it is; None where none could be found.
    sha256: str | None = None
    sha256_source: str = ""


I3D_TORCHSCRIPT = WeightSpec(
    name="FVD I3D (StyleGAN-V TorchScript)",
    filename="i3d_torchscript.pt",
    env_var="FVD_I3D_TORCHSCRIPT",
    how_to_get=(
        "This is the TorchScript port of the tf.hub Kinetics-400 I3D released with StyleGAN-V "
        "(universome/stylegan-v, src/metrics/frechet_video_distance.py links it as "
        "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt); many FVD codebases ship "
        "a copy next to their fvd code."
    ),
    # StyleGAN-V publishes no hash. This is the sha256 (51,235,320 bytes) that independent FVD codebases record for
    # the file at StyleGAN-V's Dropbox link and check before loading it, e.g. the Hugging Face mirror
    # flateon/FVD-I3D-torchscript and the download scripts that fetch it from there or from the Dropbox link.
    sha256="bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2",
    sha256_source="as FVD codebases record it for StyleGAN-V's file, e.g. huggingface.co/flateon/FVD-I3D-torchscript",
)

I3D_STATE_DICT = WeightSpec(
    name="FVD I3D (VideoGPT/TATS state_dict)",
    filename="i3d_pretrained_400.pt",
    env_var="FVD_I3D_STATE_DICT",
    how_to_get=(
        "This is the pytorch-i3d Kinetics-400 state_dict used by VideoGPT and TATS "
        "(wilson1yan/VideoGPT videogpt/fvd/, songweige/TATS tats/fvd/), distributed through "
        "VideoGPT's download helper / the TATS README."
    ),
    # No published hash was found: VideoGPT and TATS download it from Google Drive / OneDrive without a checksum,
    # and no codebase in the searched public code records one. The report gives the file's own sha256 instead.
    sha256=None,
    sha256_source="VideoGPT and TATS distribute i3d_pretrained_400.pt without a published checksum",
)

LPIPS_LINEAR = WeightSpec(
    name="LPIPS linear layers (AlexNet, v0.1)",
    filename="alex.pth",
    env_var="LPIPS_LINEAR_WEIGHTS",
    how_to_get=(
        "It is shipped inside the `lpips` pip package as lpips/weights/v0.1/alex.pth "
        "(also in richzhang/PerceptualSimilarity); copy it from any installed lpips package."
    ),
)

TORCHVISION_ALEXNET = WeightSpec(
    name="AlexNet ImageNet weights (torchvision)",
    filename="alexnet-owt-7be5be79.pth",
    env_var="LPIPS_ALEXNET_WEIGHTS",
    how_to_get=(
        "It is torchvision's AlexNet ImageNet checkpoint "
        "(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth); a machine that has "
        "used torchvision.models.alexnet(weights='DEFAULT') keeps it in "
        "~/.cache/torch/hub/checkpoints/."
    ),
)


def default_cache_dir() -> Path:
    """Directory searched when neither an explicit path nor the env var is given."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "video_diffusion"


def _candidate(path: str | os.PathLike[str] | None, env_var: str, filename: str) -> tuple[Path, str]:
    """The one path that will be tried, and a phrase saying where it came from."""
    if path is not None and str(path) != "":
        origin, raw = "the explicit path argument", Path(path)
    elif os.environ.get(env_var):
        origin, raw = f"${env_var}", Path(os.environ[env_var])
    else:
        cache = default_cache_dir()
        return (cache / filename).resolve(), f"the default cache directory ({cache})"
    raw = raw.expanduser()
    # A directory means "look for the standard filename in there".
    if raw.is_dir():
        raw = raw / filename
    return raw.resolve(), origin


def resolve_weights(
    name: str,
    path: str | os.PathLike[str] | None,
    env_var: str,
    filename: str,
    how_to_get: str,
) -> Path:
    """Return the local weight file for `name`, or raise an explanatory FileNotFoundError.

    Lookup order: `path` (a file, or a directory holding `filename`), then the
    environment variable `env_var`, then ``default_cache_dir() / filename``. The first
    source that is set is the only one tried, so a wrong explicit path is reported
    rather than silently replaced by another file. Nothing is ever downloaded.
    """
    candidate, origin = _candidate(path, env_var, filename)
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"{name}: weight file '{filename}' not found. Searched: {candidate} (from {origin}). "
        f"Set the environment variable {env_var}=/path/to/{filename}, pass the path explicitly, "
        f"or put the file in {default_cache_dir()} (directory overridable with {CACHE_ENV_VAR}). "
        f"{how_to_get} Weights are never downloaded automatically."
    )


def resolve_spec(spec: WeightSpec, path: str | os.PathLike[str] | None = None) -> Path:
    """`resolve_weights` for one of the known files above."""
    return resolve_weights(spec.name, path, spec.env_var, spec.filename, spec.how_to_get)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, hashed once per (path, size, modification time) in this process."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _sha256(str(resolved), stat.st_size, stat.st_mtime_ns)


def describe_weights_file(spec: WeightSpec, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Which file the numbers come from, byte for byte, and whether it is the published one.

    ``is_published_file`` is True or False where ``spec`` knows the published sha256, None where none is known;
    ``note`` says which in words, for the report.
    """
    path = Path(path).resolve()
    digest = file_sha256(path)
    if spec.sha256 is None:
        matches, note = None, f"no published sha256 to compare with: {spec.sha256_source}"
    elif digest == spec.sha256:
        matches, note = True, f"the published {spec.filename} ({spec.sha256_source})"
    else:
        matches, note = (
            False,
            (
                f"NOT the published {spec.filename} (sha256 {spec.sha256}, {spec.sha256_source}): numbers from this "
                "file do not compare with numbers from the published one"
            ),
        )
    return {
        "file": path.name,
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": digest,
        "published_sha256": spec.sha256,
        "is_published_file": matches,
        "note": note,
    }
