"""The report of ``vdiff test``: ``metrics_test.json``, the test scalars of every logger and a summary line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from video_diffusion_lab.lightning_modules.video_diffusion import VideoDiffusionModule
from video_diffusion_lab.metrics.report import run_dir, write_json


class TestReport(pl.Callback):
    """At the end of ``test``, what the module collected in ``test_step`` (its ``test_evaluation`` and
    ``sampling_cost``, reduced over every DDP rank) with the settings it was produced with (``report_settings``):
    written to ``<run dir>/metrics_test.json`` and printed as a summary (rank 0), and logged as ``test/...`` scalars.
    Every run of the ``vdiff`` command has it; modules that are not a ``VideoDiffusionModule`` are left alone."""

    __test__ = False  # a callback, not a pytest test class

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, VideoDiffusionModule):
            return
        report = self.report(pl_module)  # collective: every rank takes part
        model, baseline = report["model"], report["copy_last_frame"]
        scalars = {f"test/{k}": v for k, v in model.items()}
        scalars.update({f"test/{k}_std": v for k, v in report.get("model_std", {}).items()})
        scalars.update({f"test/copy_last_frame/{k}": v for k, v in baseline.items()})
        pl_module.log_dict(scalars, sync_dist=False)  # already reduced over ranks
        if "fvd_protocol" in report:  # an FVD is only comparable with the facts that decide it
            for logger in trainer.loggers:
                logger.log_hyperparams(
                    {"fvd_protocol": report["fvd_protocol"], "fvd_rank_deficient": report["fvd_rank_deficient"]}
                )
        if trainer.is_global_zero:
            path = write_json(run_dir(trainer) / "metrics_test.json", report)
            print(summary(report, path))

    @staticmethod
    def report(pl_module: VideoDiffusionModule) -> dict[str, Any]:
        results = pl_module.test_evaluation.compute()
        model, baseline = results["model"], results["copy_last_frame"]
        report = {
            **pl_module.report_settings(),
            "num_videos": int(pl_module.test_clips.compute()),
            "metrics_on": "predicted (latent) frames, values scaled to [0, 1]; FVD on whole clips",
            **results,
            "beats_copy_last_frame_psnr": model["psnr_mean"] > baseline["psnr_mean"],
        }
        if "crps" in model:
            report["beats_copy_last_frame_crps"] = model["crps"] < baseline["crps"]
        report["sampling_cost"] = pl_module.sampling_cost.compute(pl_module.all_gather, pl_module.device)
        return report


def summary(report: dict[str, Any], path: Path) -> str:
    """The report in two lines: the model's PSNR / SSIM (and CRPS, FVD, LPIPS when computed) against the
    copy-last-frame baseline, and where the file is."""
    model, baseline = report["model"], report["copy_last_frame"]
    n = report["protocol"]["num_samples"]
    extra = "".join(f", {k.upper()} {v:.4g}" for k, v in model.items() if k in ("crps", "fvd", "lpips"))
    return (
        f"\nTest on {report['num_videos']} held-out clips ({report['task']}, {report['num_given']} given, "
        f"{n} sample(s) per clip): model PSNR {model['psnr_mean']:.2f} dB (best-of-{n} {model['psnr_best']:.2f}) / "
        f"SSIM {model['ssim_mean']:.3f}{extra}; copy-last-frame PSNR {baseline['psnr_mean']:.2f} dB / SSIM "
        f"{baseline['ssim_mean']:.3f} / CRPS (= MAE) {baseline['crps']:.4g}\nMetrics written to {path.resolve()}"
    )
