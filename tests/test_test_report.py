"""The test report is a callback: ``vdiff test`` writes ``metrics_test.json`` and prints its summary through
``TestReport`` (registered in every run), a bare Trainer without it writes nothing, and ``evaluation.runs`` draws
each run's sample set with its own seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.tiny_run import tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.callbacks import TestReport
from video_diffusion_lab.diffusion import FrameMask, NoiseSource
from video_diffusion_lab.metrics.protocol import EvaluationProtocol, VideoEvaluation

pytestmark = pytest.mark.usefixtures("single_thread")


def test_vdiff_test_writes_the_report_and_prints_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tiny_config(tmp_path)
    vdiff.run(["test", "--config", str(config), "--untrained", "--model.init_args.evaluation.num_samples", "2"])
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["method"] == "RaMViD" and report["num_videos"] == 4 and report["protocol"]["num_samples"] == 2
    assert {"psnr_mean", "psnr_best", "ssim_mean", "ssim_best", "crps"} <= set(report["model"])
    assert report["sampling_cost"]["network_evaluations_per_clip"] == 3  # 3 DDIM steps, one pass
    printed = capsys.readouterr().out
    assert "Test on 4 held-out clips" in printed and f"Metrics written to {tmp_path.resolve()}" in printed


def test_the_report_is_the_callbacks_side_effect(tmp_path: Path) -> None:
    cli = vdiff.run(["--config", str(tiny_config(tmp_path / "run"))], subcommand=False)
    assert any(isinstance(callback, TestReport) for callback in cli.trainer.callbacks), "every vdiff run has it"
    model, data = cli.model, cli.datamodule
    for folder, callbacks in (("bare", []), ("reported", [TestReport()])):
        trainer = pl.Trainer(
            default_root_dir=tmp_path / folder,
            callbacks=callbacks,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.test(model, datamodule=data)
        # The module collects the metrics either way; only the callback writes them.
        assert model.test_evaluation.compute()["model"]["psnr_mean"] > 0
        written = (tmp_path / folder / "metrics_test.json").is_file()
        assert written == bool(callbacks), folder


def test_each_run_draws_its_sample_set_with_seed_plus_the_run(tmp_path: Path) -> None:
    runs = 2
    cli = vdiff.run(
        ["--config", str(tiny_config(tmp_path)), "--model.init_args.evaluation.runs", str(runs)], subcommand=False
    )
    model = cli.model.eval()
    batch = next(iter(cli.datamodule.test_dataloader()))
    updates: list[tuple[int, torch.Tensor]] = []

    class RecordingEvaluation(VideoEvaluation):
        def update(self, samples: torch.Tensor, video: torch.Tensor, mask: FrameMask, run: int = 0) -> None:
            updates.append((run, samples))

    model.on_test_start()
    model.test_evaluation = RecordingEvaluation(EvaluationProtocol(fvd="off", runs=runs), model.video_length)
    with torch.no_grad():
        out = model.test_step(batch, 0)
    model.on_test_end()
    assert [run for run, _ in updates] == list(range(runs))
    video, mask = out["video"], out["mask"]
    sampler, n = model.video_sampler(), model.evaluation.num_samples
    for run, samples in updates:
        noise = NoiseSource.for_clips(model.sampling.seed + run, batch["index"], n)
        with torch.no_grad():
            expected = sampler.sample_many(video, mask, n, noise, batch_size=model.evaluation.sample_batch_size)
        torch.testing.assert_close(samples, expected, rtol=0, atol=0)
    assert not torch.equal(updates[0][1], updates[1][1]), "the runs draw different samples"
    assert torch.equal(out["samples"], updates[0][1]), "test-time callbacks see the first run's samples"
