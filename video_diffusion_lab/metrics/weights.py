"""Locating pretrained weight files on local disk.

Evaluation networks (I3D for FVD, AlexNet + linear heads for LPIPS) need weights
that this project never downloads: clusters often have no internet, and silently
fetching a different file changes the numbers. A file is looked up, in order,
from an explicit path, an environment variable, or the shared cache directory
(``~/.cache/video_diffusion/``, overridable with ``VIDEO_DIFFUSION_CACHE``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV_VAR = "VIDEO_DIFFUSION_CACHE"


@dataclass(frozen=True)
class WeightSpec:
    """Everything needed to find one weight file and to explain how to get it."""

    name: str
    filename: str
    env_var: str
    how_to_get: str


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
