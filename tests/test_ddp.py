"""Two CPU processes (gloo) through the CLI: fit with validation, sample videos, periodic evaluation and checkpoints,
then test, for RaMViD and FDM; both ranks must finish. Evaluation gives the same numbers on 2 processes as on 1,
whatever the batch size, and never counts a clip twice. SIGTERM to one rank stops both, and the resumed run trains
exactly as the uninterrupted one on every rank.

Lightning's DDP launcher re-runs the current command in the child process, so the runs are
`python -m video_diffusion_lab.cli`
subprocesses, never pytest itself. A hang (a collective call made by one rank only) shows as a timeout.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.run_callbacks import read_losses
from tests.tiny_run import run_vdiff_ddp, tiny_config
from video_diffusion_lab import cli as vdiff

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed support")

TIMEOUT = 150  # a run takes 15-30 s on 2 busy cores; a deadlock never ends


def run_ddp(*args: str) -> subprocess.CompletedProcess:
    try:
        return run_vdiff_ddp(*args, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as hang:
        pytest.fail(
            f"`vdiff {args[0]}` on 2 processes did not finish in {TIMEOUT} s (a rank waits in a collective "
            f"call): {str(hang.stderr or '')[-3000:]}"
        )


def marker(folder: Path) -> dict:
    return {"class_path": "tests.run_callbacks.RankMarker", "init_args": {"folder": str(folder)}}


def assert_finished(result: subprocess.CompletedProcess, marks: Path, stage: str) -> None:
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in marks.glob(f"{stage}_rank*.done")) == [f"{stage}_rank0.done", f"{stage}_rank1.done"]


def ddp_fit(run_dir: Path, method: str, data: dict) -> Path:
    """A 4-step DDP fit with validation every epoch, sample videos, periodic evaluation and checkpoints; checks
    that both ranks finished and wrote what a run writes. Returns the config."""
    callbacks = [
        marker(run_dir / "marks"),
        {"class_path": "tests.run_callbacks.RecordRNG", "init_args": {"folder": str(run_dir / "rng")}},
    ]
    if method == "fdm":  # the FDM config has no sample logger or periodic evaluation of its own
        callbacks += [
            {"class_path": "SampleVideoLogger", "init_args": {"num_videos": 2}},
            {"class_path": "PeriodicEvaluation"},
        ]
    # RaMViD logs to W&B (offline), FDM to CSV: runs hung with both before.
    trainer = (
        {"max_steps": 4}
        if method == "ramvid"
        else {
            "max_steps": 4,
            "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "."}},
        }
    )
    # 16 training clips: 2 steps per epoch on each of 2 ranks, so validation runs twice.
    config = tiny_config(
        run_dir,
        method=method,
        wandb=method == "ramvid",
        trainer=trainer,
        data={"train_size": 16, "val_size": 3, **data},
        callbacks=callbacks,
    )
    fit = run_ddp("fit", "--config", str(config))
    assert_finished(fit, run_dir / "marks", "fit")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4 and int(checkpoint["state_dict"]["ema.num_updates"]) == 4
    assert len(checkpoint["callbacks"]["ExactResume"]["rng"]) == 2, "RNG states of both ranks are kept"
    rank0, rank1 = (torch.load(run_dir / "rng" / f"rng_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(rank0, rank1), "both ranks would draw the same training noise and masks"
    evaluations = [json.loads(line) for line in (run_dir / "metrics_val.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evaluations] == [2, 4]
    assert (run_dir / "config_fit.yaml").is_file() and not (run_dir / "config.yaml").exists()
    if method == "ramvid":
        assert list((run_dir / "videos").glob("*.mp4")), "the sample logger wrote no validation videos"
        assert list(run_dir.glob("wandb/offline-run-*")), "no W&B run"
    else:
        assert list(run_dir.glob("lightning_logs/*/metrics.csv")), "no CSV log"
    return config


def test_fdm_fit_with_validation_and_every_callback_then_test_finish_on_both_ranks(tmp_path: Path) -> None:
    config = ddp_fit(tmp_path, "fdm", {"test_size": 3})
    test = run_ddp("test", "--config", str(config), "--ckpt_path", "last")
    assert_finished(test, tmp_path / "marks", "test")
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["num_videos"] == 3, "a clip was counted twice (DistributedSampler pads 3 clips to 4)"


def test_ramvid_fit_then_test_on_two_processes_matches_one_process_for_any_batch_size(tmp_path: Path) -> None:
    config = ddp_fit(tmp_path, "ramvid", {"test_size": 7, "eval_batch_size": 4})
    checkpoint = str(tmp_path / "checkpoints" / "last.ckpt")
    test = run_ddp("test", "--config", str(config), "--ckpt_path", checkpoint)
    assert_finished(test, tmp_path / "marks", "test")
    reports = {"2 processes, batch 4": json.loads((tmp_path / "metrics_test.json").read_text())}
    assert reports["2 processes, batch 4"]["num_videos"] == 7, "a clip was counted twice (7 clips padded to 8)"

    for batch in (4, 3):
        out = tmp_path / f"batch{batch}"
        vdiff.run(
            [
                "test",
                "--config",
                str(config),
                "--ckpt_path",
                checkpoint,
                "--data.init_args.eval_batch_size",
                str(batch),
                "--trainer.default_root_dir",
                str(out),
            ]
        )
        reports[f"1 process, batch {batch}"] = json.loads((out / "metrics_test.json").read_text())
    # Noise is drawn per clip (its data set index and sample number), so neither the batch size nor the number of
    # processes may change a number; the only slack is float32 summation order across ranks.
    reference = reports["1 process, batch 4"]
    for name, report in reports.items():
        assert report["num_videos"] == 7, name
        for part in ("model", "copy_last_frame"):
            for key, value in reference[part].items():
                assert report[part][key] == pytest.approx(value, rel=1e-6, abs=1e-9), f"{name}: {part}.{key}"


def test_sigterm_to_rank_0_stops_both_ranks_and_the_resumed_run_matches_the_uninterrupted_one(tmp_path: Path) -> None:
    # 32 clips, batch 4, 2 ranks: 4 steps per epoch. Stopped after step 3 (mid-epoch), resumed to step 6.
    def config(run_dir: Path) -> Path:
        losses = str(run_dir / "losses.jsonl")
        recorder = {"class_path": "tests.run_callbacks.RecordLosses", "init_args": {"path": losses}}
        return tiny_config(
            run_dir, trainer={"max_steps": 6, "limit_val_batches": 0}, data={"train_size": 32}, callbacks=[recorder]
        )

    reference = run_ddp("fit", "--config", str(config(tmp_path / "reference")))
    assert reference.returncode == 0, reference.stderr[-4000:]
    stopped = config(tmp_path / "stopped")
    sigterm = run_ddp(
        "fit",
        "--config",
        str(stopped),
        "--trainer.callbacks+=tests.run_callbacks.SignalAt",
        "--trainer.callbacks.step=3",
        "--trainer.callbacks.signal_name=SIGTERM",
        "--trainer.callbacks.rank=0",
    )
    assert sigterm.returncode == 128 + 15, sigterm.stderr[-4000:]
    checkpoint = torch.load(tmp_path / "stopped" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3 and len(checkpoint["callbacks"]["ExactResume"]["rng"]) == 2
    resumed = run_ddp("fit", "--config", str(stopped), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-4000:]

    for rank in (0, 1):  # each rank trains on its own clips with its own random draws
        expected = read_losses(tmp_path / "reference" / "losses.jsonl", rank)
        assert sorted(expected) == list(range(1, 7))
        assert read_losses(tmp_path / "stopped" / "losses.jsonl", rank) == expected, f"rank {rank}"
