"""Training-step and sampling throughput of the project's networks against the networks researchers would otherwise
use, at matched parameter count and clip shape, in one run.

Pairs (each peer sized so that its parameter count is within 10% of ours at the same clip (B, T, C, H, W)):

    VDM U-Net (ours)     vs  lucidrains' ``Unet3D`` (video-diffusion-pytorch), the usual open VDM re-implementation,
                             at its default channel multipliers (1, 2, 4, 8) and at VDM's (1, 2, 3, 4)
    VDM U-Net (ours)     vs  diffusers' ``UNet3DConditionModel`` (ModelScope / Zeroscope text-to-video U-Net)
    RaMViD U-Net (ours)  vs  diffusers' ``UNet3DConditionModel``

A training step is forward + MSE loss against a random target + backward + AdamW step of the network alone (the
diffusion math around it is elementwise and negligible). Sampling throughput is clips per second of one inference
forward pass (``no_grad``, eval mode), the cost of one sampler step. Networks are measured round-robin (A B C D A B ...)
so that load from other jobs on a shared machine falls on all of them alike; medians are reported. FLOPs per
training step (forward and backward) are counted with ``torch.utils.flop_counter.FlopCounterMode`` with attention
on SDPA's math backend (the fused CPU kernel is not in the counter's table; the math path's two matmuls are what the
GPU formula counts too). Peak memory: on a CPU each network runs one step in a subprocess of its own and reports its
resident memory's growth over the step (the peak ``VmHWM`` minus the resident memory before the step: activations,
gradients, optimiser state, workspace); on a GPU ``torch.cuda.max_memory_allocated``. On a GPU the table also gives
model FLOP utilisation: counted FLOPs / step time / the device's peak (``--peak-tflops``, default the H100/H200 SXM
dense bf16 figure, 989 TFLOP/s).

For a pair whose ratio is below 1.5, the results name what holds our network back: the operators taking most time in
one profiled training step (``torch.profiler``, self time).

The peers are installed beside the pinned torch without their dependencies (``benchmarks/requirements-peers.txt``):

    pip install --no-deps -r benchmarks/requirements-peers.txt
    OMP_NUM_THREADS=1 python benchmarks/training_throughput.py                       # CPU, fp32, 1 thread
    python benchmarks/training_throughput.py --device cuda --precision bf16         # GPU, bf16 autocast, MFU
    python benchmarks/training_throughput.py --device cuda --precision bf16 --paper-widths --size 64 --batch 8

video-diffusion-pytorch imports torchvision at the top of its module, for its GIF data set only; where torchvision is
not importable (no wheel for a CPU build of this torch on the package index), an empty stand-in module is put in its
place for that import and the network itself is untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# On a small shared CPU more threads than free cores cost more than they give.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from einops import rearrange  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "training_throughput.txt"
PAIRS = (
    ("vdm", "lucidrains_unet3d"),
    ("vdm", "lucidrains_unet3d_vdm_mults"),
    ("vdm", "diffusers_unet3d"),
    ("ramvid", "diffusers_unet3d"),
)


# ---------------------------------------------------------------------------------------------------------- networks
@dataclass
class Contender:
    key: str
    label: str
    setting: str
    build: Callable[[], nn.Module]
    # (network, video (B, T, C, H, W), time (B,)) -> output of the video's shape or its (B, C, T, H, W) transpose
    call: Callable[[nn.Module, Tensor, Tensor], Tensor]


def ours(frames: int, size: int, paper_widths: bool = False) -> list[Contender]:
    from video_diffusion_lab.networks import RaMViDUNet, RaMViDUNetConfig, VDMUNet, VDMUNetConfig

    # The papers' 64x64 structures (attention at the same levels at any size), widths for ~34M parameters, or the
    # papers' widths (VDM BAIR: 128, head dim 64; RaMViD BAIR: 128) with ``paper_widths``.
    vdm = VDMUNetConfig(
        model_channels=128 if paper_widths else 64,
        channel_mult=(1, 2, 3, 4),
        num_res_blocks=3,
        attention_resolutions=(size // 2, size // 4, size // 8),
        attention_head_dim=64 if paper_widths else 32,
        dropout=0.0,
    )
    ramvid = RaMViDUNetConfig(
        model_channels=128 if paper_widths else 48,
        channel_mult=(1, 2, 3, 4),
        num_res_blocks=2,
        attention_resolutions=(size // 4, size // 8),
        num_heads=4,
    )
    return [
        Contender(
            "vdm",
            "VDM U-Net (ours)",
            f"width {vdm.model_channels} (1,2,3,4), 3 res blocks, space+time "
            f"attention at 3 levels, head dim {vdm.attention_head_dim}",
            lambda: VDMUNet(vdm, image_size=size),
            lambda net, x, t: net(x, t),
        ),
        Contender(
            "ramvid",
            "RaMViD U-Net (ours)",
            f"width {ramvid.model_channels} (1,2,3,4), 2 res blocks, 3x3x3 "
            "convs, space-time attention at 2 levels, 4 heads",
            lambda: RaMViDUNet(ramvid, image_size=size),
            lambda net, x, t: net(x, t * 1000),
        ),
    ]


def import_lucidrains() -> type:
    """video_diffusion_pytorch.Unet3D; torchvision (imported at module level for the GIF data set only) stood in for
    by an empty module when it cannot be imported."""
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 - absent or broken, as a CPU torch without a matching torchvision wheel is
        stand_in = types.ModuleType("torchvision")
        transforms, utils = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.utils")

        class Unavailable:  # the GIF data set's transforms; never called by the network
            def __init__(self, *args, **kwargs):
                pass

        for name in ("ToTensor", "Compose", "Resize", "RandomHorizontalFlip", "Lambda", "CenterCrop", "ToPILImage"):
            setattr(transforms, name, Unavailable)
        stand_in.transforms, stand_in.utils = transforms, utils
        saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.transforms", "torchvision.utils")}
        sys.modules.update({"torchvision": stand_in, "torchvision.transforms": transforms, "torchvision.utils": utils})
        try:
            from video_diffusion_pytorch import Unet3D
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
        return Unet3D
    from video_diffusion_pytorch import Unet3D

    return Unet3D


def peers(frames: int, size: int) -> tuple[list[Contender], dict[str, str]]:
    """The peers that import, and for the others the error text."""
    found, missing = [], {}
    try:
        from diffusers import UNet3DConditionModel  # import diffusers first: it probes torchvision's module spec

        width = 56  # block widths (56, 112, 168, 224): 34.3M parameters
        context = torch.zeros(1, 1, 4 * width)  # one token of cross-attention context (the model requires one)

        def diffusers_call(net, x, t):
            b = x.shape[0]
            states = context.to(x).expand(b, -1, -1)
            return net(rearrange(x, "b t c h w -> b c t h w"), t * 1000, encoder_hidden_states=states).sample

        found.append(
            Contender(
                "diffusers_unet3d",
                "diffusers UNet3DConditionModel",
                f"blocks ({width},{2 * width},{3 * width},{4 * width}), 2 layers per block, "
                "cross-attention on 1 token, "
                "4 heads, GroupNorm 8",
                lambda: UNet3DConditionModel(
                    sample_size=size,
                    in_channels=3,
                    out_channels=3,
                    block_out_channels=(width, 2 * width, 3 * width, 4 * width),
                    layers_per_block=2,
                    cross_attention_dim=4 * width,
                    attention_head_dim=4,
                    norm_num_groups=8,
                ),
                diffusers_call,
            )
        )
    except Exception as error:  # noqa: BLE001 - reported in the results
        missing["diffusers_unet3d"] = f"{type(error).__name__}: {error}"
    try:
        unet3d = import_lucidrains()

        def lucidrains_call(net, x, t):
            return net(rearrange(x, "b t c h w -> b c t h w"), t * 1000)

        found.append(
            Contender(
                "lucidrains_unet3d",
                "lucidrains Unet3D",
                "dim 64 (1,2,4,8), its defaults (8 heads of 32, rotary time attention, sparse linear attention)",
                lambda: unet3d(dim=64, dim_mults=(1, 2, 4, 8), channels=3),
                lucidrains_call,
            )
        )
        found.append(
            Contender(
                "lucidrains_unet3d_vdm_mults",
                "lucidrains Unet3D, VDM's multipliers",
                "dim 96 (1,2,3,4), otherwise its defaults",
                lambda: unet3d(dim=96, dim_mults=(1, 2, 3, 4), channels=3),
                lucidrains_call,
            )
        )
    except Exception as error:  # noqa: BLE001
        missing["lucidrains_unet3d"] = f"{type(error).__name__}: {error}"
    return found, missing


# ------------------------------------------------------------------------------------------------------ measuring
class Runner:
    """One network with its optimiser and inputs; ``train_step`` and ``sample_call`` return their seconds."""

    def __init__(self, contender: Contender, args: argparse.Namespace):
        torch.manual_seed(0)
        self.contender, self.device = contender, torch.device(args.device)
        self.network = contender.build().to(self.device)
        if args.channels_last:
            to_channels_last(self.network)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=1e-4)
        self.video = torch.randn(args.batch, args.frames, 3, args.size, args.size, device=self.device)
        self.time = torch.rand(args.batch, device=self.device)
        self.autocast = torch.autocast(self.device.type, torch.bfloat16, enabled=args.precision == "bf16")
        self.target: Tensor | None = None

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> None:
        self.network.train()
        with self.autocast:
            out = self.contender.call(self.network, self.video, self.time)
        if self.target is None:
            self.target = torch.randn(out.shape, device=self.device)
        F.mse_loss(out.float(), self.target).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self) -> float:
        self.sync()
        start = time.perf_counter()
        self.step()
        self.sync()
        return time.perf_counter() - start

    def sample_call(self) -> float:
        self.network.eval()
        self.sync()
        start = time.perf_counter()
        with torch.no_grad(), self.autocast:
            self.contender.call(self.network, self.video, self.time)
        self.sync()
        return time.perf_counter() - start

    def flops(self) -> int:
        """FLOPs of forward + backward of one training step (matmuls, convolutions, attention)."""
        with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
            self.step()
        return counter.get_total_flops()

    def top_ops(self, count: int = 8) -> list[tuple[str, float]]:
        """(operator, share of the step's self time) for the most expensive operators of one training step."""
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            self.step()
            self.sync()
        attr = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)
        total = sum(getattr(e, attr) for e in events)
        return [(e.key, getattr(e, attr) / total) for e in events[:count]]


