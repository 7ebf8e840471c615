"""VDM's headline claim for conditional generation (Ho et al. 2022, Sec. 3.1): from a model trained
unconditionally, reconstruction guidance predicts better than the replacement method.

The model is the VDM of the four-method table (``vdm_shapes.yaml``, unconditional with joint image-video training;
trained by ``benchmarks/method_table.py`` if missing). Both methods sample 3 given -> 5 frames of the same held-out
clips from the same noise with the config's sampler; reconstruction guidance is shown at several weights w_r
(the paper's Eq. 7; replacement is w_r = 0 in effect).

    .venv/bin/python benchmarks/vdm_guidance.py [--runs runs/method_table] [--weights 4 9]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli_runs import REPO, fit, markdown_table, test  # noqa: E402
from benchmarks.method_table import config_of, max_steps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "method_table")
    parser.add_argument("--weights", type=float, nargs="+", default=[4.0, 9.0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    config, run_dir = config_of("vdm"), args.runs / "vdm"
    fit(config, run_dir, max_steps("vdm"), threads=args.threads)

    settings = [("replacement", ["--model.init_args.conditioning_method=replacement"])]
    settings += [
        (
            f"reconstruction w_r={w:g}",
            ["--model.init_args.conditioning_method=reconstruction", f"--model.init_args.reconstruction_weight={w}"],
        )
        for w in args.weights
    ]
    shipped = yaml.safe_load(config.read_text())["model"]["init_args"]
    shipped_name = f"reconstruction w_r={float(shipped['reconstruction_weight']):g}"
    rows, results = [], {}
    for name, flags in settings:
        # The config's own setting is the four-method table's test: read from there rather than sampled again.
        kept, flags = ("test", []) if name == shipped_name else ("guidance_" + name.replace(" ", "_"), flags)
        report = test(config, run_dir, kept, *flags, threads=args.threads)
        results[name] = report["model"]
        rows.append(
            [
                name,
                report["model"]["psnr_mean"],
                report["model"]["psnr_best"],
                report["model"]["ssim_mean"],
                report["model"]["crps"],
            ]
        )
    base = report["copy_last_frame"]
    rows.append(["copy last frame", base["psnr_mean"], base["psnr_mean"], base["ssim_mean"], base["crps"]])
    info = (
        f"{report['num_videos']} held-out clips, {report['num_given']} given -> "
        f"{report['video_length'] - report['num_given']} generated, {report['protocol']['num_samples']} samples "
        f"each; sampler {report['sampler']} {report['sampling_steps']} steps; model: "
        f"{report['checkpoint_global_step']} steps"
    )
    table = markdown_table(["conditioning", "PSNR mean (dB)", "PSNR best-of-N", "SSIM", "CRPS"], rows)
    (run_dir / "benchmark" / "vdm_guidance.md").write_text(info + "\n\n" + table + "\n")
    (run_dir / "benchmark" / "vdm_guidance.json").write_text(json.dumps({"info": info, "results": results}, indent=2))
    print(info + "\n\n" + table)


if __name__ == "__main__":
    main()
