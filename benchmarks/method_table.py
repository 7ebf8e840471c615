"""The four methods side by side on the same embedded clips, with the same protocol, next to copy-last-frame.

Each method is trained from its embedded config exactly as the README's command does (``vdiff fit --config
experiments/<method>_shapes.yaml``, configured logger and callbacks), then tested with ``vdiff test``: 3 given ->
5 predicted frames of the 128 held-out 8-frame clips of the RaMViD/VDM/RVD configs, 4 samples per clip. FDM's
config is for long videos; here it is trained and tested on the same 8-frame clips (one pass of K = 8 frames), with
the flags below, and otherwise unchanged.

    .venv/bin/python benchmarks/method_table.py [--runs runs/method_table] [--methods ramvid vdm rvd fdm]

Trained run folders are reused (delete one to train it again). Writes ``<runs>/method_table.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, fit, markdown_table, test, trained_parameters, training_minutes  # noqa: E402

METHODS = ("ramvid", "vdm", "rvd", "fdm")
NAMES = {"ramvid": "RaMViD", "vdm": "VDM", "rvd": "RVD", "fdm": "FDM"}


def common_clips() -> dict:
    """The RaMViD main job's data: every method is trained and tested on these clips."""
    return yaml.safe_load((REPO / "experiments" / "ramvid_shapes.yaml").read_text())["data"]["init_args"]


def fdm_on_common_clips() -> list[str]:
    """Flags that put FDM on the common 8-frame clips: one pass, 3 given -> 5 predicted."""
    flags = [f"--data.init_args.{key}={json.dumps(value)}" for key, value in common_clips().items()]
    return [
        *flags,
        "--data.init_args.motion=bounce",
        "--data.init_args.offscreen=0.0",
        "--model.init_args.task.video_length=8",
        "--model.init_args.task.num_given=3",
    ]


def config_of(method: str) -> Path:
    return REPO / "experiments" / f"{method}_shapes.yaml"


def max_steps(method: str) -> int:
    return yaml.safe_load(config_of(method).read_text())["trainer"]["max_steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "method_table")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each vdiff run")
    args = parser.parse_args()

    rows, results = [], {}
    baseline = None
    for method in args.methods:
        run_dir = args.runs / method
        flags = fdm_on_common_clips() if method == "fdm" else []
        fit(config_of(method), run_dir, max_steps(method), *flags, threads=args.threads)
        report = test(config_of(method), run_dir, "test", *flags, threads=args.threads)
        model, copy_last = report["model"], report["copy_last_frame"]
        if baseline is None:
            baseline = copy_last
        elif abs(copy_last["psnr_mean"] - baseline["psnr_mean"]) > 1e-6:
            raise RuntimeError(f"{method}: tested on other clips than {args.methods[0]} (copy-last-frame differs)")
        cost = report["sampling_cost"]
        predicted = report["video_length"] - report["num_given"]
        results[method] = {
            "report": report,
            "training_minutes": training_minutes(run_dir),
            "parameters": trained_parameters(run_dir),
        }
        rows.append(
            [
                NAMES[method],
                model["psnr_mean"],
                model["psnr_best"],
                model["ssim_mean"],
                model["crps"],
                f"{report['sampler']} {report['sampling_steps']}",
                cost["network_evaluations_per_clip"] / predicted,
                cost["seconds_per_clip"],
                results[method]["training_minutes"],
                f"{results[method]['parameters'] / 1e6:.2f}M",
            ]
        )
    rows.append(
        [
            "copy last frame",
            baseline["psnr_mean"],
            baseline["psnr_mean"],
            baseline["ssim_mean"],
            baseline["crps"],
            "-",
            0.0,
            0.0,
            0.0,
            "-",
        ]
    )
    n = results[args.methods[0]]["report"]["protocol"]["num_samples"]
    header = [
        "method",
        "PSNR mean (dB)",
        f"PSNR best-of-{n}",
        "SSIM",
        "CRPS",
        "sampler",
        "network calls / predicted frame",
        "s / sampled clip",
        "training min",
        "parameters",
    ]
    table = markdown_table(header, rows)
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "method_table.md").write_text(table + "\n")
    (args.runs / "method_table.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
