"""RVD's released checkpoints (buggyyang/RVD): ``{"step", "model", "ema"}`` as its ``Trainer.save`` writes them, each
the state dict of the whole ``GaussianDiffusion``: ``denoise_fn.`` (the denoiser ``Unet``), ``history_fn.`` (the
context network ``CondNet``), ``transform_fn.`` (the next-frame predictor ``HistoryNet``) and the diffusion's
schedule buffers. The network is rebuilt from the release's ``config.py`` values, passed as official arguments."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from video_diffusion_lab.networks.official.improved_diffusion import OfficialDiffusion
from video_diffusion_lab.networks.official.keys import (
    OfficialCheckpointError,
    expected_shapes,
    load_checkpoint,
    map_weights,
)
from video_diffusion_lab.networks.rvd import RVDNetwork, RVDNetworkConfig

# config.py's training settings (the network's are derived from img_size below, as config.py does)
DEFAULTS: dict[str, Any] = dict(
    iteration_step=1600,
    context_dim_factor=1,
    transform_dim_factor=1,
    pred_mode="noise",
    transform_mode="residual",
    backbone="resnet",
    loss_type="l1",
    clip_noise=True,
    img_channel=3,
    ema_decay=0.99,
    ema_step=5,
    ema_start_step=2000,
    init_num_of_frame=4,
    aux_loss=False,
)
NETWORK_KEYS = ("img_size", "embed_dim", "dim_mults", "transform_dim_mults", "sequence_length")
DATA_CONFIG_KEYS = ("img_size", "img_channel", "sequence_length", "dataset_name")
# config.py's other names: accepted (a copy of the whole file's values is fine) and not used
UNUSED = (
    "n_step",
    "scheduler_checkpoint_step",
    "log_checkpoint_step",
    "gradient_accumulate_every",
    "lr",
    "decay",
    "minf",
    "optimizer",
    "load_model",
    "load_step",
    "val_num_of_batch",
    "additional_note",
    "batch_size",
    "model_name",
    "result_root",
    "tensorboard_root",
    "data_path",
    "add_noise",
    "img_hz_flip",
)
KNOWN = {*DEFAULTS, *NETWORK_KEYS, *DATA_CONFIG_KEYS, *UNUSED}

# The schedule buffers of GaussianDiffusion: not network weights; ``betas`` is checked against our schedule.
SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)

LEVEL = r"\.(\d+)\."
RENAMES = (
    # the three networks
    (r"^denoise_fn\.", "denoiser."),
    (r"^history_fn\.", "context_encoder."),
    (r"^transform_fn\.", "predictor."),
    # denoiser (Unet): time MLP, down levels [res, res over [x, context], attention, downsample], middle, up levels
    (r"^denoiser\.time_mlp\.1\.", "denoiser.time_embed.linear_1."),
    (r"^denoiser\.time_mlp\.3\.", "denoiser.time_embed.linear_2."),
    (r"^denoiser\.downs" + LEVEL + r"0\.", r"denoiser.down_levels.\1.res_block."),
    (r"^denoiser\.downs" + LEVEL + r"1\.", r"denoiser.down_levels.\1.context_res_block."),
    (r"^denoiser\.downs" + LEVEL + r"2\.", r"denoiser.down_levels.\1.attention."),
    (r"^denoiser\.downs" + LEVEL + r"3\.conv\.", r"denoiser.down_levels.\1.downsample."),
    (r"^denoiser\.ups" + LEVEL + r"0\.", r"denoiser.up_levels.\1.res_block."),
    (r"^denoiser\.ups" + LEVEL + r"1\.", r"denoiser.up_levels.\1.res_block2."),
    (r"^denoiser\.ups" + LEVEL + r"2\.", r"denoiser.up_levels.\1.attention."),
    (r"^denoiser\.ups" + LEVEL + r"3\.conv\.", r"denoiser.up_levels.\1.upsample."),
    (r"^denoiser\.mid_attn\.", "denoiser.mid_attention."),
    (r"^denoiser\.final_conv\.0\.", "denoiser.out.block."),
    (r"^denoiser\.final_conv\.1\.", "denoiser.out.conv."),
    # recurrent networks (CondNet, HistoryNet): levels [res, ConvGRU, downsample]; HistoryNet's ups [res, upsample]
    (r"^(context_encoder|predictor)\.downs" + LEVEL + r"0\.", r"\1.levels.\2.res_block."),
    (r"^(context_encoder|predictor)\.downs" + LEVEL + r"1\.conv_gates\.0\.", r"\1.levels.\2.gru.gates."),
    (r"^(context_encoder|predictor)\.downs" + LEVEL + r"1\.conv_cans\.0\.", r"\1.levels.\2.gru.candidate."),
    (r"^(context_encoder|predictor)\.downs" + LEVEL + r"2\.conv\.", r"\1.levels.\2.downsample."),
    (r"^predictor\.ups" + LEVEL + r"0\.", r"predictor.up_levels.\1.res_block."),
    (r"^predictor\.ups" + LEVEL + r"1\.conv\.", r"predictor.up_levels.\1.upsample."),
    (r"^predictor\.mu\.", "predictor.to_frame."),
    # inside the blocks: Residual(PreNorm(LinearAttention)), ResnetBlock, Block
    (r"\.fn\.fn\.to_qkv\.", ".qkv."),
    (r"\.fn\.fn\.to_out\.", ".proj_out."),
    (r"\.fn\.norm\.g$", ".norm.weight"),
    (r"\.fn\.norm\.b$", ".norm.bias"),
    (r"\.mlp\.1\.", ".emb_proj."),
    (r"\.block\.0\.", ".conv."),
    (r"\.block\.1\.", ".norm."),
    (r"\.res_conv\.", ".skip."),
)


def official_arguments(official_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """config.py's values: flat, or with its nested ``data_config``; network sizes derived from img_size as there."""
    given = dict(official_args or {})
    data_config = given.pop("data_config", {}) or {}
    unknown = sorted((set(given) | set(data_config)) - KNOWN)
    if unknown:
        raise OfficialCheckpointError(f"--official-args: unknown RVD settings {unknown}; known: {sorted(KNOWN)}")
    args = {**DEFAULTS, **{k: v for k, v in data_config.items() if k in DATA_CONFIG_KEYS}, **given}
    if "img_size" not in args:
        raise OfficialCheckpointError(
            "img_size: RVD's official arguments must give the image size (config.py's "
            "data_config['img_size']); the network's widths follow from it"
        )
    size = int(args["img_size"])
    if size == 64:
        derived = dict(embed_dim=48, transform_dim_mults=(1, 2, 2, 4), dim_mults=(1, 2, 4, 8))
    elif size in (128, 256):
        derived = dict(embed_dim=64, transform_dim_mults=(1, 2, 3, 4), dim_mults=(1, 1, 2, 2, 4, 4))
    else:
        derived = {}
    missing = [k for k in ("embed_dim", "dim_mults", "transform_dim_mults") if k not in args and k not in derived]
    if missing:
        raise OfficialCheckpointError(
            f"{missing}: config.py derives them only for img_size 64, 128 and 256; give them for img_size {size}"
        )
    return {**derived, **args}


