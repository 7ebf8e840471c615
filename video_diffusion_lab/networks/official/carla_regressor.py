"""FDM's released CARLA regressor (plai-group/flexible-video-diffusion-modeling, README "Interpretable metrics"):
``classifier_checkpoint.pth`` and ``regressor_checkpoint.pth``, read into ``CellPositionRegressor``.

Both files are bare state dicts as ``improved_diffusion/carla_regressor.py`` saves them (``th.save(model.state_dict())``
after ``set_up_model``): the classifier is torchvision's ``resnet152`` with ``fc`` replaced by a 100-way linear layer
(keys ``conv1.``, ``bn1.``, ``layer<i>.<j>.conv1..3 / bn1..3 / downsample.0..1``, ``fc.``); the regressor,
``MultiHeadResNet152``, holds a ``resnet152`` without ``fc`` under ``resnet.`` and 100 linear heads ``regressors.<k>``.
``scripts/video_to_world_coords.py`` runs them in tandem: the classifier's argmax picks the regressor's head.

The ResNet's shape (stem width, bottleneck and output widths, blocks per stage) is read from the weights, so a file of
any bottleneck ResNet the official code could save is read; every weight must then land on ours with its shape.
``vdiff-import carla_regressor`` writes the result as one file (``save_imported``) that the CARLA protocol loads
(``load_imported``), with the sha256 of the two released files it came from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from video_diffusion_lab.metrics.weights import file_sha256
from video_diffusion_lab.networks.official.keys import (
    OfficialCheckpointError,
    expected_shapes,
    load_checkpoint,
    map_weights,
)
from video_diffusion_lab.networks.position_regressor import CellPositionRegressor, ResNetConfig

FORMAT = "vdiff-carla-regressor/1"
STAGES = 4  # torchvision's ResNets: layer1..layer4

# torchvision's ResNet names, under "classifier." / "regressor.", -> CellPositionRegressor's; the anchored stem names
# go first, so that the blocks' ".conv1." cannot take the stem's conv1
TRUNK = r"^(classifier|regressor)\."
RENAMES = (
    (r"^classifier\.fc\.", "cell_logits."),
    (TRUNK + r"conv1\.", r"\1.stem.conv."),
    (TRUNK + r"bn1\.", r"\1.stem.norm."),
    *((TRUNK + rf"layer{i + 1}\.", rf"\1.stages.{i}.") for i in range(STAGES)),
    (r"\.conv1\.", ".reduce.conv."),
    (r"\.bn1\.", ".reduce.norm."),
    (r"\.conv2\.", ".spatial.conv."),
    (r"\.bn2\.", ".spatial.norm."),
    (r"\.conv3\.", ".expand.conv."),
    (r"\.bn3\.", ".expand.norm."),
    (r"\.downsample\.0\.", ".shortcut.conv."),
    (r"\.downsample\.1\.", ".shortcut.norm."),
)


@dataclass(frozen=True)
class ImportedRegressor:
    config: ResNetConfig
    cells: int
    state_dict: dict[str, Tensor]  # in CellPositionRegressor's names
    sources: dict[str, dict[str, str]]  # {"classifier" | "regressor": {"file": name, "sha256": hex}}

    def network(self) -> CellPositionRegressor:
        network = CellPositionRegressor(self.config, self.cells)
        network.load_state_dict(self.state_dict, strict=True)
        return network.eval()


def resnet_config(state: Mapping[str, Tensor], source: str) -> ResNetConfig:
    """The bottleneck ResNet's shape, read from torchvision key names (without prefix)."""
    if "conv1.weight" not in state:
        raise OfficialCheckpointError(f"{source}: no conv1.weight; expected a torchvision ResNet's state dict")
    widths, outs, blocks = [], [], []
    for stage in range(1, STAGES + 1):
        indices = {int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.conv3\.weight$", k))}
        if not indices or indices != set(range(len(indices))):
            raise OfficialCheckpointError(
                f"{source}: layer{stage} has bottleneck blocks {sorted(indices)}; expected 0..n-1 (a ResNet with "
                "Bottleneck blocks, as resnet152)"
            )
        widths.append(state[f"layer{stage}.0.conv1.weight"].shape[0])
        outs.append(state[f"layer{stage}.0.conv3.weight"].shape[0])
        blocks.append(len(indices))
    return ResNetConfig(state["conv1.weight"].shape[0], tuple(widths), tuple(outs), tuple(blocks))


def stacked_heads(state: Mapping[str, Tensor], source: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """MultiHeadResNet152's ``regressors.<k>.weight / bias`` as (cells, 2, F) / (cells, 2); the other weights apart."""
    heads = {k: v for k, v in state.items() if k.startswith("regressors.")}
    rest = {k: v for k, v in state.items() if not k.startswith("regressors.")}
    cells = sorted({int(m.group(1)) for k in heads if (m := re.match(r"regressors\.(\d+)\.weight$", k))})
    if not cells or cells != list(range(len(cells))):
        raise OfficialCheckpointError(f"{source}: expected heads regressors.0 .. regressors.<n-1>, got cells {cells}")
    names = [f"regressors.{k}.{p}" for k in cells for p in ("weight", "bias")]
    if set(heads) != set(names):
        raise OfficialCheckpointError(f"{source}: unexpected head weights {sorted(set(heads) ^ set(names))}")
    weight = torch.stack([heads[f"regressors.{k}.weight"] for k in cells])
    bias = torch.stack([heads[f"regressors.{k}.bias"] for k in cells])
    return rest, {"head_weight": weight, "head_bias": bias}


def read_state(path: Path, role: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise OfficialCheckpointError(f"{path}: no such file (the released {role}_checkpoint.pth)")
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"{path}: expected a state dict (name -> tensor), as carla_regressor.py saves")
    return dict(state)


def read_carla_regressor(classifier_path: str | Path, regressor_path: str | Path) -> ImportedRegressor:
    """The released classifier and regressor files as one ``CellPositionRegressor`` state dict (every weight
    checked)."""
    classifier_path, regressor_path = Path(classifier_path), Path(regressor_path)
    classifier, regressor = read_state(classifier_path, "classifier"), read_state(regressor_path, "regressor")
    if "fc.weight" not in classifier:
        raise OfficialCheckpointError(f"{classifier_path}: no fc.weight; is this the classifier file?")
    if not any(k.startswith("resnet.") for k in regressor):
        raise OfficialCheckpointError(f"{regressor_path}: no resnet.* weights; is this the regressor file?")
    trunk, heads = stacked_heads(regressor, str(regressor_path))
    trunk = {k.removeprefix("resnet."): v for k, v in trunk.items()}
    config = resnet_config(classifier, str(classifier_path))
    if resnet_config(trunk, str(regressor_path)) != config:
        raise OfficialCheckpointError(
            f"{classifier_path} and {regressor_path} hold ResNets of different shapes "
            f"({config} and {resnet_config(trunk, str(regressor_path))})"
        )
    cells = classifier["fc.weight"].shape[0]
    if heads["head_weight"].shape[0] != cells:
        raise OfficialCheckpointError(
            f"the classifier has {cells} cells but the regressor {heads['head_weight'].shape[0]} heads"
        )
    official = {
        **{f"classifier.{k}": v for k, v in classifier.items()},
        **{f"regressor.{k}": v for k, v in trunk.items()},
    }
    expected = expected_shapes(lambda: CellPositionRegressor(config, cells))
    expected_trunks = {k: v for k, v in expected.items() if not k.startswith("head_")}
    state = map_weights(official, RENAMES, expected_trunks, f"{classifier_path} + {regressor_path}")
    for key, value in heads.items():
        if value.shape != expected[key]:
            raise OfficialCheckpointError(
                f"{regressor_path}: heads of shape {tuple(value.shape)}, ours {tuple(expected[key])}"
            )
        state[key] = value.detach().clone().float()
    sources = {
        role: {"file": path.name, "sha256": file_sha256(path)}
        for role, path in (("classifier", classifier_path), ("regressor", regressor_path))
    }
    return ImportedRegressor(config, cells, state, sources)


def save_imported(imported: ImportedRegressor, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "config": {
                k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(imported.config).items()
            },
            "cells": imported.cells,
            "state_dict": imported.state_dict,
            "sources": imported.sources,
        },
        out,
    )
    return out


def load_imported(path: str | Path) -> tuple[CellPositionRegressor, dict[str, Any]]:
    """The network written by ``vdiff-import carla_regressor`` and its record: the file, its sha256 and the released
    files it came from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no imported CARLA regressor there. Download FDM's released regressor (README of "
            "plai-group/flexible-video-diffusion-modeling, 'Interpretable metrics': classifier_checkpoint.pth and "
            f"regressor_checkpoint.pth) and import it: vdiff-import carla_regressor regressor_checkpoint.pth "
            f"--classifier classifier_checkpoint.pth --out {path}"
        )
    content = load_checkpoint(path)
    if not isinstance(content, Mapping) or content.get("format") != FORMAT:
        raise OfficialCheckpointError(f"{path}: not a file written by vdiff-import carla_regressor ({FORMAT})")
    config = ResNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in content["config"].items()})
    imported = ImportedRegressor(config, int(content["cells"]), dict(content["state_dict"]), dict(content["sources"]))
    record = {"kind": "released", "file": str(path), "sha256": file_sha256(path), "sources": imported.sources}
    return imported.network(), record
