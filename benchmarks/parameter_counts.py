"""Parameter counts of our networks at the papers' released settings, against the released code's.

    .venv/bin/python benchmarks/parameter_counts.py [--official-root /path/to/official/checkouts] \
        [--out benchmarks/results/parameter_counts.txt]

Our networks are built on the meta device (no memory). The released code's counts are the numbers recorded below,
measured by building each released network with its own code at the same flags (torch 2.13, CPU):

- RaMViD (Tobi-r9/RaMViD d04802577e0a): ``diffusion_openai.script_util.create_model_and_diffusion`` with its defaults
  and the README's MODEL_FLAGS: ``--image_size 64 --num_channels 128 --num_res_blocks 2|3 --scale_time_dim 0``
  (BAIR: 2, Kinetics-600 and UCF-101: 3);
- FDM (plai-group/flexible-video-diffusion-modeling 4c3d78b07fd3): ``improved_diffusion.script_util`` with its
  defaults and the README's CARLA command (``--num_res_blocks=1``, image size 128 from the data set); README: 80.4M;
- RVD (buggyyang/RVD 309fbe0d4fae): ``GaussianDiffusion(Unet, CondNet, HistoryNet)`` as ``train_video.py`` builds it
  with ``config.py``'s values for 64x64 (paper: 37.6M) and 128x128.

With ``--official-root`` pointing at checkouts of the three repositories (folders ``RaMViD``,
``flexible-video-diffusion-modeling``, ``RVD``), the released counts are measured again by running that code (read
and run only; RaMViD's code imports matplotlib and RVD's kornia, which the framework itself does not need).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_diffusion_lab.networks import (  # noqa: E402
    FDMUNet,
    FDMUNetConfig,
    RaMViDUNet,
    RaMViDUNetConfig,
    RVDNetwork,
    RVDNetworkConfig,
)

RVD_128 = RVDNetworkConfig(model_channels=64, channel_mult=(1, 1, 2, 2, 4, 4), predictor_mult=(1, 2, 3, 4))

# name -> (our network, the released code's count as recorded)
SETTINGS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "RaMViD BAIR 64x64 (num_res_blocks 2)": (
        lambda: RaMViDUNet(RaMViDUNetConfig(num_res_blocks=2), image_size=64, channels=3),
        235_071_875,
    ),
    "RaMViD Kinetics-600 / UCF-101 64x64 (num_res_blocks 3)": (
        lambda: RaMViDUNet(RaMViDUNetConfig(num_res_blocks=3), image_size=64, channels=3),
        308_343_427,
    ),
    "FDM CARLA Town01 128x128": (
        lambda: FDMUNet(FDMUNetConfig(), image_size=128, channels=3, max_frames=20),
        80_358_147,
    ),
    "RVD 64x64": (lambda: RVDNetwork(RVDNetworkConfig(), image_size=64, channels=3), 37_611_414),
    "RVD 128x128": (lambda: RVDNetwork(RVD_128, image_size=128, channels=3), 43_613_702),
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def ours(build: Callable[[], nn.Module]) -> int:
    with torch.device("meta"):
        return count(build())


def measure_official(root: Path) -> dict[str, int]:
    """Build the released networks with the released code (imported from ``root``, never copied)."""

    def isolated(repo: str):
        sys.path.insert(0, str(root / repo))
        return lambda: sys.path.remove(str(root / repo))

    counts = {}
    done = isolated("RaMViD")
    from diffusion_openai.script_util import create_model_and_diffusion, model_and_diffusion_defaults

    for name, blocks in [
        ("RaMViD BAIR 64x64 (num_res_blocks 2)", 2),
        ("RaMViD Kinetics-600 / UCF-101 64x64 (num_res_blocks 3)", 3),
    ]:
        flags = {
            **model_and_diffusion_defaults(),
            "image_size": 64,
            "num_channels": 128,
            "num_res_blocks": blocks,
            "scale_time_dim": 0,
        }
        with torch.device("meta"):
            counts[name] = count(create_model_and_diffusion(**flags)[0])
    done()

    done = isolated("flexible-video-diffusion-modeling")
    from improved_diffusion.script_util import create_model_and_diffusion as fdm_create
    from improved_diffusion.script_util import model_and_diffusion_defaults as fdm_defaults

    with torch.device("meta"):
        counts["FDM CARLA Town01 128x128"] = count(
            fdm_create(**{**fdm_defaults(), "image_size": 128, "num_res_blocks": 1})[0]
        )
    done()

    done = isolated("RVD")
    from modules.denoising_diffusion import GaussianDiffusion
    from modules.temporal_models import CondNet, HistoryNet
    from modules.unet import Unet

    for name, dim, dim_mults, transform_mults in [
        ("RVD 64x64", 48, (1, 2, 4, 8), (1, 2, 2, 4)),
        ("RVD 128x128", 64, (1, 1, 2, 2, 4, 4), (1, 2, 3, 4)),
    ]:
        diffusion = GaussianDiffusion(
            Unet(dim=dim, context_dim_factor=1, channels=3, dim_mults=dim_mults),
            CondNet(dim=dim, channels=3, backbone="resnet", dim_mults=dim_mults),
            HistoryNet(dim=dim, channels=3, context_mode="residual", dim_mults=transform_mults, backbone="resnet"),
            timesteps=1600,
            loss_type="l1",
            aux_loss=False,
        )
        counts[name] = count(diffusion)
    done()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-root", type=Path, help="checkouts of the three official repositories")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()

    official = {name: recorded for name, (_, recorded) in SETTINGS.items()}
    source = "recorded"
    if args.official_root is not None:
        measured = measure_official(args.official_root)
        changed = {name for name in official if measured[name] != official[name]}
        if changed:
            print(f"warning: the released code now counts differently from the recorded numbers for {sorted(changed)}")
        official, source = measured, "measured by running the released code, --official-root"

    lines = [f"Parameter counts at the released settings: ours vs the released code ({source})", ""]
    lines.append(f"{'setting':<56} {'ours':>13} {'released':>13}  equal")
    for name, (build, _) in SETTINGS.items():
        n = ours(build)
        lines.append(f"{name:<56} {n:>13,} {official[name]:>13,}  {'yes' if n == official[name] else 'NO'}")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
