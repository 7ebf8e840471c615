"""Worker for tests/test_fvd_ddp.py: FVD (and the other sum/count metrics) under 2-process DDP.

Run as ``python tests/_fvd_ddp_worker.py OUT_JSON WORKDIR`` with the repo root on
PYTHONPATH. The parent computes every metric in one process on the full data; two
gloo ranks (spawned with torch.multiprocessing) each see an uneven shard and let
torchmetrics all-reduce in ``compute()``. Both results are written to OUT_JSON.

The ranks also run FVD from a weights file with the real-feature cache, twice: the first
pass computes every real clip and rank 0 saves the features gathered from both ranks; the
second reads all of them back.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from video_diffusion_lab.metrics import CRPS, FrameQuality, FrechetVideoDistance, RealFeatureCache

WORLD_SIZE = 2
NUM_FEATURES = 6


class DeterministicExtractor(nn.Module):
    """Fixed, seeded, nonlinear video -> feature map (stands in for the I3D)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("proj", torch.randn(2 * 3 * 4, NUM_FEATURES, generator=g, dtype=torch.float64))

    def forward(self, videos: Tensor) -> Tensor:
        x = videos.to(torch.float64)
        pooled = torch.cat([x.mean(dim=(3, 4)), x.std(dim=(3, 4))], dim=2).flatten(1)  # (B, T*2C)
        return torch.tanh(pooled @ self.proj) * 2


class ScriptedDetector(nn.Module):
    """The StyleGAN-V detector's call signature, saved as TorchScript: a weights file the cache can key on."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, NUM_FEATURES)

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        v = x.float() / 127.5 - 1.0
        return self.proj(torch.cat([v.mean(dim=(2, 3, 4)), v.std(dim=(2, 3, 4))], dim=1))


def save_detector(path: str) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(ScriptedDetector().eval()).save(path)


def make_data() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(11, 4, 3, 8, 8, generator=g) * 2 - 1
    fake = (torch.rand(9, 4, 3, 8, 8, generator=g) * 2 - 1) * 0.8 + 0.1
    samples = (real[None, :, :, :, :, :] + 0.4 * torch.randn(3, *real.shape, generator=g)).clamp(-1, 1)
    latent = torch.zeros(11, 4, dtype=torch.bool)
    latent[:, 2:] = True
    latent[3, 1] = True
    return {"real": real, "fake": fake, "samples": samples, "latent": latent}


def build_metrics() -> dict[str, object]:
    return {
        "fvd": FrechetVideoDistance(feature_extractor=DeterministicExtractor(), num_features=NUM_FEATURES),
        "crps": CRPS(),
        "fq": FrameQuality(),
    }


def run(metrics: dict[str, object], data: dict[str, Tensor], real_idx: list[int], fake_idx: list[int]) -> dict:
    fvd, crps, fq = metrics["fvd"], metrics["crps"], metrics["fq"]
    # Several small batches per rank, like a validation loop.
    for chunk in torch.tensor(real_idx, dtype=torch.long).split(2):
        fvd.update(data["real"][chunk], real=True)
        crps.update(data["samples"][:, chunk], data["real"][chunk], data["latent"][chunk])
        fq.update(data["samples"][:, chunk], data["real"][chunk], data["latent"][chunk])
    for chunk in torch.tensor(fake_idx, dtype=torch.long).split(3):
        fvd.update(data["fake"][chunk], real=False)
    out = {"fvd": float(fvd.compute()), "crps": float(crps.compute())}
    out.update({f"fq_{k}": float(v) for k, v in fq.compute().items()})
    out["local_real_n"] = float(fvd.real_n)  # compute() syncs a copy; the local state stays per-rank
    return out


def run_cached(work_dir: str, data: dict[str, Tensor], real_idx: list[int], fake_idx: list[int]) -> dict:
    """FVD from the weights file with the feature cache in ``work_dir/cache``."""
    fvd = FrechetVideoDistance(
        weights_path=os.path.join(work_dir, "i3d_torchscript.pt"),
        num_features=NUM_FEATURES,
        cache_dir=os.path.join(work_dir, "cache"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a stand-in file, not the published one
        for chunk in torch.tensor(real_idx, dtype=torch.long).split(2):
            fvd.update(data["real"][chunk], real=True)
        for chunk in torch.tensor(fake_idx, dtype=torch.long).split(3):
            fvd.update(data["fake"][chunk], real=False)
        value = float(fvd.compute())
    return {"fvd": value, "from_cache": fvd.counts.real_from_cache, "real": fvd.counts.real}


def cache_entries(work_dir: str) -> int:
    files = list(Path(work_dir, "cache").glob("*.pt"))
    assert len(files) == 1, files
    stored = torch.load(files[0], weights_only=True)
    return len(RealFeatureCache(stored["identity"], files[0].parent))


def shard(n: int, rank: int) -> list[int]:
    # Deliberately uneven: rank 0 gets more items than rank 1.
    first = (n + 3) // 2 + 1
    return list(range(first)) if rank == 0 else list(range(first, n))


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        data = make_data()
        real_idx, fake_idx = shard(len(data["real"]), rank), shard(len(data["fake"]), rank)
        result = run(build_metrics(), data, real_idx, fake_idx)
        result["cached_first"] = run_cached(out_dir, data, real_idx, fake_idx)
        dist.barrier()  # rank 0 has written the cache file
        result["cache_entries"] = cache_entries(out_dir)
        result["cached_second"] = run_cached(out_dir, data, real_idx, fake_idx)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def main() -> None:
    out_json, work_dir = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    data = make_data()
    single = run(build_metrics(), data, list(range(len(data["real"]))), list(range(len(data["fake"]))))
    save_detector(os.path.join(work_dir, "i3d_torchscript.pt"))
    single_dir = os.path.join(work_dir, "single")
    os.makedirs(single_dir)
    save_detector(os.path.join(single_dir, "i3d_torchscript.pt"))
    single["cached"] = run_cached(single_dir, data, list(range(len(data["real"]))), list(range(len(data["fake"]))))
    mp.spawn(worker, args=(os.path.join(work_dir, "pg_init"), work_dir), nprocs=WORLD_SIZE, join=True)
    ranks = []
    for r in range(WORLD_SIZE):
        with open(os.path.join(work_dir, f"rank{r}.json")) as f:
            ranks.append(json.load(f))
    with open(out_json, "w") as f:
        json.dump({"single": single, "ranks": ranks}, f)


if __name__ == "__main__":
    main()
