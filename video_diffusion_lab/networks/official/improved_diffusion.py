"""What FDM and RaMViD share: improved-diffusion's flags, U-Net layout and key names.

The released U-Nets are improved-diffusion's ``UNetModel`` (RaMViD) and ``UNetVideoModel`` (FDM), laid out block for
block like ``networks.unet.UNet``; only the names inside the blocks differ. ``UNET_RENAMES`` is that table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from video_diffusion_lab.networks.official.keys import OfficialCheckpointError

# improved-diffusion's names inside the blocks -> ours (networks.blocks)
UNET_RENAMES = (
    (r"^time_embed\.0\.", "time_embed.linear_1."),
    (r"^time_embed\.2\.", "time_embed.linear_2."),
    (r"\.in_layers\.0\.", ".in_norm."),
    (r"\.in_layers\.2\.", ".in_conv."),
    (r"\.emb_layers\.1\.", ".emb_proj."),
    (r"\.out_layers\.0\.", ".out_norm."),
    (r"\.out_layers\.3\.", ".out_conv."),
    (r"\.skip_connection\.", ".skip."),
    (r"\.op\.", ".conv."),  # Downsample
    (r"^out\.0\.", "out.norm."),
    (r"^out\.2\.", "out.conv."),
)

# create_model's channel multipliers per image size (identical in FDM's and RaMViD's script_util, but 128)
CHANNEL_MULT = {
    "fdm": {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)},
    "ramvid": {256: (1, 1, 2, 2, 4, 4), 128: (1, 2, 3, 4), 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)},
}


@dataclass(frozen=True)
class OfficialDiffusion:
    """The diffusion settings of the official run, read from its flags.

    ``learn_sigma``: the released network also predicted the variance (2C output channels, improved-diffusion's
    learned-range variance); only the first C channels (the eps / x0 prediction) are imported, and the framework's
    samplers use fixed variances instead. ``sigma_small`` (fixed small vs large ancestral variance) and
    ``timestep_respacing`` (the official sampling grid, e.g. "250" or "ddim50") are recorded for reference.
    """

    schedule: str  # "linear" | "cosine"
    steps: int
    prediction: str  # "eps" | "x0"
    learn_sigma: bool = False
    sigma_small: bool = False
    timestep_respacing: str = ""


def require(args: Mapping[str, Any], keys: tuple[str, ...], source: str) -> None:
    missing = [k for k in keys if k not in args]
    if missing:
        raise OfficialCheckpointError(f"{source}: the official arguments lack {missing}")


def as_bool(value: Any, name: str) -> bool:
    """The released scripts' str2bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("no", "false", "f", "n", "0"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise OfficialCheckpointError(f"{name}: expected a boolean, got {value!r}")


def channel_mult(method: str, image_size: int) -> tuple[int, ...]:
    table = CHANNEL_MULT[method]
    if image_size not in table:
        raise OfficialCheckpointError(
            f"image_size: the released {method} code builds U-Nets for image sizes {sorted(table)}, got {image_size}"
        )
    return table[image_size]


def attention_resolutions(flag: Any, image_size: int, mult: tuple[int, ...]) -> tuple[int, ...]:
    """The flag "16,8" as create_model reads it: downsample rates image_size // r; those that are a level's rate
    hold attention. Returned as the resolutions (pixels) of those levels."""
    values = flag.split(",") if isinstance(flag, str) else list(flag)
    try:
        rates = {image_size // int(r) for r in values if str(r).strip()}
    except (TypeError, ValueError, ZeroDivisionError):
        raise OfficialCheckpointError(f"attention_resolutions: cannot read {flag!r}") from None
    return tuple(image_size // 2**level for level in range(len(mult)) if 2**level in rates)


def diffusion_settings(args: Mapping[str, Any]) -> OfficialDiffusion:
    schedule = args["noise_schedule"]
    if schedule not in ("linear", "cosine"):
        raise OfficialCheckpointError(f"noise_schedule: expected 'linear' or 'cosine', got {schedule!r}")
    steps = int(args["diffusion_steps"])
    if not as_bool(args.get("rescale_timesteps", True), "rescale_timesteps") and steps != 1000:
        raise OfficialCheckpointError(
            f"rescale_timesteps: a network conditioned on the raw step with diffusion_steps={steps} != 1000 is not "
            "supported (the framework feeds improved-diffusion networks t * 1000 / N, rescale_timesteps=True)"
        )
    return OfficialDiffusion(
        schedule=schedule,
        steps=steps,
        prediction="x0" if as_bool(args.get("predict_xstart", False), "predict_xstart") else "eps",
        learn_sigma=as_bool(args.get("learn_sigma", False), "learn_sigma"),
        sigma_small=as_bool(args.get("sigma_small", False), "sigma_small"),
        timestep_respacing=str(args.get("timestep_respacing", "") or ""),
    )


def mean_half_of_output(weights: dict, channels: int, learn_sigma: bool) -> list[str]:
    """learn_sigma=True networks output [mean, variance] (2C channels): keep the mean half of the output conv."""
    if not learn_sigma:
        return []
    for key in ("out.2.weight", "out.2.bias"):
        if key in weights and weights[key].shape[0] == 2 * channels:
            weights[key] = weights[key][:channels]
    return [
        "learn_sigma=True: the released network also predicted the variance (output channels "
        f"{channels}..{2 * channels - 1}); only its eps / x0 half was imported, and samplers use fixed variances"
    ]


def file_name_info(name: str) -> tuple[int | None, float | None]:
    """(step, EMA rate) from improved-diffusion's file names ``ema_<rate>_<step>.pt`` / ``model<step>.pt``."""
    ema = re.search(r"ema_([\d.]+)_(\d+)\.pt$", name)
    if ema:
        return int(ema.group(2)), float(ema.group(1))
    model = re.search(r"model_?(\d+)\.pt$", name)
    return (int(model.group(1)) if model else None), None
