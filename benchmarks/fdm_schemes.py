"""FDM's sampling schemes side by side on the embedded long videos (moving shapes with "wrap" motion: squares leave
the view and come back unchanged, so remembering the distant past pays off late in the video).

The model is the README's FDM job (``vdiff fit --config experiments/fdm_shapes.yaml``; trained here if the run folder
has no finished checkpoint). Each scheme generates the 56 frames after 8 given ones of the same held-out 64-frame
videos, from the same noise, with the config's sampler (or ``--sampler``/``--steps``), through the module's own
``sample``. Per scheme:
- PSNR over all generated frames (dB) and late PSNR over the last 16 (long after the prefix);
- colour error over the last 16 frames: mean |mean RGB of generated frame - of true frame| x 255 (a square that
  comes back with another colour, or not at all, raises it);
- copy-last-frame on the same frames.

    .venv/bin/python benchmarks/fdm_schemes.py [--run runs/fdm_shapes] [--videos 32] [--sampler dpmpp_2m --steps 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, fit, markdown_table, training_minutes  # noqa: E402
from video_diffusion_lab import cli as vdiff  # noqa: E402
from video_diffusion_lab.diffusion import task_mask  # noqa: E402
from video_diffusion_lab.diffusion.schemes import SCHEMES  # noqa: E402
from video_diffusion_lab.metrics.baselines import copy_last_observed  # noqa: E402
from video_diffusion_lab.metrics.frame_quality import frame_psnr, to_unit_range  # noqa: E402

CONFIG = REPO / "experiments" / "fdm_shapes.yaml"
LATE = 16


def scores(frames: torch.Tensor, video: torch.Tensor, num_given: int) -> dict[str, float]:
    generated, true = to_unit_range(frames[:, num_given:]), to_unit_range(video[:, num_given:])
    per_frame = frame_psnr(generated.flatten(0, 1), true.flatten(0, 1)).view(true.shape[:2])
    colour = (generated[:, -LATE:].mean(dim=(-2, -1)) - true[:, -LATE:].mean(dim=(-2, -1))).abs().mean() * 255
    return {
        "psnr": per_frame.mean().item(),
        "late_psnr": per_frame[:, -LATE:].mean().item(),
        "colour_error": colour.item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "fdm_shapes")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    args = parser.parse_args()

    steps = yaml.safe_load(CONFIG.read_text())["trainer"]["max_steps"]
    fit(CONFIG, args.run, steps)
    checkpoint = torch.load(args.run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sampling = [
        f"--model.init_args.sampling.{k}={v}" for k, v in (("sampler", args.sampler), ("steps", args.steps)) if v
    ]

    def build(*flags: str) -> vdiff.VideoDiffusionCLI:
        return vdiff.run(
            [
                "--config",
                str(CONFIG),
                "--trainer.logger",
                "false",
                f"--data.init_args.test_size={args.videos}",
                *sampling,
                *flags,
            ],
            subcommand=False,
        )

    # The same test videos, given frames and copy-last baseline for every scheme.
    data = build().datamodule.dataset("test")
    video = default_collate([data[i] for i in range(len(data))])["video"]
    video = video.float() / 127.5 - 1 if video.dtype == torch.uint8 else video
    rows, results = [], {}
    for scheme in args.schemes:
        module = build(f"--model.init_args.rollout.scheme={scheme}").model.eval()
        module.load_state_dict(checkpoint["state_dict"])
        num_given = module.task.num_given
        mask = task_mask("prediction", video.shape[0], video.shape[1], num_given)
        start = time.perf_counter()
        with torch.no_grad():
            sample = module.sample(video, mask, generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - start
        results[scheme] = {
            **scores(sample, video, num_given),
            "seconds_per_video": seconds / video.shape[0],
            "stages": len(module.video_sampler().stages(video.shape[1], num_given)),
        }
        rows.append(
            [
                scheme,
                results[scheme]["psnr"],
                results[scheme]["late_psnr"],
                results[scheme]["colour_error"],
                results[scheme]["stages"],
                results[scheme]["seconds_per_video"],
            ]
        )
        print(rows[-1], flush=True)
    base = results["copy_last_frame"] = scores(copy_last_observed(video, mask), video, num_given)
    rows.append(["copy last frame", base["psnr"], base["late_psnr"], base["colour_error"], 0, 0.0])
    table = markdown_table(
        ["scheme", "PSNR (dB)", f"late PSNR (last {LATE})", f"colour error (last {LATE}, x255)", "stages", "s / video"],
        rows,
    )
    info = (
        f"{len(video)} held-out videos, {num_given} given -> {video.shape[1] - num_given} generated; model: "
        f"{checkpoint['global_step']} steps ({training_minutes(args.run):.1f} min), sampler "
        f"{module.sampling.sampler} {module.sampling.steps} steps per pass"
    )
    out = args.run / "benchmark"
    out.mkdir(exist_ok=True)
    (out / "fdm_schemes.md").write_text(info + "\n\n" + table + "\n")
    (out / "fdm_schemes.json").write_text(json.dumps({"info": info, "results": results}, indent=2) + "\n")
    print(info + "\n\n" + table)


if __name__ == "__main__":
    main()
