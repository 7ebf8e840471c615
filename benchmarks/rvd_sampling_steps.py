"""What fast sampling costs RVD: CRPS, PSNR/SSIM and time per frame against the number of sampling steps.

A small RVD (the rvd_shapes architecture: base 16, denoiser/context (1, 2, 4), predictor (1, 2, 2); cosine schedule
with 1600 steps, eps, L1) is trained briefly on the embedded moving-shapes set (16x16, 8-frame clips, 3 given), then
rolled out on held-out test clips, ``--samples`` samples per clip, with the paper's full ancestral chain (DDPM, 1600
steps) and with DDIM at 250, 50, 20 and 10 steps, all from the same trained weights and the same seed. The
deterministic predictor alone (x_t = mu_t, no residual) is scored the same way; its CRPS is its mean absolute error
(N identical samples). The copy-last-frame baseline is listed for scale.

    .venv/bin/python benchmarks/rvd_sampling_steps.py [--train-steps 400] [--clips 4] [--samples 4] \
        [--settings ddpm:1600,ddim:250,ddim:50,ddim:20,ddim:10] [--out benchmarks/results/rvd_sampling_steps.txt]

Metrics on the predicted frames only, pixel values in [0, 1]: CRPS (fair estimator, lower is better), PSNR and SSIM
averaged over samples (mean) and the best of the N samples per clip (best). Time per frame: wall-clock seconds of a
rollout divided by the number of generated frames of one video, the whole batch of clips x samples sampled at once.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.moving_shapes import MovingShapesDataModule  # noqa: E402
from lightning_modules.rvd import RVD  # noqa: E402
from metrics.baselines import copy_last_observed  # noqa: E402
from metrics.crps import CRPS  # noqa: E402
from metrics.frame_quality import FrameQuality  # noqa: E402
from diffusion import task_mask  # noqa: E402

SETTINGS = "ddpm:1600,ddim:250,ddim:50,ddim:20,ddim:10"


def parse_settings(text: str) -> list[tuple[str, int]]:
    """"ddpm:1600,ddim:50" -> [("ddpm", 1600), ("ddim", 50)]."""
    pairs = [item.split(":") for item in text.split(",") if item]
    return [(sampler, int(steps)) for sampler, steps in pairs]


def train(model: RVD, steps: int, batch_size: int, lr: float, log_every: int = 50) -> list[float]:
    data = MovingShapesDataModule(num_frames=model.num_frames, image_size=model.image_size, batch_size=batch_size)
    loader = iter(data.train_dataloader())
    optimizer = torch.optim.Adam(model.network.parameters(), lr=lr)
    losses = []
    model.train()
    for step in range(steps):
        loss = model.training_loss(next(loader))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.network.parameters(), 1.0)
        optimizer.step()
        model.ema.update_parameters(model.network)
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            print(f"  step {step + 1}/{steps}: L1 loss {sum(losses[-log_every:]) / log_every:.4f}", flush=True)
    model.eval()
    return losses


def score(samples: torch.Tensor, video: torch.Tensor, latent: torch.Tensor) -> dict[str, float]:
    """samples (N, B, T, C, H, W)."""
    crps, quality = CRPS(), FrameQuality()
    crps.update(samples, video, latent)
    quality.update(samples, video, latent)
    return {"crps": float(crps.compute()), **{k: float(v) for k, v in quality.compute().items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=SETTINGS, help="sampler:steps pairs, comma separated")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rvd_sampling_steps.txt"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    torch.manual_seed(args.seed)
    model = RVD(
        num_frames=8, image_size=16, channels=3, model_channels=16, channel_mult=(1, 2, 4), predictor_mult=(1, 2, 2),
        num_given=3, schedule="cosine", diffusion_steps=1600, ema_decay=0.99,
    )
    params = sum(p.numel() for p in model.network.parameters())
    print(f"RVD {params / 1e6:.2f}M parameters; training {args.train_steps} steps", flush=True)
    t0 = time.perf_counter()
    losses = train(model, args.train_steps, args.batch_size, args.lr)
    train_s = time.perf_counter() - t0

    test = MovingShapesDataModule(num_frames=8, image_size=16, test_size=args.clips).dataset("test")
    video = torch.stack([test[i]["video"] for i in range(args.clips)])
    mask = task_mask("prediction", args.clips, 8, model.num_given)
    latent = mask.latent
    given = video.repeat_interleave(args.samples, 0)  # clip-major: (clips * N, T, C, H, W)
    generated_frames = int(latent[0].sum())

    def as_samples(flat: torch.Tensor) -> torch.Tensor:
        return flat.reshape(args.clips, args.samples, *video.shape[1:]).transpose(0, 1)

    rows = []
    t0 = time.perf_counter()
    mu = model.rollout(given, model.num_given, mu_only=True)
    per_frame = (time.perf_counter() - t0) / generated_frames
    rows.append(("mu alone (predictor)", 0, per_frame, score(as_samples(mu), video, latent)))
    print(f"  {rows[-1][0]}: {rows[-1][3]}", flush=True)
    for sampler, steps in parse_settings(args.settings):
        generator = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        out = model.rollout(given, model.num_given, generator=generator, sampler=sampler, steps=steps)
        per_frame = (time.perf_counter() - t0) / generated_frames
        rows.append((f"RVD {sampler.upper()} {steps} steps", steps, per_frame, score(as_samples(out), video, latent)))
        print(f"  {rows[-1][0]}: {rows[-1][3]} ({per_frame:.2f} s/frame)", flush=True)
    copy = copy_last_observed(video, mask)[None].expand(args.samples, *video.shape)
    rows.append(("copy last frame", 0, 0.0, score(copy, video, latent)))

    lines = [
        "RVD sampling steps on the embedded moving-shapes set (benchmarks/rvd_sampling_steps.py)",
        f"command: .venv/bin/python benchmarks/rvd_sampling_steps.py --train-steps {args.train_steps} "
        f"--clips {args.clips} --samples {args.samples} --threads {args.threads} --settings {args.settings}",
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
        "CPU shared with other jobs (times are indicative)",
        f"model: {params / 1e6:.2f}M parameters, cosine schedule 1600 steps, eps, L1; trained {args.train_steps} steps "
        f"(batch {args.batch_size}, Adam lr {args.lr}) in {train_s:.0f} s, final L1 loss "
        f"{sum(losses[-50:]) / min(50, len(losses)):.4f}; EMA weights (decay 0.99)",
        f"test: {args.clips} held-out 16x16 clips, 3 given -> {generated_frames} predicted frames, "
        f"{args.samples} samples per clip (seed {args.seed}); metrics on predicted frames in [0, 1]",
        "",
        f"{'sampler':<26}{'net calls/frame':>16}{'s/frame':>9}{'CRPS':>9}{'PSNR mean':>11}{'PSNR best':>11}"
        f"{'SSIM mean':>11}{'SSIM best':>11}",
    ]
    for name, steps, per_frame, m in rows:
        lines.append(
            f"{name:<26}{steps:>16}{per_frame:>9.3f}{m['crps']:>9.4f}{m['psnr_mean']:>11.2f}{m['psnr_best']:>11.2f}"
            f"{m['ssim_mean']:>11.3f}{m['ssim_best']:>11.3f}"
        )
    mu_crps = rows[0][3]["crps"]
    beats = [name for name, _, _, m in rows[1:-1] if m["crps"] < mu_crps]
    lines += [
        "",
        f"RVD samples with lower CRPS than mu alone ({mu_crps:.4f}): {', '.join(beats) if beats else 'none'}",
        f"total runtime: {time.perf_counter() - started:.0f} s",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
