"""The networks are the released ones: official checkpoints, imported, give the official networks' outputs.

The reference sets (``/work/shared/official_reference`` next to the repository, and any folders in the same format
named by ``VDIFF_OFFICIAL_REFERENCE``, separated by ``os.pathsep``) hold checkpoints written by the official code with
random weights and the official networks' inputs and outputs on one batch (their README). Each set is imported with
``vdiff_import`` into a Lightning checkpoint, loaded with ``<Method>.load_from_checkpoint`` and run through the path
the samplers use, ``module.denoiser(use_ema=True).network_output(z, t, mask, **cond)``, with t the discrete diffusion
step; the outputs must equal the official ones to 1e-4 relative (fp32, CPU). Nothing here depends on the sets' sizes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from einops import rearrange

from video_diffusion_lab.diffusion.masks import FrameMask
from video_diffusion_lab.import_cli import write_lightning_checkpoint
from video_diffusion_lab.networks import RVDNetwork, RVDNetworkConfig
from video_diffusion_lab.networks.official import read_official

SHARED = Path(__file__).resolve().parents[2] / "shared" / "official_reference"
TOLERANCE = 1e-4


def reference_folders() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("VDIFF_OFFICIAL_REFERENCE", "").split(os.pathsep) if p]
    return [folder for folder in (SHARED, *extra) if (folder / "manifest.json").is_file()]


def reference_sets():
    sets = [
        pytest.param(folder, method, id=f"{folder.name}-{method}")
        for folder in reference_folders()
        for method in json.loads((folder / "manifest.json").read_text())
    ]
    return sets or [
        pytest.param(
            None,
            None,
            marks=pytest.mark.skip(
                reason=f"no official reference tensors: {SHARED} is absent (and VDIFF_OFFICIAL_REFERENCE names none)"
            ),
        )
    ]


def relative_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    return float((ours - official).abs().max() / official.abs().max())


def official_args(folder: Path, method: str) -> dict | None:
    entry = json.loads((folder / "manifest.json").read_text())[method]
    return None if method == "fdm" else entry["args"]


def imported_module(folder: Path, method: str, tmp_path: Path):
    """Official checkpoint -> vdiff-import's Lightning checkpoint -> <Method>.load_from_checkpoint."""
    from video_diffusion_lab import lightning_modules

    entry = json.loads((folder / "manifest.json").read_text())[method]
    imported = read_official(method, folder / entry["checkpoint"], official_args(folder, method))
    out = write_lightning_checkpoint(imported, tmp_path / f"{method}.ckpt")
    cls = {"fdm": lightning_modules.FDM, "ramvid": lightning_modules.RaMViD, "rvd": lightning_modules.RVD}[method]
    return cls.load_from_checkpoint(out, map_location="cpu").eval(), torch.load(folder / entry["io"], weights_only=True)


@pytest.mark.parametrize("folder,method", reference_sets())
def test_imported_network_gives_the_official_outputs(folder, method, tmp_path):
    module, io = imported_module(folder, method, tmp_path)
    denoiser = module.denoiser(use_ema=True)
    with torch.no_grad():
        if method == "fdm":
            observed, latent = io["obs_mask"].bool(), io["latent_mask"].bool()
            z = torch.where(observed[..., None, None, None], io["x0"], io["x_t"])  # given frames clean in their slots
            out = denoiser.network_output(z, io["t"], FrameMask(observed, latent, io["frame_indices"]))
            official = io["output"][:, :, : out.shape[2]]  # learn_sigma: the eps / x0 half
            # observed and padding slots carry no meaning; compare the generated ones
            keep = latent[..., None, None, None].expand_as(out)
            error = relative_error(out[keep], official[keep])
        elif method == "ramvid":
            z = rearrange(io["x_in"], "b c t h w -> b t c h w")
            out = denoiser.network_output(z, io["t"], FrameMask.from_observed(io["observed"]))
            error = relative_error(out, rearrange(io["output"][:, : out.shape[2]], "b c t h w -> b t c h w"))
        else:
            video = rearrange(io["video"], "t b c h w -> b t c h w")
            mu, context = denoiser.network.teacher_forcing(video)
            official_mu = rearrange(io["mu"], "t b c h w -> b t c h w")
            assert relative_error(mu[:, 1:], official_mu) < TOLERANCE, "predicted frames mu"
            # frame i + 1 denoised with the context of frames 0..i; slot 0 is given
            residuals = torch.cat(
                [torch.zeros_like(video[:, :1]), rearrange(io["x_noisy"], "t b c h w -> b t c h w")], dim=1
            )
            given = torch.zeros(video.shape[:2], dtype=torch.bool)
            given[:, 0] = True
            out = denoiser.network_output(residuals, io["t"], FrameMask.from_observed(given), context=context)
            error = relative_error(out[:, 1:], rearrange(io["denoiser_output"], "t b c h w -> b t c h w"))
    print(f"{folder.name} {method}: max relative difference {error:.2e}")
    assert error < TOLERANCE


