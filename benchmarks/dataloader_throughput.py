"""Decoded clips per second of the real-data DataModules with 0, 1 and 2 DataLoader workers, on generated fixtures
in the real formats at the papers' sizes, next to the clips per second a training step of the paper configs consumes.

    .venv/bin/python benchmarks/dataloader_throughput.py [--seconds 3] \
        [--out benchmarks/results/dataloader_throughput.txt]

Fixtures (written to a temporary folder, ~200 MB, removed afterwards):
- Kinetics: 5 (+1 val) H.264 mp4s of 10 s at 25 fps, 340x256, ~400 kbit/s (panning texture, x264 veryfast
  crf 23, default GOP), read as 16 frames at stride 1, short side resized to 64 and centre-cropped (RaMViD, batch 8);
- BAIR: 2 TFRecord files of 32 trajectories x 30 steps, 64x64 raw frames, 20-frame clips (RaMViD, batch 4);
- CARLA: 3 videos of 1000 frames at 128x128 (.pt) with coords, whole videos (FDM's loader, batch 8) and 20-frame clips.
Clips/s is measured after the first batch (worker start-up excluded), sampling with replacement, for ``--seconds``.
The report also states how much two processes really run in parallel on the machine (shared or hyper-threaded
vCPUs make the 2-worker rows say little about scaling).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures_real_data import (  # noqa: E402
    textured_frames,
    write_bair_tfrecords,
    write_carla,
    write_mp4,
)
from video_diffusion_lab.datamodules.bair import BAIRDataModule  # noqa: E402
from video_diffusion_lab.datamodules.carla import CARLADataModule  # noqa: E402
from video_diffusion_lab.datamodules.kinetics import KineticsDataModule  # noqa: E402

# Training demand per GPU, derived, not measured (no GPU here): forward FLOPs of this repository's networks at the
# paper configs counted with torch's FlopCounterMode, x3 for forward + backward, at an ASSUMED sustained 50 TFLOP/s
# on an A100 in fp32/TF32 (about a third of its 156 TFLOP/s peak; the configs use precision 32-true). RaMViD is
# counted on the meta device; FDM's U-Net (which calls .item()) on the CPU for one frame, x20 frames per pass
# (its K^2 temporal-attention term is under-counted by ~0.3%). If a network cannot be built, the FDM row falls back
# to an ASSUMED 1 step/s at batch 8.
ASSUMED_TFLOPS = 50.0
FDM_FALLBACK_CLIPS_PER_S = 8.0


def ramvid_train_flops(num_res_blocks: int, num_frames: int) -> float | None:
    """Forward + backward FLOPs per 64x64 training clip of the RaMViD paper network, or None if it cannot be built."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        from video_diffusion_lab.networks.ramvid_unet import RaMViDUNet, RaMViDUNetConfig

        with torch.device("meta"):
            network = RaMViDUNet(RaMViDUNetConfig(num_res_blocks=num_res_blocks), image_size=64, channels=3)
            z, t = torch.randn(1, num_frames, 3, 64, 64), torch.zeros(1)
        with FlopCounterMode(display=False) as counter:
            network(z, t)
        return 3.0 * counter.get_total_flops()
    except Exception as error:  # noqa: BLE001 - the benchmark still reports the loader figures
        print(f"(RaMViD FLOP count unavailable: {error})")
        return None


def _burn(n: int) -> float:
    start, total = time.perf_counter(), 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - start


def cpu_parallelism() -> float:
    """How many times one process's pure-Python work two processes get done in the same time (2.0 = two free
    cores)."""
    import multiprocessing

    single = _burn(3_000_000)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        start = time.perf_counter()
        pool.map(_burn, [3_000_000] * 2)
        both = time.perf_counter() - start
    return 2 * single / both


