"""The denoiser's x0 error by noise level against predicting the mean, for any method's checkpoint.

    python benchmarks/denoiser_diagnostic.py --config experiments/fdm_shapes.yaml \\
        --ckpt_path runs/fdm_shapes/checkpoints/last.ckpt [--levels 12] [--batches 2] [--out DIR]

Model and data come from the config exactly as ``vdiff`` builds them (any ``--model...``/``--data...`` override
goes after ``--``); the test clips are scored with the evaluation weights (``ema.evaluate``). Writes
``denoiser_diagnostic.json`` and ``denoiser_diagnostic.png`` to ``--out`` (default: ``<run folder>/diagnostics``) and
prints the table. Levels where the model is worse than the mean (PSNR below the mean's) are where samplers go wrong:
they start from those estimates.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytorch_lightning as pl
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from video_diffusion_lab.cli import VideoDiffusionCLI  # noqa: E402
from video_diffusion_lab.metrics.denoising import NoiseLevelError, noise_levels, x0_error_by_noise_level  # noqa: E402


def build(config: str, overrides: list[str]) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    cli = VideoDiffusionCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        save_config_callback=None,
        auto_configure_optimizers=False,
        args=["--config", config, "--trainer.logger", "false", *overrides],
    )
    return cli.model, cli.datamodule


def plot(rows: list[dict[str, float]], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log_snr = [r["log_snr"] for r in rows]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(log_snr, [r["x0_psnr"] for r in rows], "o-", label="denoiser x0 estimate")
    axis.plot(log_snr, [r["mean_psnr"] for r in rows], "--", label="predict the mean")
    axis.set_xlabel("log-SNR of the noise level")
    axis.set_ylabel("PSNR of latent frames (dB)")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--ckpt_path", required=True, type=Path)
    parser.add_argument("--levels", type=int, default=12, help="noise levels spread over the schedule")
    parser.add_argument("--batches", type=int, default=2, help="test batches to score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args, overrides = parser.parse_known_args()
    overrides = [o for o in overrides if o != "--"]

    model, data = build(args.config, overrides)
    if not args.ckpt_path.is_file():
        raise FileNotFoundError(f"--ckpt_path: no checkpoint at {args.ckpt_path}")
    checkpoint = torch.load(args.ckpt_path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    data.setup("test")
    generator = torch.Generator().manual_seed(args.seed)
    times = noise_levels(model.schedule, args.levels)
    per_batch: list[list[NoiseLevelError]] = []
    for number, batch in enumerate(data.test_dataloader()):
        if number == args.batches:
            break
        x0, mask, cond = model.diagnostic_inputs(batch)
        per_batch.append(x0_error_by_noise_level(model.denoiser(), model.schedule, x0, mask, times, generator, **cond))
    # Mean squared errors average over batches; the table shows their root.
    rows = []
    for level in zip(*per_batch):
        mse = sum(r.rmse**2 for r in level) / len(level)
        mean_mse = sum(r.mean_rmse**2 for r in level) / len(level)
        rows.append(NoiseLevelError(level[0].time, level[0].log_snr, mse**0.5, mean_mse**0.5).row())

    name = type(model).__name__
    out = args.out or args.ckpt_path.resolve().parent.parent / "diagnostics"
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "method": name,
        "checkpoint": str(args.ckpt_path),
        "checkpoint_global_step": checkpoint.get("global_step"),
        "weights": model.ema_config.evaluate,
        "diffusion": asdict(model.diffusion),
        "batches": len(per_batch),
        "levels": rows,
    }
    (out / "denoiser_diagnostic.json").write_text(json.dumps(report, indent=2) + "\n")
    title = f"{name} {model.diffusion.prediction}/{model.diffusion.schedule}, step {checkpoint.get('global_step')}"
    plot(rows, title, out / "denoiser_diagnostic.png")
    print(f"{title}: x0 estimate on latent frames vs predicting the mean ({len(per_batch)} test batches)")
    print(f"{'time':>8} {'log-SNR':>8} {'x0 PSNR':>8} {'mean PSNR':>10}")
    for r in rows:
        flag = "  <- worse than the mean" if r["x0_psnr"] < r["mean_psnr"] else ""
        print(f"{r['time']:8.3g} {r['log_snr']:8.2f} {r['x0_psnr']:8.2f} {r['mean_psnr']:10.2f}{flag}")
    print(f"Written: {out / 'denoiser_diagnostic.json'}, {out / 'denoiser_diagnostic.png'}")


if __name__ == "__main__":
    main()
