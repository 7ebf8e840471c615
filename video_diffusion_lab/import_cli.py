"""vdiff-import: turn a released FDM, RaMViD or RVD checkpoint into a Lightning checkpoint of the method's module,
or FDM's released CARLA regressor into the file the CARLA protocol reads.

    vdiff-import {fdm,ramvid,rvd} OFFICIAL_CHECKPOINT --out OUT.ckpt [--official-args JSON] [--weights ema|model]
    vdiff-import carla_regressor regressor_checkpoint.pth --classifier classifier_checkpoint.pth --out OUT.pt

The checkpoint is read in its repository's own save format (``networks.official``), the network is rebuilt from the
official arguments and every weight is mapped; the result is a checkpoint of ``lightning_modules.<Method>`` with its
hyper-parameters in LightningCLI's form and the weights in both the network and the EMA copy, so that
``<Method>.load_from_checkpoint(OUT.ckpt)`` runs it. Beside it, ``OUT.yaml`` holds the same settings as a config
overlay: ``vdiff`` runs the model its config describes (an explicit checkpoint never replaces it), so the released
network is run with

    vdiff test --config experiments/<method's paper config>.yaml --config OUT.yaml --ckpt_path OUT.ckpt

What the checkpoint's hyper-parameters hold: the clip shape, the network config, the diffusion settings and the EMA
of the official run, and the official training settings the method's module has fields for (RaMViD's p_uncond and
max_given, RVD's loss and warm-up; FDM's frames generated per pass, K // 2 as its sampling script). Sampling, task and
evaluation are left to the config that runs it.

The CARLA regressor (``networks.official.carla_regressor``): the released classifier and regressor files become one
``CellPositionRegressor`` file that records the sha256 of both; ``CARLAPositionMetrics(released_regressor=OUT.pt)``
runs it (``docs/carla.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from video_diffusion_lab.networks.official import ImportedModel, OfficialCheckpointError, read_official
from video_diffusion_lab.networks.official.carla_regressor import read_carla_regressor, save_imported

MODULES = {
    "fdm": "video_diffusion_lab.lightning_modules.FDM",
    "ramvid": "video_diffusion_lab.lightning_modules.RaMViD",
    "rvd": "video_diffusion_lab.lightning_modules.RVD",
}
INSTANTIATOR = "pytorch_lightning.cli.instantiate_module"
CARLA_REGRESSOR = "carla_regressor"


def lightning_hparams(imported: ImportedModel) -> dict[str, Any]:
    """The module's hyper-parameters as LightningCLI stores them (plain dicts, ``_class_path`` / ``_instantiator``)."""
    clip: dict[str, Any] = {"image_size": imported.image_size, "channels": imported.channels}
    frames = imported.max_frames if imported.method == "fdm" else imported.video_length
    if frames is not None:
        clip = {"num_frames": frames, **clip}
    training = imported.training
    hparams: dict[str, Any] = {
        "_class_path": MODULES[imported.method],
        "clip": clip,
        "network": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(imported.config).items()},
        "diffusion": {
            "schedule": imported.diffusion.schedule,
            "steps": imported.diffusion.steps,
            "prediction": imported.diffusion.prediction,
        },
        "ema": {"decay": training["ema_rate"]},
    }
    if imported.method == "fdm":
        # the released sampler's default: half of the K frames of a pass are generated (max_latent_frames = K // 2)
        hparams["rollout"] = {"frames_per_stage": max(1, imported.max_frames // 2)}
    if imported.method == "ramvid":
        hparams["p_uncond"] = training["uncondition_rate"]
        hparams["max_given"] = training["max_num_mask_frames"]
    if imported.method == "rvd":
        hparams["ema"].update(every_n_steps=training["ema_step"], start_step=training["ema_start_step"])
        hparams["loss_type"] = "l1" if training["loss_type"] == "l1" else "mse"
        hparams["residual_scale"] = 1.0  # transform_mode "residual": sigma = 1
        hparams["train_warmup"] = 2  # the released GaussianDiffusion.forward takes the loss from frame 2 on
    return hparams


def build_module(hparams: dict[str, Any]):
    from pytorch_lightning.cli import instantiate_module

    from video_diffusion_lab import lightning_modules

    cls = getattr(lightning_modules, hparams["_class_path"].rsplit(".", 1)[1])
    return instantiate_module(cls, {k: v for k, v in hparams.items() if k != "_instantiator"})


def lightning_checkpoint(imported: ImportedModel) -> dict[str, Any]:
    """The checkpoint dict: the module built from its hyper-parameters, both weight copies set to the import."""
    import pytorch_lightning as pl

    hparams = lightning_hparams(imported)
    module = build_module(hparams)
    state = module.state_dict()
    for prefix in ("network.", "ema.module."):
        for key, value in imported.state_dict.items():
            if prefix + key not in state:
                raise OfficialCheckpointError(f"the module has no weight {prefix + key}: its network differs")
            state[prefix + key] = value
    if "ema.num_updates" in state and imported.step is not None:
        state["ema.num_updates"] = torch.tensor(imported.step, dtype=state["ema.num_updates"].dtype)
    module.load_state_dict(state, strict=True)  # every weight of the module accounted for
    return {
        "state_dict": module.state_dict(),
        "hyper_parameters": {**hparams, "_instantiator": INSTANTIATOR},
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0,
        "global_step": imported.step or 0,
        "official_import": {
            "method": imported.method,
            "step": imported.step,
            "video_length": imported.video_length,
            "learn_sigma": imported.diffusion.learn_sigma,
            "sigma_small": imported.diffusion.sigma_small,
            "timestep_respacing": imported.diffusion.timestep_respacing,
            "notes": list(imported.notes),
        },
    }


def config_overlay(hparams: dict[str, Any]) -> dict[str, Any]:
    """The imported settings as a ``--config`` file: the model block of a vdiff config."""
    init_args = {k: v for k, v in hparams.items() if not k.startswith("_")}
    return {"model": {"class_path": hparams["_class_path"], "init_args": init_args}}


def write_lightning_checkpoint(imported: ImportedModel, out: str | Path) -> Path:
    """OUT.ckpt and, beside it, OUT.yaml (its settings as a config overlay)."""
    import yaml

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = lightning_checkpoint(imported)
    torch.save(checkpoint, out)
    out.with_suffix(".yaml").write_text(
        f"# Written by vdiff-import ({imported.method}, step {imported.step}): the released network's settings, for\n"
        f"#   vdiff test --config <paper config> --config {out.with_suffix('.yaml').name} --ckpt_path {out.name}\n"
        + yaml.safe_dump(config_overlay(checkpoint["hyper_parameters"]), sort_keys=False)
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vdiff-import",
        description="Import a released FDM / RaMViD / RVD checkpoint as a Lightning checkpoint of the method's module, "
        "or FDM's released CARLA regressor for the CARLA protocol.",
    )
    parser.add_argument("method", choices=[*sorted(MODULES), CARLA_REGRESSOR])
    parser.add_argument(
        "checkpoint",
        type=Path,
        help=f"the file as downloaded from the official release ({CARLA_REGRESSOR}: regressor_checkpoint.pth)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help=f"the file to write (a .ckpt; {CARLA_REGRESSOR}: e.g. a .pt)"
    )
    parser.add_argument(
        "--classifier",
        type=Path,
        help=f"{CARLA_REGRESSOR}: the released classifier_checkpoint.pth (it picks the regressor's map cell)",
    )
    parser.add_argument(
        "--official-args",
        help="a JSON object (or a JSON file) with the official scripts' own flag names, e.g. RaMViD's "
        '{"image_size": 64, "num_channels": 128, "num_res_blocks": 3, "scale_time_dim": 0}; FDM reads its '
        "arguments from the checkpoint (given ones override them)",
    )
    parser.add_argument(
        "--weights",
        choices=("ema", "model"),
        help="RVD: which weights of the checkpoint (default ema). An FDM / RaMViD file holds one set: choose the "
        "ema_<rate>_<step>.pt or model<step>.pt file instead",
    )
    return parser.parse_args(argv)


def import_carla_regressor(args: argparse.Namespace) -> int:
    """FDM's released classifier + regressor -> one file for ``CARLAPositionMetrics(released_regressor=...)``."""
    if args.classifier is None or args.official_args is not None or args.weights is not None:
        print(
            f"vdiff-import: error: {CARLA_REGRESSOR} takes regressor_checkpoint.pth and --classifier "
            "classifier_checkpoint.pth (the release runs them in tandem), and no --official-args or --weights",
            file=sys.stderr,
        )
        return 2
    try:
        imported = read_carla_regressor(args.classifier, args.checkpoint)
    except OfficialCheckpointError as error:
        print(f"vdiff-import: error: {error}", file=sys.stderr)
        return 1
    out = save_imported(imported, args.out)
    params = sum(v.numel() for v in imported.state_dict.values() if v.is_floating_point())
    print(f"imported {args.checkpoint} + {args.classifier} (CARLA regressor, {params:,} parameters) -> {out}")
    print(f"  network: {imported.config}, {imported.cells} map cells")
    for role, source in imported.sources.items():
        print(f"  {role}: {source['file']} sha256 {source['sha256']}")
    print(f"  use: CARLAPositionMetrics(released_regressor={out}) (experiments/fdm_carla_test.yaml, docs/carla.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.method == CARLA_REGRESSOR:
        return import_carla_regressor(args)
    if args.classifier is not None:
        print(f"vdiff-import: error: --classifier belongs to {CARLA_REGRESSOR}", file=sys.stderr)
        return 2
    if args.weights is not None and args.method != "rvd":
        print(
            f"vdiff-import: error: --weights: a {args.method} checkpoint file holds one set of weights; import the "
            "ema_<rate>_<step>.pt or the model<step>.pt file",
            file=sys.stderr,
        )
        return 2
    try:
        imported = read_official(args.method, args.checkpoint, args.official_args, args.weights or "ema")
        out = write_lightning_checkpoint(imported, args.out)
    except OfficialCheckpointError as error:
        print(f"vdiff-import: error: {error}", file=sys.stderr)
        return 1
    params = sum(v.numel() for v in imported.state_dict.values())
    print(f"imported {args.checkpoint} ({args.method}, step {imported.step}, {params:,} parameters) -> {out}")
    print(
        f"  config overlay: {out.with_suffix('.yaml')} (vdiff test --config <paper config> --config "
        f"{out.with_suffix('.yaml')} --ckpt_path {out})"
    )
    print(f"  network: {imported.config}")
    print(
        f"  clip: image_size={imported.image_size}, channels={imported.channels}"
        + (f", max_frames={imported.max_frames}" if imported.max_frames else "")
    )
    print(f"  diffusion: {imported.diffusion}")
    for note in imported.notes:
        print(f"  note: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