def fdm_train_flops(frames_per_pass: int = 20) -> float | None:
    """Forward + backward FLOPs of FDM's CARLA network (128x128, K=20) per training video, or None."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        from video_diffusion_lab.networks.fdm_unet import FDMUNet, FDMUNetConfig

        network = FDMUNet(FDMUNetConfig(), image_size=128, channels=3, max_frames=frames_per_pass)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            network(torch.randn(1, 1, 3, 128, 128), torch.zeros(1))
        return 3.0 * counter.get_total_flops() * frames_per_pass
    except Exception as error:  # noqa: BLE001 - the benchmark still reports the loader figures
        print(f"(FDM FLOP count unavailable: {error})")
        return None


def write_fixtures(folder: Path) -> dict[str, Path]:
    start = time.perf_counter()
    kinetics = folder / "kinetics"
    for i in range(6):
        frames = textured_frames(250, 256, 340, seed=i)
        split = "train" if i < 5 else "val"
        write_mp4(kinetics / split / f"class{i % 2}" / f"vid{i:08d}_000000_000010.mp4", frames, 25, 23, "veryfast")
    bair = folder / "bair"
    write_bair_tfrecords(bair, {"train": 64, "test": 4}, per_file=32)
    carla = write_carla(folder / "carla", num_train=3, num_test=1, num_frames=1000, size=128)
    print(f"fixtures written in {time.perf_counter() - start:.1f} s")
    return {"kinetics": kinetics, "bair": bair, "carla": carla}


def clips_per_second(dataset: torch.utils.data.Dataset, batch_size: int, workers: int, seconds: float) -> float:
    sampler = RandomSampler(dataset, replacement=True, num_samples=1_000_000)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, prefetch_factor=2 if workers else None
    )
    batches = iter(loader)
    next(batches)  # worker start-up and the first decode are not steady state
    start, clips = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        clips += next(batches)["video"].shape[0]
    rate = clips / (time.perf_counter() - start)
    del batches
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per row")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # what a DataLoader worker gets; keeps the 0-worker row comparable

    lines = [f"$ {os.path.relpath(sys.executable)} {' '.join(sys.argv)}", ""]
    parallelism = cpu_parallelism()
    with tempfile.TemporaryDirectory() as tmp:
        roots = write_fixtures(Path(tmp))
        cache = Path(tmp) / "cache"
        setups = [
            (
                "Kinetics-600 16x64x64 (340x256 mp4)",
                8,
                KineticsDataModule(str(roots["kinetics"]), num_frames=16, image_size=64, cache_dir=str(cache / "k")),
            ),
            (
                "BAIR 20x64x64 (TFRecord)",
                4,
                BAIRDataModule(
                    str(roots["bair"]), num_frames=20, image_size=64, val_size=4, cache_dir=str(cache / "b")
                ),
            ),
            (
                "CARLA 1000x128x128 (whole video)",
                8,
                CARLADataModule(str(roots["carla"]), num_frames=None, cache_dir=str(cache / "c")),
            ),
            ("CARLA 20x128x128", 8, CARLADataModule(str(roots["carla"]), num_frames=20, cache_dir=str(cache / "c"))),
        ]
        rows = []
        for name, batch_size, datamodule in setups:
            datamodule.setup("fit")
            dataset = datamodule.datasets["train"]
            for workers in (0, 1, 2):
                rate = clips_per_second(dataset, batch_size, workers, args.seconds)
                rows.append((name, batch_size, workers, rate))
                print(f"{name:38s} batch {batch_size}  workers {workers}: {rate:8.1f} clips/s", flush=True)

    flops_bair, flops_k600, flops_fdm = ramvid_train_flops(2, 20), ramvid_train_flops(3, 16), fdm_train_flops()
    demand = {
        "Kinetics-600": (ASSUMED_TFLOPS * 1e12 / flops_k600) if flops_k600 else None,
        "BAIR": (ASSUMED_TFLOPS * 1e12 / flops_bair) if flops_bair else None,
        "CARLA": (ASSUMED_TFLOPS * 1e12 / flops_fdm) if flops_fdm else FDM_FALLBACK_CLIPS_PER_S,
    }
    lines += [
        f"CPU: {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f} at the end; "
        f"torch {torch.__version__}; "
        f"{args.seconds:g} s per row after the first batch; two processes run {parallelism:.2f}x one process's "
        "work (2.00 = two free cores), so the 2-worker rows here do not show how workers scale",
        "",
        f"{'data set / clip':38s} {'batch':>5s} {'workers':>7s} {'clips/s':>9s} {'per worker':>10s}",
    ]
    for name, batch_size, workers, rate in rows:
        lines.append(f"{name:38s} {batch_size:5d} {workers:7d} {rate:9.1f} {rate / max(workers, 1):10.1f}")
    lines += ["", "Training demand per GPU (clips/s one training step consumes x steps/s):"]
    notes = {
        "Kinetics-600": ("RaMViD K600 (3 res blocks, 16 frames)", flops_k600),
        "BAIR": ("RaMViD BAIR (2 res blocks, 20 frames)", flops_bair),
        "CARLA": ("FDM CARLA (K=20 frames of each whole video)", flops_fdm),
    }
    for key, (label, flops) in notes.items():
        if flops is None:
            lines.append(f"  {label}: FLOP count unavailable; ASSUMED {demand[key]:.1f} clips/s per GPU")
            continue
        lines.append(
            f"  {label}: {flops / 1e12:.1f} TFLOP per training clip (fwd+bwd) -> {demand[key]:.1f} clips/s per A100 "
            f"at an assumed {ASSUMED_TFLOPS:g} TFLOP/s (derived estimate)"
        )
    lines += [
        "",
        "Workers needed per GPU (demand / best clips/s per worker measured here; each worker needs a free "
        "core, and an 8-GPU node needs 8x as many):",
    ]
    for key, match in (("Kinetics-600", "Kinetics"), ("BAIR", "BAIR"), ("CARLA", "CARLA 1000")):
        per_worker = max(rate / max(w, 1) for n, _, w, rate in rows if n.startswith(match) and w > 0)
        if demand[key]:
            lines.append(f"  {key}: {demand[key]:.1f} / {per_worker:.1f} -> {demand[key] / per_worker:.2f} workers")
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
