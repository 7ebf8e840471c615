"""FDM's released checkpoints (plai-group/flexible-video-diffusion-modeling): ``{"state_dict", "config", "step"}``
as its ``TrainLoop.save`` writes them, ``config`` holding the training arguments the network is rebuilt from (as the
released ``scripts/video_sample.py`` does)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from video_diffusion_lab.networks.fdm_unet import FDMUNet, FDMUNetConfig
from video_diffusion_lab.networks.official.improved_diffusion import (
    UNET_RENAMES,
    as_bool,
    attention_resolutions,
    channel_mult,
    diffusion_settings,
    file_name_info,
    mean_half_of_output,
    require,
)
from video_diffusion_lab.networks.official.keys import (
    OfficialCheckpointError,
    expected_shapes,
    load_checkpoint,
    map_weights,
)

NETWORK_ARGS = (
    "image_size",
    "num_channels",
    "num_res_blocks",
    "num_heads",
    "num_heads_upsample",
    "attention_resolutions",
    "dropout",
    "learn_sigma",
    "class_cond",
    "diffusion_steps",
    "noise_schedule",
    "predict_xstart",
    "rescale_timesteps",
    "use_scale_shift_norm",
    "use_rpe_net",
    "max_frames",
)

RENAMES = (
    *UNET_RENAMES,
    (r"\.rpe_([qkv])\.rpe_net\.", r".rpe_\1."),
    (r"\.embed_distances\.", ".embed_distance."),
    (r"\.embed_diffusion_time\.", ".embed_time."),
)


def network_config(args: Mapping[str, Any]) -> tuple[FDMUNetConfig, int]:
    if not as_bool(args["use_rpe_net"], "use_rpe_net"):
        raise OfficialCheckpointError("use_rpe_net: only True is supported (the released code cannot build False)")
    if as_bool(args["class_cond"], "class_cond"):
        raise OfficialCheckpointError("class_cond: the released FDM U-Net has no class conditioning")
    image_size = int(args["image_size"])
    mult = channel_mult("fdm", image_size)
    heads_up = int(args["num_heads_upsample"])
    config = FDMUNetConfig(
        model_channels=int(args["num_channels"]),
        channel_mult=mult,
        num_res_blocks=int(args["num_res_blocks"]),
        attention_resolutions=attention_resolutions(args["attention_resolutions"], image_size, mult),
        num_heads=int(args["num_heads"]),
        num_heads_upsample=None if heads_up == -1 else heads_up,
        dropout=float(args["dropout"]),
        use_scale_shift_norm=as_bool(args["use_scale_shift_norm"], "use_scale_shift_norm"),
    )
    return config, image_size


def read(path: Path, official_args: Mapping[str, Any] | None, weights: str) -> dict[str, Any]:
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or not {"state_dict", "config"} <= set(checkpoint):
        raise OfficialCheckpointError(f"{path}: expected FDM's {{'state_dict', 'config', 'step'}} checkpoint")
    # --official-args, if given, override entries of the checkpoint's own training arguments.
    args = {**checkpoint["config"], **(official_args or {})}
    require(args, NETWORK_ARGS, str(path))
    config, image_size = network_config(args)
    diffusion = diffusion_settings(args)
    state = dict(checkpoint["state_dict"])
    notes = mean_half_of_output(state, 3, diffusion.learn_sigma)
    max_frames = int(args["max_frames"])
    expected = expected_shapes(lambda: FDMUNet(config, image_size=image_size, channels=3, max_frames=max_frames))
    video_length = int(args["T"]) if int(args.get("T", -1)) > 0 else None
    return dict(
        config=config,
        image_size=image_size,
        channels=3,
        diffusion=diffusion,
        state_dict=map_weights(state, RENAMES, expected, str(path)),
        max_frames=max_frames,
        video_length=video_length,
        training=dict(
            dataset=args.get("dataset"),
            ema_rate=file_name_info(path.name)[1] or float(str(args.get("ema_rate", "0.9999")).split(",")[0]),
        ),
        step=int(checkpoint["step"]) if checkpoint.get("step") is not None else None,
        notes=tuple(notes),
    )
