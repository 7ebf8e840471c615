"""FDM's sampling schemes side by side on the embedded long-video set (moving shapes with "wrap" motion: squares
leave the view and come back unchanged, so remembering the distant past pays off late in the video).

Trains a small FDM (the fdm_shapes.yaml network) for ``--steps`` steps on the CPU, or loads ``--checkpoint``,
then generates the 56 frames after 8 given ones of 64-frame test videos with every scheme (same noise seed) and
reports, per scheme:
- PSNR over all generated frames (dB);
- late PSNR: over the last 16 frames, long after the prefix (the long-range coherence measure);
- colour error: mean |mean RGB of the generated frame - of the true frame| over the last 16 frames, x 255
  (a square that comes back with another colour, or not at all, raises it);
- copy-last-frame PSNR baseline on the same frames.

    .venv/bin/python benchmarks/fdm_schemes_shapes.py [--steps 1500] [--videos 8] [--sampling-steps 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small shared CPUs: extra threads only contend
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from datamodules.moving_shapes import MovingShapesDataset  # noqa: E402
from diffusion.frame_sampling import fdm_training_mask, gather_frames  # noqa: E402
from diffusion.schemes import SCHEMES  # noqa: E402
from lightning_modules.fdm import FDM  # noqa: E402

DATA = dict(num_frames=64, image_size=16, channels=3, num_objects=2, size_range=(3.0, 5.0), speed_range=(0.5, 1.0),
            motion="wrap", offscreen=8.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (((a + 1) / 2 - (b + 1) / 2) ** 2).mean().clamp(min=1e-10)
    return float(-10 * torch.log10(mse))


def train(model: FDM, steps: int, batch_size: int, seconds: float) -> float:
    data = MovingShapesDataset("train", size=10**6, **DATA)
    optimiser = torch.optim.AdamW(model.network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    start, loss = time.perf_counter(), torch.tensor(0.0)
    for step in range(steps):
        video = torch.stack([data[step * batch_size + i]["video"] for i in range(batch_size)])
        slots = fdm_training_mask(batch_size, video.shape[1], model.max_frames, generator)
        frames = gather_frames(video, slots.frame_indices)
        loss = model.denoiser(use_ema=False).loss(frames, slots)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.network.parameters(), 1.0)
        optimiser.step()
        model.ema.update_parameters(model.network)
        if step % 250 == 0:
            print(f"  step {step:5d} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        if time.perf_counter() - start > seconds:
            print(f"  time budget reached at step {step}")
            break
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--train-seconds", type=float, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint", type=str, default=None)
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--sampling-steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = FDM(num_frames=8, image_size=16, channels=3, model_channels=16, channel_mult=(1, 2),
                attention_resolutions=(8,), num_heads=2, video_length=64, frames_per_stage=4, num_given=8,
                sampler="ddim", sampling_steps=args.sampling_steps, adaptive_distance="pixel", ema_decay=0.99)
    start = time.perf_counter()
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
        print(f"loaded {args.checkpoint}")
    else:
        print(f"training {args.steps} steps (at most {args.train_seconds:.0f} s), batch {args.batch_size}")
        final = train(model, args.steps, args.batch_size, args.train_seconds)
        print(f"  final loss {final:.4f}, {time.perf_counter() - start:.0f} s")
    model.eval()
    test = MovingShapesDataset("test", size=args.videos, **DATA)
    truth = torch.stack([test[i]["video"] for i in range(args.videos)])
    late = slice(48, 64)
    copy = truth[:, 7:8].expand_as(truth)
    rows = [("copy last frame", psnr(copy[:, 8:], truth[:, 8:]), psnr(copy[:, late], truth[:, late]),
             float((copy[:, late].mean((-1, -2)) - truth[:, late].mean((-1, -2))).abs().mean() * 127.5), 0, 0.0)]
    for name in SCHEMES:
        model.scheme = name
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.sample_long(truth, 8, use_ema=True, generator=torch.Generator().manual_seed(1))
        colour = float((out[:, late].mean((-1, -2)) - truth[:, late].mean((-1, -2))).abs().mean() * 127.5)
        rows.append((name, psnr(out[:, 8:], truth[:, 8:]), psnr(out[:, late], truth[:, late]), colour,
                     len(model.stages(64, 8)), time.perf_counter() - t0))
        print(f"  {name}: {rows[-1][1]:.2f} dB ({rows[-1][5]:.0f} s)", flush=True)
    print(f"\n{args.videos} test videos of 64 frames, 8 given, K=8, 4 new frames per stage, DDIM {args.sampling_steps} "
          f"steps, EMA weights")
    print(f"{'scheme':<22} {'PSNR dB':>8} {'late PSNR dB':>13} {'late colour err':>16} {'stages':>7} {'seconds':>8}")
    for name, all_psnr, late_psnr, colour, stages, seconds in rows:
        print(f"{name:<22} {all_psnr:>8.2f} {late_psnr:>13.2f} {colour:>16.2f} {stages:>7} {seconds:>8.1f}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