@pytest.mark.parametrize("folder,method", [p for p in reference_sets() if p.values[1] in ("fdm", None)])
def test_fdm_fixed_temporal_norm_differs_only_where_a_pass_has_padding(folder, method):
    io = torch.load(folder / json.loads((folder / "manifest.json").read_text())["fdm"]["io"], weights_only=True)
    observed, latent = io["obs_mask"].bool(), io["latent_mask"].bool()
    padded = (~(observed | latent)).any(dim=1)
    if padded.all() or not padded.any():
        pytest.skip("the reference batch needs passes with and without padding")
    imported = read_official("fdm", folder / json.loads((folder / "manifest.json").read_text())["fdm"]["checkpoint"])
    official_form = imported.network().eval()
    fixed = type(official_form)(
        type(imported.config)(**{**imported.config.__dict__, "temporal_norm": "exclude_padding"}),
        image_size=imported.image_size,
        channels=imported.channels,
        max_frames=imported.max_frames,
    ).eval()
    fixed.load_state_dict(imported.state_dict)
    z = torch.where(observed[..., None, None, None], io["x0"], io["x_t"])
    mask = FrameMask(observed, latent, io["frame_indices"])
    time = io["t"].float() * 1000 / imported.diffusion.steps
    with torch.no_grad():
        a, b = official_form(z, time, mask), fixed(z, time, mask)
    keep = latent[..., None, None, None].expand_as(a)
    for example in range(a.shape[0]):
        difference = relative_error(b[example][keep[example]], a[example][keep[example]])
        assert (difference > 1e-3) if padded[example] else (difference < TOLERANCE), (example, difference)


@pytest.mark.parametrize("folder,method", [p for p in reference_sets() if p.values[1] in ("rvd", None)])
def test_rvd_model_and_ema_weights_are_both_importable(folder, method):
    entry = json.loads((folder / "manifest.json").read_text())["rvd"]
    checkpoint = torch.load(folder / entry["checkpoint"], weights_only=True)
    ema = read_official("rvd", folder / entry["checkpoint"], entry["args"], weights="ema").state_dict
    raw = read_official("rvd", folder / entry["checkpoint"], entry["args"], weights="model").state_dict
    official_differ = any(not torch.equal(checkpoint["model"][k], checkpoint["ema"][k]) for k in checkpoint["model"])
    ours_differ = any(not torch.equal(ema[k], raw[k]) for k in ema)
    assert ours_differ == official_differ
    networks = ("denoise_fn.", "history_fn.", "transform_fn.")  # all but the schedule buffers
    assert sum(v.numel() for v in raw.values()) == sum(
        v.numel() for k, v in checkpoint["model"].items() if k.startswith(networks)
    )


# The released code's counts (benchmarks/parameter_counts.py builds both): RVD with config.py's 64x64 and 128x128
# settings. RaMViD and FDM: tests/test_ramvid_unet.py, tests/test_fdm_network.py.
@pytest.mark.parametrize(
    "image_size,config,official",
    [
        (64, RVDNetworkConfig(), 37_611_414),
        (
            128,
            RVDNetworkConfig(model_channels=64, channel_mult=(1, 1, 2, 2, 4, 4), predictor_mult=(1, 2, 3, 4)),
            43_613_702,
        ),
    ],
)
def test_rvd_released_sizes_have_the_released_parameter_count(image_size, config, official):
    with torch.device("meta"):
        count = sum(p.numel() for p in RVDNetwork(config, image_size=image_size, channels=3).parameters())
    print(f"RVD {image_size}x{image_size}: {count:,} parameters (released code: {official:,})")
    assert count == official
