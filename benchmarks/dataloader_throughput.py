"""Decoded clips per second of the real-data DataModules with 0, 1 and 2 DataLoader workers, on generated fixtures
in the real formats at the papers' sizes, next to the clips per second a training step of the paper configs consumes;
and the same Kinetics videos prepared with ``vdiff-prepare`` and streamed from LitData chunks
(``StreamingVideoDataModule``): clips per second per worker, bytes per clip, preparation time per video, and the
storage choice behind it (uint8 against the prepared frames re-encoded as H.264).

    .venv/bin/python benchmarks/dataloader_throughput.py [--seconds 3] \
        [--out benchmarks/results/dataloader_throughput.md]

Fixtures (written to a temporary folder, ~200 MB, removed afterwards):
- Kinetics: 5 (+1 val) H.264 mp4s of 10 s at 25 fps, 340x256, ~400 kbit/s (panning texture, x264 veryfast
  crf 23, default GOP), read as 16 frames at stride 1, short side resized to 64 and centre-cropped (RaMViD, batch 8);
- BAIR: 2 TFRecord files of 32 trajectories x 30 steps, 64x64 raw frames, 20-frame clips (RaMViD, batch 4);
- CARLA: 3 videos of 1000 frames at 128x128 (.pt) with coords, whole videos (FDM's loader, batch 8) and 20-frame clips.
Streamed: the 5 Kinetics training videos prepared at 64x64 (all 250 frames, uint8), repeated 80 times into a
400-video set so that an epoch outlasts the measurement; 16-frame random windows, batch 8, uint8 clips (the module
converts them to float on the device).
Clips/s is measured after the first batch (worker start-up excluded), sampling with replacement, for ``--seconds``.
The report also states how much two processes really run in parallel on the machine (shared or hyper-threaded
vCPUs make the 2-worker rows say little about scaling).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from litdata import StreamingDataset, optimize  # noqa: E402

from tests.fixtures_real_data import (  # noqa: E402
    textured_frames,
    write_bair_tfrecords,
    write_carla,
    write_mp4,
)
from video_diffusion_lab import prepare  # noqa: E402
from video_diffusion_lab.datamodules.bair import BAIRDataModule  # noqa: E402
from video_diffusion_lab.datamodules.carla import CARLADataModule  # noqa: E402
from video_diffusion_lab.datamodules.kinetics import KineticsDataModule  # noqa: E402
from video_diffusion_lab.datamodules.streaming import StreamingClips  # noqa: E402

# Training demand per GPU, derived, not measured (no GPU here): forward FLOPs of this repository's networks at the
# paper configs counted with torch's FlopCounterMode, x3 for forward + backward, at an ASSUMED sustained 50 TFLOP/s
# on an A100 in fp32/TF32 (about a third of its 156 TFLOP/s peak; the configs use precision 32-true). RaMViD is
# counted on the meta device; FDM's U-Net (which calls .item()) on the CPU for one frame, x20 frames per pass
# (its K^2 temporal-attention term is under-counted by ~0.3%). If a network cannot be built, the FDM row falls back
# to an ASSUMED 1 step/s at batch 8.
ASSUMED_TFLOPS = 50.0
DECODED = "Kinetics-600 16x64x64 (340x256 mp4)"
STREAMED = "Kinetics-600 16x64x64 (streamed chunks)"
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


def vdm_train_flops(num_frames: int = 16, image_frames: int = 8) -> float | None:
    """Forward + backward FLOPs per training clip of VDM's Kinetics-600 network (App. A, 1.17B parameters), counted
    with the joint-training images as extra frames (16 + 8), or None if it cannot be built."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        from video_diffusion_lab.networks.vdm_unet import VDMUNet, VDMUNetConfig

        config = VDMUNetConfig(
            model_channels=256,
            emb_channels=1024,
            channel_mult=(1, 2, 4, 8),
            num_res_blocks=2,
            attention_resolutions=(32, 16, 8),
            attention_head_dim=64,
            frame_conditioning=False,
        )
        with torch.device("meta"):
            network = VDMUNet(config, image_size=64, channels=3)
            z, t = torch.randn(1, num_frames + image_frames, 3, 64, 64), torch.zeros(1)
        with FlopCounterMode(display=False) as counter:
            network(z, t)
        return 3.0 * counter.get_total_flops()
    except Exception as error:  # noqa: BLE001 - the benchmark still reports the loader figures
        print(f"(VDM FLOP count unavailable: {error})")
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


