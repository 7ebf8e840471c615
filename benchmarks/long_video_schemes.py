"""Long-video sampling on the maze world: FDM's schemes side by side (and the other methods' own rollouts when their
maze runs are given), scored on memory with the world's ground truth.

Every run completes the same held-out 300-frame maze videos from their first frames (FDM: ``task.num_given`` of its
config, 36) with the same per-clip noise (``NoiseSource``, as ``vdiff test``). FDM runs once per scheme (autoreg,
long_range, hierarchy_2, hierarchy_3 and the adaptive variants); RaMViD, VDM and RVD run the rollout of their config.
Each runs with two samplers: the paper's (the run config's sampler, FDM: ancestral DDPM with gamma = 1) and
DPM-Solver++(2M) with at most 1/20 of its network calls per pass. Per row (``metrics.revisit``):
- colour error (0..255) of walls that come back into view, for walls seen only in the given frames ("given") and
  for every revisit, beyond K frames (K = FDM's frames per pass, what one pass cannot hold) and by lag;
- PSNR and CRPS over the last ``--late`` frames; network calls and seconds per video;
- copy-last-frame (the last given frame, frozen) as the reference of a model that remembers nothing.
Intervals: 95% bootstrap over videos (scipy.stats.bootstrap, percentile, 2000 resamples; ratio of sums for the
colour errors). The table goes to ``--out`` (long_video_schemes.md), every number to the FDM run's
``benchmark/long_video_schemes.json``, the pictures to ``--pictures`` (for the docs): each scheme's stages, a strip of
revisit frames true against each scheme, the error by lag. The pictures and both tables also go to a W&B run
(``--wandb``: offline by default, in the FDM run's ``benchmark/wandb``; upload it later with ``wandb sync``).

    .venv/bin/python benchmarks/long_video_schemes.py --run fdm=runs/fdm_maze [--run ramvid=runs/ramvid_maze ...]
        [--videos 32] [--samples 2] [--samplers paper dpmpp] [--out benchmarks/results] [--pictures docs/images]
        [--wandb offline|online|disabled]

The runs are trained beforehand (``vdiff fit --config experiments/fdm_maze.yaml``); nothing is trained here.
Every finished row is kept in ``--cache`` (default: the FDM run's ``benchmark/rows``), keyed by the checkpoint and
every setting that changes it: an interrupted benchmark goes on where it stopped, and processes given different
``--schemes`` / ``--run`` can share the work (a last call with everything assembles the table from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import bootstrap
from torch.utils.data import default_collate
from torchmetrics.utilities import dim_zero_cat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, markdown_table, trained_steps, training_minutes  # noqa: E402
from video_diffusion_lab.api import Run, load_run  # noqa: E402
from video_diffusion_lab.diffusion import task_mask  # noqa: E402
from video_diffusion_lab.diffusion.noise import NoiseSource  # noqa: E402
from video_diffusion_lab.diffusion.samplers import network_calls  # noqa: E402
from video_diffusion_lab.diffusion.schemes import SCHEMES, Stage, scheme_image  # noqa: E402
from video_diffusion_lab.metrics.baselines import copy_last_observed  # noqa: E402
from video_diffusion_lab.metrics.revisit import GROUPS, LateFrameQuality, RevisitColourError, signed_range  # noqa: E402
from video_diffusion_lab.metrics.sampling_cost import SamplingCost  # noqa: E402

DPM_FRACTION = 20  # DPM-Solver++ gets at most 1/20 of the paper sampler's network calls per pass
DPM_SAMPLER = "dpmpp_2m"


@dataclass
class Row:
    """One method x scheme x sampler: its metrics, cost and the samples of the first video (for the pictures)."""

    method: str
    scheme: str
    sampler: str
    revisit: RevisitColourError
    late: LateFrameQuality
    calls_per_video: float = 0.0
    paper_calls_per_video: float = 0.0  # what the same passes cost with the paper's sampler
    seconds_per_video: float = 0.0
    first_video: torch.Tensor | None = None
    observed_per_stage: list[tuple[int, ...]] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.method} {self.scheme}" if self.scheme else self.method


# ------------------------------------------------------------------------------------------------------------- cache
def row_key(run: Run, row: Row, args: argparse.Namespace) -> str:
    """Everything a row's numbers depend on: the checkpoint (path and training step), the sampling settings and the
    benchmark's settings."""
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    return json.dumps(
        {
            "checkpoint": str(Path(run.checkpoint).resolve()),
            "global_step": state["global_step"],
            "sampling": str(run.model.sampling),
            "rollout": str(run.model.rollout_config),
            "row": [row.method, row.scheme, row.sampler],
            **{name: getattr(args, name) for name in ("videos", "samples", "seed", "late", "beyond", "batch")},
        },
        sort_keys=True,
    )


