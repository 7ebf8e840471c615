"""How long each embedded config's training takes on this machine: seconds per step measured as the difference of two
short ``vdiff fit`` runs (so start-up is not counted), times the config's ``max_steps``. Validation, sample videos and
checkpoints are left out (``--trainer.limit_val_batches 0``, no logger); run it on an otherwise idle machine.

    .venv/bin/python benchmarks/training_minutes.py [--threads 2] [--steps 20 80]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, VDIFF, markdown_table  # noqa: E402
from benchmarks.method_table import METHODS, NAMES, config_of, max_steps  # noqa: E402


def fit_seconds(config: Path, steps: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
        start = time.perf_counter()
        subprocess.run(
            [
                *VDIFF,
                "fit",
                "--config",
                str(config),
                "--trainer.default_root_dir",
                run_dir,
                "--trainer.max_steps",
                str(steps),
                "--trainer.limit_val_batches",
                "0",
                "--trainer.logger",
                "false",
                "--trainer.enable_progress_bar",
                "false",
            ],
            cwd=REPO,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs=2, default=[20, 80])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args()
    short, long = args.steps
    rows = []
    for method in args.methods:
        config = config_of(method)
        per_step = (fit_seconds(config, long, args.threads) - fit_seconds(config, short, args.threads)) / (long - short)
        batch = yaml.safe_load(config.read_text())["data"]["init_args"]["batch_size"]
        rows.append([NAMES[method], batch, max_steps(method), per_step, per_step * max_steps(method) / 60])
        print(rows[-1], flush=True)
    print(markdown_table(["config", "batch", "max_steps", "s / step", "training minutes (steps only)"], rows))


if __name__ == "__main__":
    main()