class Repeated:
    """``optimize``'s function: input i -> prepared sample i % n (a longer epoch of the same videos)."""

    def __init__(self, samples: list[dict]):
        self.samples = samples

    def __call__(self, index: int) -> dict:
        return {**self.samples[index % len(self.samples)], "index": index}


def streamed_setup(kinetics: Path, folder: Path) -> tuple[Path, dict[str, float]]:
    """vdiff-prepare the Kinetics fixtures (timed), then a 400-video streamed set of them; the prepared figures."""
    output = folder / "k600_64"
    start = time.perf_counter()
    prepare.main(
        [
            "kinetics",
            str(kinetics),
            str(output),
            "--image-size",
            "64",
            "--num-frames",
            "16",
            "--workers",
            "1",
            "--splits",
            "train",
            "--cache-dir",
            str(folder / "prepare_cache"),
        ]
    )
    seconds = time.perf_counter() - start
    chunks = json.loads((output / "train" / "index.json").read_text())["chunks"]
    videos = sum(chunk["chunk_size"] for chunk in chunks)
    prepared = StreamingDataset(str(output / "train"))
    samples = [prepared[i] for i in range(len(prepared))]
    repeated = folder / "k600_64_x80" / "train"
    optimize(
        Repeated(samples),
        list(range(80 * len(samples))),
        str(repeated),
        chunk_bytes=prepare.CHUNK_BYTES,
        num_workers=1,
        start_method="fork",
        verbose=False,
    )
    figures = {
        "prepare_s_per_video": seconds / videos,
        "bytes_per_video": sum(chunk["chunk_bytes"] for chunk in chunks) / videos,
        "frames_per_video": float(np.mean([s["video"].shape[0] for s in samples])),
    }
    figures.update(h264_against_uint8(samples[0]["video"]))
    return repeated, figures


def h264_against_uint8(video: np.ndarray, start: int = 100, count: int = 16) -> dict[str, float]:
    """A prepared video (T, 3, 64, 64) uint8 stored as H.264 instead (crf 18, a key frame every 16 frames, yuv420p):
    its bytes, the time to decode a 16-frame window (seek to the key frame before it), the mean error in levels; and
    the time to turn the same window of uint8 into a float clip."""
    frames = np.ascontiguousarray(video.transpose(0, 2, 3, 1))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "g": "16"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = buffer.getvalue()

    def decode_window() -> np.ndarray:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            container.seek(int(start / 25 / stream.time_base), stream=stream, backward=True)
            window = []
            for frame in container.decode(stream):
                if round(float(frame.pts * stream.time_base) * 25) >= start:
                    window.append(frame.to_ndarray(format="rgb24"))
                if len(window) == count:
                    return np.stack(window)
        raise ValueError("the stream ended before the window")

    tic = time.perf_counter()
    for _ in range(20):
        window = decode_window()
    h264_ms = (time.perf_counter() - tic) / 20 * 1e3
    tic = time.perf_counter()
    for _ in range(200):
        torch.from_numpy(video[start : start + count]).float().div_(127.5).sub_(1)
    uint8_ms = (time.perf_counter() - tic) / 200 * 1e3
    error = np.abs(window.astype(int) - frames[start : start + count].astype(int)).mean()
    return {
        "h264_bytes_per_video": float(len(data)),
        "h264_ms_per_clip": h264_ms,
        "uint8_ms_per_clip": uint8_ms,
        "h264_error_levels": float(error),
    }


