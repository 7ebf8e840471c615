"""Released checkpoints of FDM, RaMViD and RVD, read in their repositories' own save formats.

``read_official(method, checkpoint_path, official_args, weights)`` rebuilds our network from the official arguments
(FDM: the training arguments inside the checkpoint; RaMViD and RVD: ``official_args``, with the official scripts' own
names), maps every weight by the method's table of renames (``RENAMES`` in ``fdm.py``, ``ramvid.py``, ``rvd.py``) and
returns an ``ImportedModel``: the network config and clip shape, the official diffusion settings and the state dict
in our names. A weight left over or missing on either side, or of another shape, is an ``OfficialCheckpointError``
naming it. Nothing of the official code is used: only its checkpoints' key names and its flags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from video_diffusion_lab.networks.fdm_unet import FDMUNet, FDMUNetConfig
from video_diffusion_lab.networks.official import fdm, ramvid, rvd
from video_diffusion_lab.networks.official.improved_diffusion import OfficialDiffusion
from video_diffusion_lab.networks.official.keys import OfficialCheckpointError
from video_diffusion_lab.networks.ramvid_unet import RaMViDUNet, RaMViDUNetConfig
from video_diffusion_lab.networks.rvd import RVDNetwork, RVDNetworkConfig

METHODS = {"fdm": fdm, "ramvid": ramvid, "rvd": rvd}
NetworkConfig = FDMUNetConfig | RaMViDUNetConfig | RVDNetworkConfig

__all__ = [
    "METHODS",
    "ImportedModel",
    "OfficialCheckpointError",
    "OfficialDiffusion",
    "load_official_args",
    "read_official",
]


@dataclass(frozen=True)
class ImportedModel:
    """A released checkpoint in the framework's terms."""

    method: str  # "fdm" | "ramvid" | "rvd"
    config: NetworkConfig
    image_size: int
    channels: int
    diffusion: OfficialDiffusion
    state_dict: dict[str, Tensor]  # in our network's names
    max_frames: int | None = None  # FDM: K, the frames of one pass
    video_length: int | None = None  # the training clip / video length (FDM T, RaMViD seq_len, RVD sequence_length)
    training: dict[str, Any] = field(default_factory=dict)  # other official training settings (EMA rate, p_uncond...)
    step: int | None = None  # training step of the checkpoint
    notes: tuple[str, ...] = ()  # what the import decided (e.g. the learned-variance half left out)

    def network(self) -> nn.Module:
        """Our network, built and loaded with every weight (strict)."""
        if self.method == "fdm":
            net = FDMUNet(self.config, image_size=self.image_size, channels=self.channels, max_frames=self.max_frames)
        elif self.method == "ramvid":
            net = RaMViDUNet(self.config, image_size=self.image_size, channels=self.channels)
        else:
            net = RVDNetwork(self.config, image_size=self.image_size, channels=self.channels)
        net.load_state_dict(self.state_dict, strict=True)
        return net


def load_official_args(value: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``--official-args``: a JSON object, or the path of a JSON file holding one."""
    if value is None or isinstance(value, Mapping):
        return dict(value) if value is not None else None
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise OfficialCheckpointError(f"--official-args: {value!r} is neither a JSON object nor a JSON file")
        text = path.read_text()
    try:
        args = json.loads(text)
    except json.JSONDecodeError as error:
        raise OfficialCheckpointError(f"--official-args: not valid JSON ({error})") from None
    if not isinstance(args, dict):
        raise OfficialCheckpointError(f"--official-args: expected a JSON object, got {type(args).__name__}")
    return args


def read_official(
    method: str,
    checkpoint_path: str | Path,
    official_args: str | Mapping[str, Any] | None = None,
    weights: str = "ema",
) -> ImportedModel:
    """Read a released checkpoint. ``weights`` picks RVD's "ema" or "model" weights; an FDM or RaMViD file holds one
    set (``ema_<rate>_<step>.pt`` or ``model<step>.pt``), chosen by choosing the file."""
    if method not in METHODS:
        raise OfficialCheckpointError(f"method: choose one of {sorted(METHODS)}, got {method!r}")
    path = Path(checkpoint_path)
    if not path.is_file():
        raise OfficialCheckpointError(f"{path}: no such checkpoint file")
    fields = METHODS[method].read(path, load_official_args(official_args), weights)
    return ImportedModel(method=method, **fields)