def to_channels_last(network: nn.Module) -> None:
    """4-D weights (2D convolutions) in channels-last, 5-D ones (3D convolutions) in channels-last-3d."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for p in network.parameters():
            if p.dim() in formats:
                p.data = p.data.contiguous(memory_format=formats[p.dim()])


def peak_memory_in_subprocess(key: str, args: argparse.Namespace) -> float | None:
    """MiB the process's resident memory grows by during a training step of ``key`` (a fresh process of its own)."""
    command = [
        sys.executable,
        __file__,
        "--memory-of",
        key,
        "--frames",
        str(args.frames),
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--precision",
        args.precision,
    ]
    command += ["--channels-last"] * args.channels_last + ["--paper-widths"] * args.paper_widths
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])["peak_MiB"] if result.returncode == 0 and lines else None


def memory_of(key: str, args: argparse.Namespace) -> None:
    contenders = {c.key: c for c in ours(args.frames, args.size, args.paper_widths) + peers(args.frames, args.size)[0]}
    runner = Runner(contenders[key], args)
    reset_peak_rss()
    before = process_memory_mib("VmRSS")
    runner.step()
    print(json.dumps({"peak_MiB": round(process_memory_mib("VmHWM") - before, 1)}))


def process_memory_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (the peak) of this process, from /proc (Linux). VmHWM belongs to the process's
    own address space, unlike ru_maxrss, which a subprocess inherits from its parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Start VmHWM from the current resident memory (Linux >= 4.0); without it the peak since start is kept."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


