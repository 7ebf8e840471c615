"""Replacement versus reconstruction guidance for VDM on the embedded moving-shapes set (Ho et al. 2022, Table 6 style).

    .venv/bin/python benchmarks/vdm_guidance_table.py                       # train a small model here, then compare
    .venv/bin/python benchmarks/vdm_guidance_table.py --ckpt runs/vdm_shapes/checkpoints/last.ckpt   # a trained one

One unconditional VDM (joint image-video batches, v-prediction, cosine log-SNR) is trained briefly on CPU (or loaded
from a checkpoint of experiments/vdm_shapes.yaml), then the same test clips are predicted (``--num-given`` given
frames, the rest generated) with replacement and with reconstruction guidance at several w_r, same seeds, same
sampler. Reported: PSNR / SSIM of the predicted frames (values in [0, 1]) and the copy-last-frame baseline. FVD is
not reported: the clips are 16x16 and 8 frames long (I3D needs at least 10 frames of 224x224 after resizing and its
weights file); the table says so. The model is tiny and briefly trained: the numbers compare the two guidance
methods on one model, they are not the paper's.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.moving_shapes import MovingShapesDataset  # noqa: E402
from lightning_modules.vdm import VDM  # noqa: E402
from lightning_modules.video_diffusion import frame_metrics, latent_frames  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "vdm_guidance_table.txt"


def train(args: argparse.Namespace) -> VDM:
    model = VDM(num_frames=8, image_size=16, channels=3, model_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                attention_resolutions=(8, 4), attention_head_dim=16, dropout=0.0, num_image_frames=4,
                prediction="v", sampler="ddpm", sampling_steps=args.sampling_steps, gamma=0.1, num_given=args.num_given,
                lr=1e-3, ema_decay=0.99)
    data = MovingShapesDataset("train", size=args.steps * args.batch_size, num_frames=8, image_size=16)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    optimizer = model.configure_optimizers()
    model.train()
    start = time.time()
    for step, batch in enumerate(loader):
        loss = model.training_step(batch, step)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.network.parameters(), 1.0)
        optimizer.step()
        model.ema.update_parameters(model.network)
        if step % 100 == 0:
            print(f"step {step:5d}  loss {loss.item():.4f}  ({time.time() - start:.0f}s)", flush=True)
    return model.eval()


def evaluate(model: VDM, args: argparse.Namespace, method: str, weight: float) -> dict[str, float]:
    model.conditioning_method, model.reconstruction_weight = method, weight
    data = MovingShapesDataset("test", size=args.num_clips, num_frames=8, image_size=16)
    batch = torch.utils.data.default_collate([data[i] for i in range(args.num_clips)])
    mask = model.eval_mask(batch)
    metrics, baseline = frame_metrics(""), frame_metrics("")
    with torch.no_grad():
        samples = model.sample(batch["video"], mask, generator=torch.Generator().manual_seed(args.seed))
    truth = latent_frames(batch["video"], mask)
    metrics.update(latent_frames(samples, mask), truth)
    last = batch["video"][:, args.num_given - 1 : args.num_given].expand_as(batch["video"])
    baseline.update(latent_frames(last, mask), truth)
    m, b = metrics.compute(), baseline.compute()
    return {"psnr": m["psnr"].item(), "ssim": m["ssim"].item(), "copy_psnr": b["psnr"].item(), "copy_ssim": b["ssim"].item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None, help="a checkpoint of experiments/vdm_shapes.yaml (skips training)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-clips", type=int, default=16)
    parser.add_argument("--num-given", type=int, default=3)
    parser.add_argument("--sampling-steps", type=int, default=32)
    parser.add_argument("--weights", type=float, nargs="+", default=[2.0, 9.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(args.seed)
    start = time.time()
    if args.ckpt:
        model = VDM.load_from_checkpoint(args.ckpt, map_location="cpu", sampling_steps=args.sampling_steps,
                                         num_given=args.num_given).eval()
        source = f"checkpoint {args.ckpt}"
    else:
        model = train(args)
        source = f"trained here: {args.steps} steps, batch {args.batch_size} (+4 image frames per clip), lr 1e-3"
    n_params = sum(p.numel() for p in model.network.parameters())
    train_s = time.time() - start
    rows = [("replacement", 0.0)] + [("reconstruction", w) for w in args.weights]
    results = []
    for method, weight in rows:
        results.append((method, weight, evaluate(model, args, method, weight)))
        print(method, weight, results[-1][2], flush=True)
    lines = [
        "# VDM guidance on the embedded moving-shapes set: replacement vs reconstruction guidance",
        f"# command: .venv/bin/python benchmarks/vdm_guidance_table.py {' '.join(sys.argv[1:])}".rstrip(),
        f"# model: {n_params:,} parameters (width 16, mult 1-2-2, attention at 8 and 4), EMA weights; {source}",
        f"# task: {args.num_given} given -> {8 - args.num_given} predicted frames, 8x16x16 clips, {args.num_clips} test clips;"
        f" sampler ddpm (gamma 0.1), {args.sampling_steps} steps, seed {args.seed}",
        "# metrics on predicted frames in [0, 1]; FVD: not computed (16x16, 8-frame clips; no I3D weights here)",
        f"# runtime: {train_s:.0f}s training/loading, {time.time() - start - train_s:.0f}s sampling (2 shared CPU cores)",
        "",
        f"{'method':<16}{'w_r':>6}{'PSNR':>9}{'SSIM':>8}",
    ]
    for method, weight, r in results:
        w = "-" if method == "replacement" else f"{weight:g}"
        lines.append(f"{method:<16}{w:>6}{r['psnr']:>9.2f}{r['ssim']:>8.3f}")
    r = results[0][2]
    lines.append(f"{'copy last frame':<16}{'-':>6}{r['copy_psnr']:>9.2f}{r['copy_ssim']:>8.3f}")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