def save_row(row: Row, key: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    states = {
        f"{prefix}.{name}": dim_zero_cat(value)
        for prefix, metric in (("revisit", row.revisit), ("late", row.late))
        for name, value in metric.metric_state.items()
    }
    torch.save(
        {
            "key": key,
            "states": states,
            "costs": [row.calls_per_video, row.paper_calls_per_video, row.seconds_per_video],
            "first_video": row.first_video,
            "observed_per_stage": [list(frames) for frames in row.observed_per_stage],
        },
        path,
    )


def load_row(row: Row, key: str, path: Path) -> bool:
    """Fill ``row`` from the cache file when it was made with the same ``key``."""
    if not path.exists():
        return False
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved["key"] != key:
        return False
    for prefix, metric in (("revisit", row.revisit), ("late", row.late)):
        for name in metric.metric_state:
            setattr(metric, name, [saved["states"][f"{prefix}.{name}"]])
        metric._update_count = 1  # noqa: SLF001 - torchmetrics warns on compute() before any update
    row.calls_per_video, row.paper_calls_per_video, row.seconds_per_video = saved["costs"]
    row.first_video = saved["first_video"]
    row.observed_per_stage = [tuple(frames) for frames in saved["observed_per_stage"]]
    return True


# ---------------------------------------------------------------------------------------------------------- sampling
def test_videos(run: Run, count: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The first ``count`` test videos of the run's maze world, in batches, as the data module collates them."""
    dataset = run.datamodule.dataset("test")
    if len(dataset) < count:
        raise ValueError(f"--videos {count}: the run's test split has {len(dataset)} videos")
    return [
        default_collate([dataset[i] for i in range(start, min(start + batch_size, count))])
        for start in range(0, count, batch_size)
    ]


def calls_per_pass(run: Run) -> int:
    """Denoiser calls of one sampling pass with the run's sampling settings."""
    sampling, schedule = run.model.sampling, run.model.schedule
    steps = sampling.steps or schedule.default_sampling_steps
    return network_calls(sampling.sampler, steps, schedule=schedule, grid=sampling.grid, **sampling.options())


def paper_and_dpm_settings(run: Run) -> dict[str, dict[str, Any]]:
    """Sampling overrides per sampler: the config's (the paper's) and DPM-Solver++ at <= 1/20 of its calls."""
    dpm_steps = max(1, calls_per_pass(run) // DPM_FRACTION)
    return {
        "paper": {},
        "dpmpp": {"model.init_args.sampling.sampler": DPM_SAMPLER, "model.init_args.sampling.steps": dpm_steps},
    }


def sample_row(
    run: Run,
    batches: list[dict[str, torch.Tensor]],
    row: Row,
    num_samples: int,
    batch_size: int,
    seed: int,
) -> None:
    """Sample every video ``num_samples`` times with the run's model and settings, scoring into ``row``."""
    model = run.model
    cost = SamplingCost([model.network, model.ema.module])
    num_given = model.task.num_given
    sampler = model.video_sampler()
    for number, batch in enumerate(batches):
        batch = model.eval_batch(batch)
        video = signed_range(batch["video"])
        mask = task_mask("prediction", video.shape[0], video.shape[1], num_given, batch["frame_indices"])
        noise = NoiseSource.for_clips(seed, batch["index"].long(), num_samples)
        cond = model.conditioning(batch)
        with torch.no_grad(), cost.measure(num_clips=video.shape[0] * num_samples):
            samples = sampler.sample_many(video, mask, num_samples, noise, batch_size=batch_size, **cond)
        row.revisit.update(samples, batch["video"], batch["wall_map"], mask.latent)
        row.late.update(samples, video, mask.latent)
        if number == 0:
            row.first_video = samples[0, 0]
        print(f"  {row.name} [{row.sampler}]: {(number + 1) * video.shape[0]} videos", flush=True)
    cost.remove()
    row.calls_per_video = cost.evaluations / cost.clips
    row.seconds_per_video = cost.seconds / cost.clips
    if model.video_length > model.frames_per_pass:
        row.stages = sampler.stages(model.video_length, num_given)
        if any(stage.adaptive for stage in row.stages):  # the frames chosen for the first video, for the diagram
            first = signed_range(batches[0]["video"][:1])
            with torch.no_grad():
                sampler.sample_long(
                    first,
                    num_given,
                    generator=NoiseSource.for_clips(seed, batches[0]["index"][:1].long()),
                    callback=lambda _, __, observed: row.observed_per_stage.append(observed[0]),
                )


def copy_last_frame_row(
    batches: list[dict[str, torch.Tensor]], num_given: int, revisit: RevisitColourError, late: int
) -> Row:
    """The last given frame, frozen: what a model that remembers nothing of the past would show (one "sample": its
    CRPS is the mean absolute error)."""
    row = Row("copy last frame", "", "-", revisit, LateFrameQuality(late, crps_estimator="ensemble"))
    for batch in batches:
        video = signed_range(batch["video"])
        mask = task_mask("prediction", video.shape[0], video.shape[1], num_given, batch["frame_indices"])
        frozen = copy_last_observed(video, mask)[None]
        row.revisit.update(frozen, batch["video"], batch["wall_map"], mask.latent)
        row.late.update(frozen, video, mask.latent)
        if row.first_video is None:
            row.first_video = frozen[0, 0]
    return row


# ---------------------------------------------------------------------------------------------------------- intervals
def interval(values: np.ndarray, weights: np.ndarray | None = None, seed: int = 0) -> tuple[float, float, float]:
    """The mean over videos (a ratio of sums when ``weights`` are given) and its 95% bootstrap interval."""
    if weights is None:
        keep = np.isfinite(values)
        data, statistic = (values[keep],), lambda v, axis=-1: v.mean(axis=axis)
    else:
        keep = weights > 0
        data = (values[keep], weights[keep])
        statistic = lambda s, w, axis=-1: s.sum(axis=axis) / w.sum(axis=axis)  # noqa: E731
    if keep.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    estimate = float(statistic(*data))
    if keep.sum() < 2:
        return estimate, float("nan"), float("nan")
    result = bootstrap(
        data,
        statistic,
        paired=weights is not None,
        vectorized=True,
        n_resamples=2000,
        confidence_level=0.95,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarise(row: Row) -> dict[str, Any]:
    sums, pixels = (x.numpy() for x in row.revisit.per_video())
    out: dict[str, Any] = {
        "calls_per_video": row.calls_per_video,
        "paper_calls_per_video": row.paper_calls_per_video,
        "seconds_per_video": row.seconds_per_video,
    }
    for g, group in enumerate(GROUPS):
        for c, column in enumerate(row.revisit.columns):
            out[f"{group}_{column}"] = interval(sums[:, g, c], pixels[:, g, c])
    for name, values in row.late.per_video().items():
        out[name] = interval(values.numpy())
    return out


def with_interval(value: tuple[float, float, float]) -> str:
    estimate, low, high = value
    return f"{estimate:.3g} [{low:.3g}, {high:.3g}]" if np.isfinite(estimate) else "-"


# ----------------------------------------------------------------------------------------------------------- pictures
def plot_stages(rows: list[Row], video_length: int, num_given: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schemes = [r for r in rows if r.stages]
    fig, axes = plt.subplots(len(schemes), 1, figsize=(10, 2.2 * len(schemes)), squeeze=False)
    for ax, row in zip(axes[:, 0], schemes, strict=True):
        observed = row.observed_per_stage or None
        ax.imshow(
            scheme_image(row.stages, video_length, num_given, observed, cell=4), aspect="auto", interpolation="none"
        )
        ax.set_title(f"{row.name}: {len(row.stages)} stages (grey given, blue observed, red generated)", fontsize=9)
        ax.set_ylabel("stage")
        ax.set_yticks([])
        width = ax.get_xlim()[1]
        ax.set_xticks(np.linspace(0, width, 7), [str(int(round(f))) for f in np.linspace(0, video_length, 7)])
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_revisit_strip(
    rows: list[Row], truth: dict[str, torch.Tensor], num_given: int, beyond: int, path: Path
) -> None:
    """Frames of the first test video where walls seen only in the given frames come back after more than
    ``beyond`` frames: the truth, then each row's first sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from video_diffusion_lab.metrics.revisit import revisit_lags, wall_pixels

    wall_map = truth["wall_map"][:1]
    given = torch.arange(wall_map.shape[1])[None] < num_given
    visible = wall_pixels(wall_map, rows[0].revisit.num_walls) >= rows[0].revisit.min_pixels
    lag, given_only = revisit_lags(visible, given)
    remembered = (given_only & (lag > beyond)).sum(-1)[0]  # walls per frame that test memory of the given frames
    candidates = torch.nonzero(remembered).flatten().tolist() or list(range(num_given, wall_map.shape[1]))
    frames = [candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, min(8, len(candidates)))]
    lines = [("truth", signed_range(truth["video"][0]))] + [(r.name + f" [{r.sampler}]", r.first_video) for r in rows]
    width = 2.6 + 1.2 * len(frames)  # room on the left for the row names
    fig, axes = plt.subplots(len(lines), len(frames), figsize=(width, 1.25 * len(lines)), squeeze=False)
    for r, (name, video) in enumerate(lines):
        for c, frame in enumerate(frames):
            ax = axes[r, c]
            ax.imshow(((video[frame].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={frame}", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.subplots_adjust(left=2.4 / width, right=0.98, top=0.93, bottom=0.02, wspace=0.05, hspace=0.1)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_error_by_lag(summaries: dict[str, dict[str, Any]], columns: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [c for c in columns if not c.startswith("beyond")]
    # One colour per method / scheme, one line style per sampler (the paper's solid, DPM-Solver++ dashed).
    schemes = sorted({name.rsplit(" [", 1)[0] for name in summaries})
    colours = dict(zip(schemes, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, group in zip(axes, GROUPS, strict=True):
        for number, (name, summary) in enumerate(summaries.items()):
            values = np.array([summary[f"{group}_{b}"] for b in bins])  # (bins, 3): estimate, low, high
            scheme = name.rsplit(" [", 1)[0]
            ax.errorbar(
                np.arange(len(bins)) + 0.03 * (number - len(summaries) / 2),  # apart, so intervals stay readable
                values[:, 0],
                yerr=np.abs(values[:, 1:].T - values[:, 0]),
                label=name,
                color="black" if scheme == "copy last frame" else colours[scheme],
                linestyle="--" if "[dpmpp]" in name else "-",
                marker="o",
                markersize=3,
                capsize=2,
            )
        ax.set_xticks(np.arange(len(bins)), bins)
        ax.set_xlabel("lag (frames since the wall was last in view)")
        ax.set_title("walls seen only in the given frames" if group == "given" else "every revisited wall")
    axes[0].set_ylabel("colour error (0..255), 95% bootstrap interval")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------- main
def log_to_wandb(
    args: argparse.Namespace, folder: Path, tables: dict[str, tuple[list[str], list[list[Any]]]], how: list[str]
) -> None:
    """The pictures and the tables (name: (header, rows)) as one W&B run (offline: in ``folder / "wandb"``, for
    ``wandb sync``)."""
    import wandb

    run = wandb.init(
        project="video-diffusion",
        name="long_video_schemes",
        job_type="benchmark",
        mode=args.wandb,
        dir=folder,
        config={**{k: str(v) for k, v in vars(args).items()}, "made_by": how},
    )
    run.log(
        {
            **{
                picture: wandb.Image(str(args.pictures / f"long_video_schemes_{picture}.png"))
                for picture in ("stages", "revisits", "lag")
            },
            **{name: wandb.Table(columns=head, data=rows) for name, (head, rows) in tables.items()},
        }
    )
    run.finish()
    print(f"W&B ({args.wandb}): {run.dir}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_FOLDER; one fdm run at least")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--samples", type=int, default=2, help="samples per video (CRPS needs 2)")
    parser.add_argument("--batch", type=int, default=8, help="videos sampled side by side")
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--samplers", nargs="+", default=["paper", "dpmpp"], choices=["paper", "dpmpp"])
    parser.add_argument("--late", type=int, default=100, help="PSNR and CRPS over the last LATE frames")
    parser.add_argument("--beyond", type=int, default=None, help="K of 'beyond K'; default FDM's frames per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder of the table")
    parser.add_argument("--cache", type=Path, default=None, help="folder of finished rows (default: FDM run's)")
    parser.add_argument("--pictures", type=Path, default=REPO / "docs" / "images", help="folder of the PNGs")
    parser.add_argument("--wandb", choices=["offline", "online", "disabled"], default="offline", help="W&B mode")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    runs = dict(spec.split("=", 1) for spec in args.run)
    if "fdm" not in runs:
        raise SystemExit("--run fdm=FOLDER is required (the schemes are FDM's)")
    for folder in runs.values():
        if trained_steps(Path(folder)) == 0:
            raise SystemExit(f"{folder}: no checkpoints/last.ckpt; train it first (vdiff fit --config ...)")
    test_size = {"data.init_args.test_size": args.videos}
    fdm = load_run(runs["fdm"], **test_size)
    num_given = fdm.model.task.num_given
    beyond = args.beyond or fdm.model.frames_per_pass
    num_walls = fdm.datamodule.dataset("test").num_walls
    batches = test_videos(fdm, args.videos, args.batch)
    cache = args.cache or Path(runs["fdm"]) / "benchmark" / "rows"
    video_length = batches[0]["video"].shape[1]

    def new_metrics() -> tuple[RevisitColourError, LateFrameQuality]:
        estimator = "fair" if args.samples > 1 else "ensemble"
        return RevisitColourError(num_walls, beyond), LateFrameQuality(args.late, crps_estimator=estimator)

    bases = {method: load_run(folder, **test_size) for method, folder in runs.items()}
    for method, base in bases.items():  # before any sampling: every run completes the same videos
        if not torch.equal(test_videos(base, 1, 1)[0]["video"], batches[0]["video"][:1]):
            raise SystemExit(f"{runs[method]}: its test videos differ from {runs['fdm']}'s (data settings differ)")
    rows: list[Row] = []
    for method, folder in runs.items():
        base = bases[method]
        settings = paper_and_dpm_settings(base)
        schemes = args.schemes if method == "fdm" else [base.model.rollout_config.scheme]
        for sampler in args.samplers:
            for scheme in schemes:
                overrides = {**test_size, **settings[sampler]}
                if method == "fdm":
                    overrides["model.init_args.rollout.scheme"] = scheme
                run = load_run(folder, **overrides)
                row = Row(method, scheme, sampler, *new_metrics())
                key, cached = row_key(run, row, args), cache / f"{method}_{scheme}_{sampler}.pt"
                if load_row(row, key, cached):
                    print(f"{row.name} [{sampler}]: from {cached}", flush=True)
                else:
                    start = time.perf_counter()
                    sample_row(run, batches, row, args.samples, args.batch, args.seed)
                    row.paper_calls_per_video = row.calls_per_video / calls_per_pass(run) * calls_per_pass(base)
                    print(f"{row.name} [{sampler}]: {time.perf_counter() - start:.0f} s", flush=True)
                    save_row(row, key, cached)
                if run.model.video_length > run.model.frames_per_pass:  # the stages, for the diagram
                    row.stages = run.model.video_sampler().stages(run.model.video_length, num_given)
                else:  # RVD: one pass, the recurrent rollout over the whole video, no scheme
                    row.scheme = "recurrent rollout"
                rows.append(row)
    baseline = copy_last_frame_row(batches, num_given, RevisitColourError(num_walls, beyond), args.late)

    # ------------------------------------------------------------------------------------------------ the report
    summaries = {f"{r.name} [{r.sampler}]": summarise(r) for r in [*rows, baseline]}
    columns = rows[0].revisit.columns
    head = [
        "method / scheme [sampler]",
        f"given walls, lag > {beyond}",
        f"all revisits, lag > {beyond}",
        f"late PSNR (last {args.late})",
        f"late CRPS (last {args.late})",
        "network calls / video",
        "with the paper's sampler",
        "s / video",
    ]
    cells = [
        [
            name,
            with_interval(s[f"given_beyond_{beyond}"]),
            with_interval(s[f"revisit_beyond_{beyond}"]),
            with_interval(s["late_psnr"]),
            with_interval(s["late_crps"]),
            round(s["calls_per_video"]),
            round(s["paper_calls_per_video"]),
            s["seconds_per_video"],
        ]
        for name, s in summaries.items()
    ]
    table = markdown_table(head, cells)
    bins = [c for c in columns if not c.startswith("beyond")]
    lag_head = ["method / scheme [sampler]", *[f"lag {b}" for b in bins]]
    lag_cells = [[name, *[with_interval(s[f"given_{b}"]) for b in bins]] for name, s in summaries.items()]
    lag_table = markdown_table(lag_head, lag_cells)
    model = fdm.model
    threads = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}"
    # The result file: "#" lines say how it was made (docs/hooks/results.py shows them as such), then the tables.
    info = [
        "# " + " ".join([threads, ".venv/bin/python benchmarks/long_video_schemes.py", *sys.argv[1:]]),
        f"# {date.today().isoformat()}: {args.videos} held-out videos of {video_length} frames "
        f"({model.clip.image_size}x{model.clip.image_size}), {num_given} given, {args.samples} sample(s) each, the "
        "same noise for every row.",
        f"# FDM: {trained_steps(Path(runs['fdm']))} steps ({training_minutes(Path(runs['fdm'])):.1f} min of fit), "
        f"K = {model.frames_per_pass} frames per pass. Paper's sampler: {model.sampling.sampler} "
        f"{model.sampling.steps} steps per pass ({calls_per_pass(fdm)} network calls); DPM-Solver++: {DPM_SAMPLER} "
        f"{paper_and_dpm_settings(fdm)['dpmpp']['model.init_args.sampling.steps']} steps per pass (1/{DPM_FRACTION} "
        "of those calls, rounded down, at least 1).",
        "",
        "Network calls per sampled video, measured; 'with the paper's sampler': the same passes with the paper's "
        "sampler. Colour errors in 0..255 (mean colour of a wall's pixels, generated against true); intervals are 95% "
        "bootstrap intervals over videos.",
        "",
        table,
        "",
        "Colour error of walls seen only in the given frames, by lag (frames since they were last in view):",
        "",
        lag_table,
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long_video_schemes.md").write_text("\n".join(info) + "\n")
    details = Path(runs["fdm"]) / "benchmark" / "long_video_schemes.json"  # every number, beside the run
    details.parent.mkdir(exist_ok=True)
    details.write_text(json.dumps(summaries, indent=2) + "\n")
    # The pictures show the first sampler's rows (the stages are the same for both).
    args.pictures.mkdir(parents=True, exist_ok=True)
    shown = [r for r in rows if r.sampler == args.samplers[0]]
    plot_stages(shown, video_length, num_given, args.pictures / "long_video_schemes_stages.png")
    plot_revisit_strip(
        [*shown, baseline], batches[0], num_given, beyond, args.pictures / "long_video_schemes_revisits.png"
    )
    plot_error_by_lag(summaries, columns, args.pictures / "long_video_schemes_lag.png")
    print(f"{args.out / 'long_video_schemes.md'}, {details}, pictures in {args.pictures}")
    if args.wandb != "disabled":
        log_to_wandb(
            args, details.parent, {"table": (head, cells), "given_walls_by_lag": (lag_head, lag_cells)}, info[:3]
        )
    print("\n".join(info))


if __name__ == "__main__":
    main()