def network_config(args: Mapping[str, Any]) -> RVDNetworkConfig:
    if args["backbone"] != "resnet":
        raise OfficialCheckpointError(
            f"backbone: only 'resnet' (the released models') is supported, got {args['backbone']!r}"
        )
    if args["transform_mode"] != "residual":
        raise OfficialCheckpointError(f"transform_mode: only 'residual' is supported, got {args['transform_mode']!r}")
    return RVDNetworkConfig(
        model_channels=int(args["embed_dim"]),
        channel_mult=tuple(int(m) for m in args["dim_mults"]),
        predictor_mult=tuple(int(m) for m in args["transform_dim_mults"]),
        context_dim_factor=float(args["context_dim_factor"]),
        predictor_dim_factor=float(args["transform_dim_factor"]),
        time_scale=int(args["iteration_step"]) / 1000,
    )


def check_schedule(state: Mapping[str, torch.Tensor], steps: int, source: str) -> None:
    """The released schedule is the cosine one of improved-diffusion; its buffers must equal ours."""
    from video_diffusion_lab.diffusion.schedules import DiscreteSchedule

    if "betas" not in state:
        raise OfficialCheckpointError(f"{source}: no 'betas' buffer: not a GaussianDiffusion state dict")
    betas = state["betas"].double()
    if betas.numel() != steps:
        raise OfficialCheckpointError(
            f"iteration_step: the checkpoint's schedule has {betas.numel()} steps, the official arguments say {steps}"
        )
    ours = DiscreteSchedule.cosine(steps).betas
    if not torch.allclose(betas, ours, rtol=1e-5, atol=1e-7):
        raise OfficialCheckpointError(f"{source}: the checkpoint's betas are not the cosine schedule of {steps} steps")


def read(path: Path, official_args: Mapping[str, Any] | None, weights: str) -> dict[str, Any]:
    args = official_arguments(official_args)
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, Mapping) or not {"model", "ema"} <= set(checkpoint):
        raise OfficialCheckpointError(f"{path}: expected RVD's {{'step', 'model', 'ema'}} checkpoint")
    if weights not in ("ema", "model"):
        raise OfficialCheckpointError(f"weights: choose 'ema' or 'model', got {weights!r}")
    state = {k.removeprefix("module."): v for k, v in checkpoint[weights].items()}
    steps = int(args["iteration_step"])
    check_schedule(state, steps, str(path))
    state = {k: v for k, v in state.items() if k not in SCHEDULE_BUFFERS}
    config = network_config(args)
    image_size, channels = int(args["img_size"]), int(args["img_channel"])
    expected = expected_shapes(lambda: RVDNetwork(config, image_size=image_size, channels=channels))
    if args["pred_mode"] not in ("noise", "pred_true"):
        raise OfficialCheckpointError(f"pred_mode: expected 'noise' or 'pred_true', got {args['pred_mode']!r}")
    return dict(
        config=config,
        image_size=image_size,
        channels=channels,
        diffusion=OfficialDiffusion(
            schedule="cosine", steps=steps, prediction="eps" if args["pred_mode"] == "noise" else "x0"
        ),
        state_dict=map_weights(state, RENAMES, expected, f"{path} [{weights!r}]"),
        video_length=int(args["sequence_length"]) if "sequence_length" in args else None,
        training=dict(
            loss_type=args["loss_type"],
            ema_rate=float(args["ema_decay"]),
            ema_step=int(args["ema_step"]),
            ema_start_step=int(args["ema_start_step"]),
            init_num_of_frame=int(args["init_num_of_frame"]),
            clip_noise=bool(args["clip_noise"]),
        ),
        step=int(checkpoint["step"]) if checkpoint.get("step") is not None else None,
        notes=(),
    )
