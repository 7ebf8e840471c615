"""What a new user ran into (issue 22), each through the CLI as the user runs it: a resume applies the configured
optimizer settings; after a divergence the checkpoint the error names resumes with a lower lr; checkpoint writes are
atomic; unreadable checkpoints are named; fit ends by saying where the run is, without warnings that do not concern
the user."""

from __future__ import annotations

import errno
import io
import logging
import math
import os
from pathlib import Path

import pytest
import torch

from tests.run_callbacks import read_losses
from tests.tiny_run import run_vdiff, tiny_config
from video_diffusion_lab import checkpoints
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.callbacks import NonFiniteLossError
from video_diffusion_lab.checkpoints import CheckpointReadError, CheckpointWriteError

STEP_DECAY = "video_diffusion_lab.lightning_modules.lr_schedules.StepDecayLR"


def optimizer(lr: float, weight_decay: float = 0.0) -> dict:
    return {"class_path": "torch.optim.AdamW", "init_args": {"lr": lr, "weight_decay": weight_decay}}


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_trains_with_the_configured_optimizer_and_scheduler_settings(tmp_path: Path, caplog) -> None:
    schedule = {"class_path": STEP_DECAY, "init_args": {"step_size": 1, "gamma": 0.5}}
    config = tiny_config(
        tmp_path,
        trainer={"max_steps": 2, "limit_val_batches": 0},
        model={"optimizer": optimizer(1e-3), "lr_scheduler": schedule},
    )
    vdiff.run(["fit", "--config", str(config)])
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert load(last)["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5**2)

    with caplog.at_level(logging.INFO):
        vdiff.run(
            [
                "fit",
                "--config",
                str(config),
                "--ckpt_path",
                "last",
                "--trainer.max_steps",
                "3",
                "--model.init_args.optimizer.init_args.lr",
                "2e-3",
                "--model.init_args.optimizer.init_args.weight_decay",
                "0.05",
                "--model.init_args.lr_scheduler.init_args.gamma",
                "0.9",
            ]
        )
    resumed = load(last)
    group = resumed["optimizer_states"][0]["param_groups"][0]
    scheduler = resumed["lr_schedulers"][0]
    assert resumed["global_step"] == 3
    assert group["initial_lr"] == scheduler["base_lrs"][0] == 2e-3 and group["weight_decay"] == 0.05
    assert scheduler["gamma"] == 0.9 and scheduler["last_epoch"] == 3, "the schedule goes on from its position"
    assert group["lr"] == pytest.approx(2e-3 * 0.9**3), "the lr of step 3 under the configured schedule"
    printed = caplog.text
    assert "base lr: 0.001 -> 0.002" in printed and "weight_decay: 0.0 -> 0.05" in printed, printed
    assert "lr_scheduler gamma: 0.5 -> 0.9" in printed, printed
    assert "optimizer.init_args.lr" not in printed, "the CLI's settings line leaves the optimizer to the resume"

    with pytest.raises(ValueError, match=f"--ckpt_path {last}.*another optimizer"):
        vdiff.run(
            [
                "fit",
                "--config",
                str(config),
                "--ckpt_path",
                "last",
                "--trainer.max_steps",
                "4",
                "--model.init_args.optimizer",
                "torch.optim.SGD",
                "--model.init_args.optimizer.init_args.lr",
                "0.1",
            ]
        )


def test_after_a_divergence_the_checkpoint_the_error_names_resumes_with_a_lower_lr(tmp_path: Path) -> None:
    losses = tmp_path / "losses.jsonl"
    recorder = {"class_path": "tests.run_callbacks.RecordLosses", "init_args": {"path": str(losses)}}
    config = tiny_config(
        tmp_path,
        trainer={"max_steps": 4, "limit_val_batches": 0},
        callbacks=[recorder],
        model={"optimizer": optimizer(1e10)},
    )
    with pytest.raises(NonFiniteLossError) as error:
        vdiff.run(["fit", "--config", str(config)])
    stop_step = max(read_losses(losses))
    good = error.value.resume_from
    assert good is not None and f"--ckpt_path {good}" in str(error.value), str(error.value)
    assert load(good)["global_step"] < stop_step, "the named checkpoint predates the weights that diverged"

    losses.unlink()
    vdiff.run(
        ["fit", "--config", str(config), "--ckpt_path", str(good), "--model.init_args.optimizer.init_args.lr", "1e-3"]
    )
    resumed = read_losses(losses)
    assert max(resumed) == 4 and all(math.isfinite(loss) for loss in resumed.values()), resumed


def test_a_failed_checkpoint_write_leaves_the_previous_file_and_no_partial_one(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(tmp_path, trainer={"max_steps": 2, "limit_val_batches": 0})
    folder = tmp_path / "checkpoints"
    renames: list[tuple[Path, Path]] = []
    for name in ("replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(
            os, name, lambda src, dst, _real=real: (renames.append((Path(src), Path(dst))), _real(src, dst))[1]
        )
    vdiff.run(["fit", "--config", str(config)])
    last = folder / "last.ckpt"
    into_last = [source for source, target in renames if target == last]
    assert into_last and all(source.parent == folder for source in into_last), (
        f"last.ckpt must be renamed from a temporary file in {folder}, was from {into_last}"
    )
    before, files = last.read_bytes(), sorted(os.listdir(folder))

    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        """torch.save onto a full disk: half of the checkpoint reaches the file, then the write fails."""
        if isinstance(f, (str, os.PathLike, io.BytesIO)):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointWriteError, match="No space left on device") as error:
        vdiff.run(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "4"])
    assert str(folder) in str(error.value)
    assert sorted(os.listdir(folder)) == files, "a partial or temporary file was left behind"
    assert last.read_bytes() == before and load(last)["global_step"] == 2


def test_errors_for_an_unreadable_checkpoint_name_the_file(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"max_steps": 2, "limit_val_batches": 0})
    vdiff.run(["fit", "--config", str(config)])
    last = tmp_path / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    for args in (["test", "--ckpt_path", str(truncated)], ["fit", "--ckpt_path", str(truncated)]):
        with pytest.raises(CheckpointReadError, match=f"{truncated}: cannot read this checkpoint.*truncated"):
            vdiff.run([args[0], "--config", str(config), *args[1:]])
    last.write_bytes(truncated.read_bytes())  # the resume of `--ckpt_path last`
    with pytest.raises(CheckpointReadError, match=f"{last}: cannot read"):
        vdiff.run(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "4"])
    # Lightning's own restore reads through the CLI's checkpoint I/O, with the same error.
    with pytest.raises(CheckpointReadError, match=f"{truncated}: cannot read"):
        checkpoints.AtomicCheckpointIO().load_checkpoint(truncated)
    assert checkpoints.describe_checkpoint(truncated) == f"{truncated} (unreadable: CheckpointReadError)"


def test_fit_says_where_the_run_is_and_prints_no_warning_that_does_not_concern_the_user(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, wandb=True, trainer={"max_steps": 2})
    noise = (
        "LeafSpec",
        "litlogger",
        "anonymous setting",
        "LightningCLI's args",
        "exists and is not empty",
        "Warning",
        "warn",
    )
    for args in (
        ["fit", "--config", str(config)],
        ["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "3"],
    ):
        result = run_vdiff(*args)
        assert result.returncode == 0, result.stderr[-3000:]
        printed = result.stdout + result.stderr
        assert [word for word in noise if word in printed] == [], printed[-3000:]
        where = f"Run folder {tmp_path}; checkpoint {tmp_path / 'checkpoints' / 'last.ckpt'} (global step"
        assert where in printed, printed[-2000:]