def streamed_clips_per_second(input_dir: Path, batch_size: int, workers: int, seconds: float) -> float:
    from litdata import StreamingDataLoader

    clips_set = StreamingClips(str(input_dir), num_frames=16, frame_stride=1, train=True, seed=0)
    loader = StreamingDataLoader(clips_set, batch_size=batch_size, num_workers=workers)
    batches, clips, start = iter(loader), 0, None
    while start is None or time.perf_counter() - start < seconds:
        try:
            batch = next(batches)
        except StopIteration:  # a new epoch (fresh workers, as in training)
            batches = iter(loader)
            continue
        if start is None:  # worker start-up and the first chunk read are not steady state
            start = time.perf_counter()
            continue
        clips += batch["video"].shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per row")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(1)  # what a DataLoader worker gets; keeps the 0-worker row comparable

    lines = [
        "# Data loader throughput",
        "",
        "```",
        f"{os.path.relpath(sys.executable)} {' '.join(sys.argv)}",
        "```",
        "",
    ]
    parallelism = cpu_parallelism()
    with tempfile.TemporaryDirectory() as tmp:
        roots = write_fixtures(Path(tmp))
        cache = Path(tmp) / "cache"
        setups = [
            (
                DECODED,
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
        streamed, prepared = streamed_setup(roots["kinetics"], Path(tmp))
        for workers in (1, 2):
            rate = streamed_clips_per_second(streamed, 8, workers, args.seconds)
            rows.append((STREAMED, 8, workers, rate))
            print(f"{STREAMED:38s} batch 8  workers {workers}: {rate:8.1f} clips/s", flush=True)

    flops = {
        "RaMViD Kinetics-600": ramvid_train_flops(3, 16),
        "VDM Kinetics-600": vdm_train_flops(),
        "RaMViD BAIR": ramvid_train_flops(2, 20),
        "FDM CARLA": fdm_train_flops(),
    }
    lines += [
        f"CPU: {os.cpu_count()} cores visible, load average {os.getloadavg()[0]:.1f} at the end; torch "
        f"{torch.__version__}; {args.seconds:g} s per row after the first batch; two processes run "
        f"{parallelism:.2f}x one process's work (2.00 = two free cores: below that the 2-worker rows do not show how "
        "workers scale).",
        "",
        "| data set / clip | batch | workers | clips/s | clips/s per worker |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {batch} | {workers} | {rate:.1f} | {rate / max(workers, 1):.1f} |"
        for name, batch, workers, rate in rows
    ]
    per_worker = {name: max(rate / w for n, _, w, rate in rows if n == name and w > 0) for name in (DECODED, STREAMED)}
    per_worker.update(
        {
            match: max(rate / w for n, _, w, rate in rows if n.startswith(match) and w > 0)
            for match in ("BAIR", "CARLA 1000")
        }
    )
    decoded = per_worker[DECODED]
    lines += [
        "",
        f"Streamed against decoded from files, per worker: {per_worker[STREAMED] / decoded:.1f}x (target >= 5x).",
        "",
        "Prepared Kinetics (vdiff-prepare at 64x64, every frame kept, uint8):",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| preparation time per video (1 worker, indexing included) | {prepared['prepare_s_per_video']:.2f} s |",
        f"| bytes per prepared video ({prepared['frames_per_video']:.0f} frames) | "
        f"{prepared['bytes_per_video'] / 1e6:.2f} MB |",
        f"| bytes per 16-frame clip (uint8) | {16 * 64 * 64 * 3 / 1e3:.0f} kB |",
        f"| the same video as H.264 (crf 18, key frame every 16) | {prepared['h264_bytes_per_video'] / 1e6:.2f} MB |",
        f"| a 16-frame window as a float clip: from uint8 / decoded from H.264 | {prepared['uint8_ms_per_clip']:.2f} ms"
        f" / {prepared['h264_ms_per_clip']:.1f} ms |",
        f"| H.264 mean error | {prepared['h264_error_levels']:.1f} levels of 255 |",
        "",
        f"Training demand per GPU: forward + backward FLOPs per clip of the paper networks (torch FlopCounterMode), at "
        f"an ASSUMED sustained {ASSUMED_TFLOPS:g} TFLOP/s per GPU (a derived estimate, not a measurement).",
        "",
        "| setting | TFLOP per clip | clips/s per GPU | workers per GPU, files | workers per GPU, streamed |",
        "|---|---:|---:|---:|---:|",
    ]
    loaders = {
        "RaMViD Kinetics-600": DECODED,
        "VDM Kinetics-600": DECODED,
        "RaMViD BAIR": "BAIR",
        "FDM CARLA": "CARLA 1000",
    }
    for setting, count in flops.items():
        demand = ASSUMED_TFLOPS * 1e12 / count if count else FDM_FALLBACK_CLIPS_PER_S
        files = demand / per_worker[loaders[setting]]
        streamed_workers = f"{demand / per_worker[STREAMED]:.3f}" if "Kinetics" in setting else "-"
        tflop = f"{count / 1e12:.1f}" if count else "n/a (assumed demand)"
        lines.append(f"| {setting} | {tflop} | {demand:.1f} | {files:.2f} | {streamed_workers} |")
    lines += [
        "",
        "Workers per GPU = demand / clips per second per worker; round up and add one so that training "
        "never waits on data (each worker needs its own core; an 8-GPU node needs 8x as many).",
    ]
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
