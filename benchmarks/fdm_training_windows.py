"""How often an FDM training pass holds an observed frame next to a latent one, with and without windows
(``FDM(windows=...)``, diffusion/frame_sampling.py). No training: it draws the index distribution only.

    .venv/bin/python benchmarks/fdm_training_windows.py [--length 300] [--frames 10]

Why it exists: at test time FDM's schemes put given frames right next to the frames they generate; this says how
often the training distribution shows the network that situation. Writes benchmarks/results/fdm_training_windows.md.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, markdown_table  # noqa: E402
from video_diffusion_lab.diffusion.frame_sampling import TrainingWindows, fdm_training_mask  # noqa: E402


def describe(windows: TrainingWindows | None) -> str:
    if windows is None:
        return "released (whole video)"
    share = "every example" if windows.probability == 1 else f"{windows.probability:.0%} of the examples"
    longest = "T" if windows.longest is None else windows.longest
    span = f"{windows.shortest} frames" if longest == windows.shortest else f"[{windows.shortest}, {longest}] frames"
    return f"{share} in windows of {span}"


# The released draw, windows of every example (log-uniform up to T), and the half-and-half mixture fdm_maze.yaml uses.
DRAWS = (
    None,
    TrainingWindows(shortest=40),
    TrainingWindows(shortest=20),
    TrainingWindows(shortest=10),
    TrainingWindows(probability=0.5, shortest=10, longest=10),
)


def statistics(length: int, frames: int, windows: TrainingWindows | None, examples: int) -> list[str]:
    mask = fdm_training_mask(examples, length, frames, torch.Generator().manual_seed(0), windows=windows)
    distances, with_observed, spread = [], 0, []
    for b in range(examples):
        real = mask.frame_indices[b][mask.observed[b] | mask.latent[b]]
        spread.append(int(real.max() - real.min()))
        observed = mask.frame_indices[b][mask.observed[b]]
        with_observed += bool(observed.numel())
        distances += [
            int((observed - i).abs().min()) for i in mask.frame_indices[b][mask.latent[b]] if observed.numel()
        ]
    near = torch.tensor(distances)
    latent = int(mask.latent.sum())
    return [
        describe(windows),
        f"{with_observed / examples:.0%}",
        f"{int((near <= 1).sum()) / latent:.1%}",
        f"{int((near <= 5).sum()) / latent:.1%}",
        f"{float(near.float().median()):.0f}",
        f"{sum(s > length // 2 for s in spread) / examples:.0%}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=300, help="T, frames of a training video")
    parser.add_argument("--frames", type=int, default=10, help="K, frames per pass")
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    header = [
        "training draw",
        "passes with an observed frame",
        "latent frames with an observed one 1 frame away",
        "... within 5 frames",
        "median distance to the nearest observed frame",
        "passes spanning more than T/2",
    ]
    rows = [statistics(args.length, args.frames, windows, args.examples) for windows in DRAWS]
    command = " ".join(["# .venv/bin/python benchmarks/fdm_training_windows.py", *sys.argv[1:]])
    text = "\n".join(
        [
            command,
            f"# {date.today()}: {args.examples} draws of FDM's training index distribution, T = {args.length}, "
            f"K = {args.frames}.",
            "",
            markdown_table(header, rows),
        ]
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fdm_training_windows.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