# ----------------------------------------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> str:
    load_before = os.getloadavg()[0]
    # The peers are sized against our default widths only.
    found, missing = ([], {}) if args.paper_widths else peers(args.frames, args.size)
    runners = [Runner(c, args) for c in ours(args.frames, args.size, args.paper_widths) + found]
    print(f"networks: {[(r.contender.key, round(r.parameters / 1e6, 2)) for r in runners]}", flush=True)

    train: dict[str, list[float]] = {r.contender.key: [] for r in runners}
    sampling: dict[str, list[float]] = {r.contender.key: [] for r in runners}
    for _ in range(args.warmup):
        for r in runners:
            r.train_step()
            r.sample_call()
    for i in range(args.rounds):  # round-robin: every network once per round
        for r in runners:
            train[r.contender.key].append(r.train_step())
        print(f"round {i + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in train.items()), flush=True)
    for _ in range(args.sampling_rounds):
        for r in runners:
            sampling[r.contender.key].append(r.sample_call())

    flops = {r.contender.key: r.flops() for r in runners}
    if args.device == "cuda":
        memory = {}
        for r in runners:
            torch.cuda.reset_peak_memory_stats(r.device)
            r.train_step()
            memory[r.contender.key] = torch.cuda.max_memory_allocated(r.device) / 2**20
    else:
        memory = {r.contender.key: peak_memory_in_subprocess(r.contender.key, args) for r in runners}

    by_key = {r.contender.key: r for r in runners}
    step = {k: statistics.median(v) for k, v in train.items()}
    forward = {k: statistics.median(v) for k, v in sampling.items()}
    lines = [
        f"# {' '.join(['python', 'benchmarks/training_throughput.py', *sys.argv[1:]])}",
        f"# {date.today()}, torch {torch.__version__}, {args.device} ({device_name(args.device)}), "
        f"{torch.get_num_threads()} thread(s), precision {args.precision}, channels_last {args.channels_last}",
        f"# clip (B, T, C, H, W) = ({args.batch}, {args.frames}, 3, {args.size}, {args.size}); "
        f"{args.rounds} rounds round-robin after {args.warmup} warm-up; medians",
        f"# machine load (1-min average) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
        f"{os.cpu_count()} cores: other jobs share the machine, which is why the networks are measured round-robin "
        "on one thread and only ratios from the same run are compared",
        "",
        "| network | setting | params (M) | GFLOP / train step | train step (s) | train steps/s | "
        "achieved GFLOP/s | sampling clips/s (one network call) | peak memory (MiB) |"
        + (" MFU |" if args.device == "cuda" else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if args.device == "cuda" else ""),
    ]
    for key, r in by_key.items():
        mem = memory.get(key)
        row = (
            f"| {r.contender.label} | {r.contender.setting} | {r.parameters / 1e6:.2f} | {flops[key] / 1e9:.1f} | "
            f"{step[key]:.3f} | {1 / step[key]:.3f} | {flops[key] / step[key] / 1e9:.1f} | "
            f"{args.batch / forward[key]:.3f} | {'-' if mem is None else f'{mem:.0f}'} |"
        )
        if args.device == "cuda":
            row += f" {flops[key] / step[key] / (args.peak_tflops * 1e12):.1%} |"
        lines.append(row)
    lines += [
        "",
        "| ours | peer | params ours / peer | train throughput ours / peer | sampling throughput ours / "
        "peer | FLOP per step ours / peer | achieved FLOP/s ours / peer |",
        "|---|---|---|---|---|---|---|",
    ]
    slow_pairs = []
    for our_key, peer_key in PAIRS:
        if peer_key not in by_key:
            continue
        a, b = by_key[our_key], by_key[peer_key]
        ratio = step[peer_key] / step[our_key]
        lines.append(
            f"| {a.contender.label} | {b.contender.label} | {a.parameters / 1e6:.2f}M / {b.parameters / 1e6:.2f}M "
            f"({a.parameters / b.parameters - 1:+.1%}) | **{ratio:.2f}x** | "
            f"{forward[peer_key] / forward[our_key]:.2f}x | "
            f"{flops[our_key] / flops[peer_key]:.2f} | {ratio * flops[our_key] / flops[peer_key]:.2f}x |"
        )
        if ratio < 1.5:
            slow_pairs.append((our_key, peer_key, ratio))
    for key, error in missing.items():
        lines += ["", f"Peer {key} could not be imported: {error}"]
    profiled: set[str] = set()
    for our_key, peer_key, ratio in slow_pairs:
        flop_ratio = flops[our_key] / flops[peer_key]
        lines += [
            "",
            f"Below 1.5x: {by_key[our_key].contender.label} vs {by_key[peer_key].contender.label} "
            f"({ratio:.2f}x). At matched parameters ours counts {flop_ratio:.2f}x the peer's FLOPs per step and "
            f"runs them at {ratio * flop_ratio:.2f}x the peer's FLOP rate. Self time of one profiled training "
            "step, top operators:",
        ]
        for key in (our_key, peer_key):
            if key in profiled:
                lines.append(f"  {by_key[key].contender.label}: as above")
                continue
            profiled.add(key)
            ops = ", ".join(f"{name} {share:.0%}" for name, share in by_key[key].top_ops())
            lines.append(f"  {by_key[key].contender.label}: {ops}")
    return "\n".join(lines) + "\n"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--channels-last", action="store_true", help="every network and input in channels-last")
    parser.add_argument(
        "--paper-widths",
        action="store_true",
        help="our networks at the papers' widths (for MFU on a GPU at --size 64), without peers",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--sampling-rounds", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak, for MFU")
    parser.add_argument("--out", type=Path, default=None, help=f"write the table here too (e.g. {RESULTS})")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        memory_of(args.memory_of, args)
        return
    try:
        text = run(args)
    except Exception as error:  # noqa: BLE001 - any failure: its traceback, then a non-zero exit for the caller
        traceback.print_exc()
        raise SystemExit(1) from error
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
