"""RaMViD's released checkpoints (Tobi-r9/RaMViD): a bare improved-diffusion ``state_dict`` (``ema_<rate>_<step>.pt``
or ``model<step>.pt``); the network is rebuilt from the training flags, passed as official arguments."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from video_diffusion_lab.networks.official.improved_diffusion import (
    UNET_RENAMES,
    as_bool,
    attention_resolutions,
    channel_mult,
    diffusion_settings,
    file_name_info,
    mean_half_of_output,
)
from video_diffusion_lab.networks.official.keys import (
    OfficialCheckpointError,
    expected_shapes,
    load_checkpoint,
    map_weights,
)
from video_diffusion_lab.networks.ramvid_unet import RaMViDUNet, RaMViDUNetConfig

# The released scripts' defaults (diffusion_openai/script_util.py model_and_diffusion_defaults and
# scripts/video_train.py): a flag not given is the script's default, as on the official command line.
DEFAULTS: dict[str, Any] = dict(
    image_size=64,
    num_channels=128,
    num_res_blocks=2,
    num_heads=4,
    num_heads_upsample=-1,
    attention_resolutions="16,8",
    dropout=0.0,
    learn_sigma=False,
    sigma_small=False,
    class_cond=False,
    diffusion_steps=1000,
    noise_schedule="linear",
    timestep_respacing="",
    use_kl=False,
    predict_xstart=False,
    rescale_timesteps=True,
    rescale_learned_sigmas=True,
    use_checkpoint=False,
    use_scale_shift_norm=True,
    scale_time_dim=20,
    rgb=True,
    seq_len=20,
    max_num_mask_frames=4,
    uncondition_rate=0.0,
    ema_rate="0.9999",
)

RENAMES = UNET_RENAMES  # the attention blocks' names (norm, qkv, proj_out) are ours already


def network_config(args: Mapping[str, Any]) -> tuple[RaMViDUNetConfig, int, int]:
    """(config, image_size, channels) from the released flags."""
    if as_bool(args["class_cond"], "class_cond"):
        raise OfficialCheckpointError(
            "class_cond: class-conditional RaMViD models are not supported (none is released)"
        )
    if int(args["scale_time_dim"]) != 0:
        raise OfficialCheckpointError(
            f"scale_time_dim: only 0 (no temporal downsampling, as every released RaMViD model) is supported, got "
            f"{args['scale_time_dim']} (the released script's default is 20: pass scale_time_dim=0 as the released "
            "flags do)"
        )
    image_size = int(args["image_size"])
    mult = channel_mult("ramvid", image_size)
    heads_up = int(args["num_heads_upsample"])
    config = RaMViDUNetConfig(
        model_channels=int(args["num_channels"]),
        channel_mult=mult,
        num_res_blocks=int(args["num_res_blocks"]),
        attention_resolutions=attention_resolutions(args["attention_resolutions"], image_size, mult),
        num_heads=int(args["num_heads"]),
        num_heads_upsample=None if heads_up == -1 else heads_up,
        dropout=float(args["dropout"]),
        use_scale_shift_norm=as_bool(args["use_scale_shift_norm"], "use_scale_shift_norm"),
    )
    return config, image_size, 3 if as_bool(args["rgb"], "rgb") else 1


def read(path: Path, official_args: Mapping[str, Any] | None, weights: str) -> dict[str, Any]:
    unknown = sorted(set(official_args or {}) - set(DEFAULTS))
    if unknown:
        raise OfficialCheckpointError(f"--official-args: unknown RaMViD flags {unknown}; known: {sorted(DEFAULTS)}")
    args = {**DEFAULTS, **(official_args or {})}
    state = load_checkpoint(path)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OfficialCheckpointError(f"{path}: expected a bare state_dict as RaMViD's TrainLoop saves it")
    state = dict(state)
    config, image_size, channels = network_config(args)
    diffusion = diffusion_settings(args)
    notes = mean_half_of_output(state, channels, diffusion.learn_sigma)
    expected = expected_shapes(lambda: RaMViDUNet(config, image_size=image_size, channels=channels))
    step, ema_rate = file_name_info(path.name)
    return dict(
        config=config,
        image_size=image_size,
        channels=channels,
        diffusion=diffusion,
        state_dict=map_weights(state, RENAMES, expected, str(path)),
        video_length=int(args["seq_len"]),
        training=dict(
            uncondition_rate=float(args["uncondition_rate"]),
            max_num_mask_frames=int(args["max_num_mask_frames"]),
            ema_rate=ema_rate or float(str(args["ema_rate"]).split(",")[0]),
        ),
        step=step,
        notes=tuple(notes),
    )
