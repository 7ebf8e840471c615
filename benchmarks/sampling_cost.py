"""Sample quality against network calls per generated frame, for each method trained on the embedded set.

The models are the four-method table's (``benchmarks/method_table.py``: trained there if missing). Each is tested with
``vdiff test`` (3 given -> 5 predicted, ``--clips`` held-out clips, 4 samples per clip) under
- the paper's full chain: ancestral sampling over every step of the training schedule (FDM, RaMViD: gamma = 1, i.e.
  beta_t; RVD: gamma = 0, its 1600 steps) and, for VDM, its predictor-corrector sampler with 256 steps;
- DPM-Solver++(2M) at 5, 10, 20 and 50 steps, its SDE variant at 20 and 50, DDIM at 10, 20, 50 and Heun at 3, 5,
  10 (two calls per step below sigma / alpha = 80, one above it and on the last step; the table gives the calls).
For each method the table marks the fewest calls that stay within 0.3 dB PSNR and 5% CRPS of the full chain.

    .venv/bin/python benchmarks/sampling_cost.py [--runs runs/method_table] [--clips 32] [--methods ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, fit, markdown_table, test  # noqa: E402
from benchmarks.method_table import METHODS, NAMES, config_of, fdm_on_common_clips, max_steps  # noqa: E402

FULL_CHAIN = {  # steps None: every step of the config's training schedule
    "ramvid": {"sampler": "ddpm", "steps": None, "gamma": 1.0},
    "fdm": {"sampler": "ddpm", "steps": None, "gamma": 1.0},
    "rvd": {"sampler": "ddpm", "steps": None, "gamma": 0.0},
    "vdm": {"sampler": "predictor_corrector", "steps": 256, "gamma": 0.0},
}
# Sampling steps per pass (Heun: two calls per step below sigma / alpha = 80, one above it and on the last step).
FAST = {"dpmpp_2m": (5, 10, 20, 50), "dpmpp_2m_sde": (20, 50), "ddim": (10, 20, 50), "heun": (3, 5, 10)}


def settings(method: str) -> list[tuple[str, dict]]:
    chain = dict(FULL_CHAIN[method])
    if chain["steps"] is None:  # the discrete schedule's every step (VDM's continuous one names its own count)
        chain["steps"] = yaml.safe_load(config_of(method).read_text())["model"]["init_args"]["diffusion"]["steps"]
    runs = [("full chain", chain)]
    for sampler, steps in FAST.items():
        runs += [(f"{sampler} {n}", {"sampler": sampler, "steps": n}) for n in steps]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "method_table")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    rows, results = [], {}
    for method in args.methods:
        run_dir = args.runs / method
        flags = fdm_on_common_clips() if method == "fdm" else []
        fit(config_of(method), run_dir, max_steps(method), *flags, threads=args.threads)
        flags += [f"--data.init_args.test_size={args.clips}", "--model.init_args.evaluation.num_samples=4"]
        measured = []
        for name, sampling in settings(method):
            options = [f"--model.init_args.sampling.{k}={v}" for k, v in sampling.items()]
            if "gamma" not in sampling:
                options.append("--model.init_args.sampling.gamma=0.0")
            report = test(
                config_of(method),
                run_dir,
                f"sampling_{args.clips}_{name.replace(' ', '_')}",
                *flags,
                *options,
                threads=args.threads,
            )
            predicted = report["video_length"] - report["num_given"]
            calls = report["sampling_cost"]["network_evaluations_per_clip"] / predicted
            measured.append(
                {
                    "setting": name,
                    "calls_per_frame": calls,
                    **report["model"],
                    "seconds_per_frame": report["sampling_cost"]["seconds_per_clip"] / predicted,
                }
            )
        chain = measured[0]
        close = [
            m for m in measured[1:] if m["psnr_mean"] >= chain["psnr_mean"] - 0.3 and m["crps"] <= chain["crps"] * 1.05
        ]
        fewest = min(close, key=lambda m: m["calls_per_frame"]) if close else None
        results[method] = {
            "measured": measured,
            "fewest_within_tolerance": fewest,
            "fewer_calls_than_full_chain": chain["calls_per_frame"] / fewest["calls_per_frame"] if fewest else None,
        }
        for m in measured:
            mark = " **(fewest within 0.3 dB / 5% CRPS)**" if m is fewest else ""
            rows.append(
                [
                    NAMES[method],
                    m["setting"] + mark,
                    m["calls_per_frame"],
                    m["psnr_mean"],
                    m["psnr_best"],
                    m["ssim_mean"],
                    m["crps"],
                    m["seconds_per_frame"],
                ]
            )
        print(
            markdown_table(
                ["method", "sampler", "calls / frame", "PSNR", "best-of-4", "SSIM", "CRPS", "s / frame"],
                rows[-len(measured) :],
            ),
            flush=True,
        )
    table = markdown_table(
        [
            "method",
            "sampler",
            "network calls / generated frame",
            "PSNR mean (dB)",
            "PSNR best-of-4",
            "SSIM",
            "CRPS",
            "s / generated frame",
        ],
        rows,
    )
    summary = "\n".join(
        f"- {NAMES[m]}: "
        + (
            f"{r['fewest_within_tolerance']['setting']} ({r['fewer_calls_than_full_chain']:.0f}x "
            "fewer calls than the full chain)"
            if r["fewest_within_tolerance"]
            else "no fast setting within 0.3 dB and 5% CRPS of the full chain"
        )
        for m, r in results.items()
    )
    (args.runs / "sampling_cost.md").write_text(table + "\n\n" + summary + "\n")
    (args.runs / "sampling_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table + "\n\n" + summary)


if __name__ == "__main__":
    main()
