"""Do the maze runs use their given frames? One sampling pass per run on windows of the held-out maze videos: the
first ``--given`` frames of a ``--window``-frame window (K) given, the rest generated, each generated frame scored
against the truth and against copying the last given frame; and how much the generated frames move when the given
frames are swapped for another video's (a model that ignores its given frames does not move).

    .venv/bin/python benchmarks/maze_conditioning.py --run fdm=runs/fdm_maze --run ramvid=runs/ramvid_maze \
        --run vdm=runs/vdm_maze --run rvd=runs/rvd_maze [--videos 16] [--starts 36 100 200] [--out benchmarks/results]

Why it exists: the long-video benchmark (long_video_schemes.py) scores memory over 264 generated frames; when every
row is near copy-last-frame, this says whether the cause is a model that does not condition at all. RVD rolls out over
the same windows (its RNNs read the given frames, then generate the rest).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, markdown_table, trained_steps  # noqa: E402
from video_diffusion_lab.api import load_run  # noqa: E402
from video_diffusion_lab.diffusion import task_mask  # noqa: E402
from video_diffusion_lab.metrics.revisit import signed_range  # noqa: E402

SAMPLER = {"model.init_args.sampling.sampler": "dpmpp_2m", "model.init_args.sampling.steps": 10}


def errors(samples: torch.Tensor, truth: torch.Tensor, given: int) -> list[float]:
    """Mean absolute error (0..255) of each generated frame."""
    return [float((samples[:, t] - truth[:, t]).abs().mean() * 127.5) for t in range(given, truth.shape[1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_FOLDER")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--window", type=int, default=10, help="frames of a pass (K of the maze configs)")
    parser.add_argument("--given", type=int, default=5)
    parser.add_argument("--starts", type=int, nargs="+", default=[36, 100, 200], help="first frame of each window")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    rows = []
    copy_row: list[float] = []
    for spec in args.run:
        name, folder = spec.split("=", 1)
        run = load_run(folder, **SAMPLER, **{"data.init_args.test_size": args.videos})
        model = run.model
        window = args.window
        video = signed_range(run.batch("test", args.videos)["video"])
        mask = task_mask("prediction", args.videos, window, args.given)
        own, moved, copy = [], [], []
        for start in args.starts:
            truth = video[:, start : start + window]
            other = truth.clone()
            other[:, : args.given] = truth[:, : args.given].roll(1, dims=0)  # another video's given frames
            with torch.no_grad():
                sample = model.sample(truth, mask, generator=torch.Generator().manual_seed(0))
                swapped = model.sample(other, mask, generator=torch.Generator().manual_seed(0))
            own.append(errors(sample, truth, args.given))
            moved.append(float((sample - swapped)[:, args.given :].abs().mean() * 127.5))
            copy.append(errors(truth[:, args.given - 1 : args.given].expand_as(truth), truth, args.given))
        per_frame = torch.tensor(own).mean(0).tolist()
        copy_row = torch.tensor(copy).mean(0).tolist()
        rows.append([f"{name} ({trained_steps(Path(folder))} steps)", *[f"{e:.1f}" for e in per_frame]])
        rows[-1].append(f"{sum(moved) / len(moved):.1f}")
        print(rows[-1], flush=True)
    rows.append(["copy last given frame", *[f"{e:.1f}" for e in copy_row], "0"])
    width = max(len(r) for r in rows)
    rows = [r[:-1] + ["-"] * (width - len(r)) + r[-1:] for r in rows]
    header = ["run", *[f"lag {i + 1}" for i in range(width - 2)], "moved by other given frames"]
    threads = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}"
    text = [
        "# " + " ".join([threads, ".venv/bin/python benchmarks/maze_conditioning.py", *sys.argv[1:]]),
        f"# {date.today().isoformat()}: {args.videos} held-out maze videos, windows starting at frames "
        f"{', '.join(map(str, args.starts))}; {args.given} given, the rest of the window generated; DPM-Solver++(2M), "
        "10 steps, the same noise for every run.",
        "",
        "Mean absolute error (0..255) of each generated frame (lag = frames after the last given one), and how much "
        "the generated frames change (same noise) when the given frames come from another video:",
        "",
        markdown_table(header, rows),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "maze_conditioning.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
