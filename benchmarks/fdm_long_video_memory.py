"""Peak memory and time of sampling long videos with FDM's schemes: T = 100, 300, 1000 frames, a small model.

The video stays on the CPU; only a stage's frames (at most K) go to the model's device, so the device's peak memory
must not grow with T. Each T runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own; on
a GPU the script also reports torch.cuda.max_memory_allocated.

    .venv/bin/python benchmarks/fdm_long_video_memory.py [--device cuda] [--steps 5] [--scheme autoreg]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One thread: on a small shared CPU, more threads than free cores make every op tens of times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(REPO))


def one_run(length: int, device: str, steps: int, scheme: str, image_size: int) -> dict:
    import torch

    from video_diffusion_lab.groups import ClipShape, RolloutConfig, SamplingConfig, TaskConfig
    from video_diffusion_lab.lightning_modules.fdm import FDM, FDMUNetConfig

    torch.manual_seed(0)
    model = (
        FDM(
            clip=ClipShape(num_frames=8, image_size=image_size, channels=3),
            network=FDMUNetConfig(
                model_channels=16, channel_mult=(1, 2), attention_resolutions=(image_size // 2,), num_heads=2
            ),
            sampling=SamplingConfig(sampler="ddim", steps=steps),
            task=TaskConfig(num_given=4, video_length=length),
            rollout=RolloutConfig(scheme=scheme, frames_per_stage=4, adaptive_distance="pixel"),
        )
        .to(device)
        .eval()
    )
    video = torch.zeros(1, length, 3, image_size, image_size)  # on the CPU
    video[:, :4] = torch.rand(1, 4, 3, image_size, image_size) * 2 - 1
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = model.sample_long(video, 4, generator=torch.Generator(device).manual_seed(0))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert out.device.type == "cpu" and torch.isfinite(out).all()
    return {
        "T": length,
        "stages": len(model.video_sampler().stages(length, 4)),
        "seconds": round(seconds, 2),
        "video_MiB": round(video.numel() * 4 / 2**20, 2),
        "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_device_MiB": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--scheme", default="autoreg")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.device, args.steps, args.scheme, args.image_size)))
        return
    print(
        f"FDM long-video sampling: K=8, 4 new frames per stage, 4 given, {args.image_size}x{args.image_size}, "
        f"width 16, DDIM {args.steps} steps, scheme {args.scheme}, device {args.device}, batch 1"
    )
    print(f"{'T':>6} {'stages':>7} {'seconds':>8} {'video MiB':>10} {'peak RSS MiB':>13} {'peak device MiB':>16}")
    for length in args.lengths:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(length),
            "--device",
            args.device,
            "--steps",
            str(args.steps),
            "--scheme",
            args.scheme,
            "--image-size",
            str(args.image_size),
        ]
        result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        device_peak = result["peak_device_MiB"] if result["peak_device_MiB"] is not None else "-"
        print(
            f"{result['T']:>6} {result['stages']:>7} {result['seconds']:>8} {result['video_MiB']:>10} "
            f"{result['peak_rss_MiB']:>13} {device_peak:>16}"
        )


if __name__ == "__main__":
    main()
