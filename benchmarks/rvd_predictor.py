"""RVD's deterministic next-frame predictor mu against copying the previous frame, teacher-forced on held-out clips.

RVD generates frame t as mu_t (from the true frames before t, here) plus a sampled residual; a predictor worse than
copying the previous frame leaves the diffusion model to undo its errors. Reads a trained RVD run folder (e.g. the
four-method table's: ``benchmarks/method_table.py``), EMA weights as the config evaluates them.

    .venv/bin/python benchmarks/rvd_predictor.py --run runs/method_table/rvd [--config experiments/rvd_shapes.yaml]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO  # noqa: E402
from video_diffusion_lab import cli as vdiff  # noqa: E402
from video_diffusion_lab.metrics.frame_quality import frame_psnr, to_unit_range  # noqa: E402


def trained_with(run: Path, field: str, default):
    """A model option as the run was trained (its ``config_fit.yaml``, command-line overrides included)."""
    saved = run / "config_fit.yaml"
    if not saved.exists():
        return default
    return yaml.safe_load(saved.read_text())["model"]["init_args"].get(field, default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "method_table" / "rvd")
    parser.add_argument("--config", type=Path, default=REPO / "experiments" / "rvd_shapes.yaml")
    args = parser.parse_args()
    cli = vdiff.run(["--config", str(args.config), "--trainer.logger", "false"], subcommand=False)
    module = cli.model.eval()
    checkpoint = torch.load(args.run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    data = cli.datamodule.dataset("test")
    video = default_collate([data[i] for i in range(len(data))])["video"]
    network = module.ema.module if module.uses_ema(None) else module.network
    with torch.no_grad():
        mu, _ = network.teacher_forcing(video)  # slot t: the prediction of frame t from the true frames before it
    frames = slice(1, None)  # frame 0 has nothing before it

    def psnr(prediction: torch.Tensor) -> float:
        return (
            frame_psnr(
                to_unit_range(prediction[:, frames].flatten(0, 1)), to_unit_range(video[:, frames].flatten(0, 1))
            )
            .mean()
            .item()
        )

    result = {
        "clips": len(data),
        "checkpoint_global_step": checkpoint["global_step"],
        "predictor_loss_weight": trained_with(args.run, "predictor_loss_weight", module.predictor_loss_weight),
        "loss_type": trained_with(args.run, "loss_type", module.loss_type),
        "mu_psnr": psnr(mu),
        "copy_previous_frame_psnr": psnr(video.roll(1, dims=1)),
    }
    out = args.run / "benchmark"
    out.mkdir(exist_ok=True)
    (out / "rvd_predictor.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
