"""The checkpoint you name is the model you run: the configured model and its overrides get the checkpoint's weights;
a checkpoint of another method or shape is refused naming both; evaluation never silently runs untrained weights."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_run import tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.callbacks import non_finite
from video_diffusion_lab.checkpoints import CheckpointMismatchError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(config, checkpoint) of a 2-step RaMViD run and a 2-step FDM run."""
    runs = {}
    for method in ("ramvid", "fdm"):
        run_dir = tmp_path_factory.mktemp(method)
        config = tiny_config(run_dir, method=method, trainer={"max_steps": 2, "limit_val_batches": 0})
        vdiff.run(["fit", "--config", str(config)])
        runs[method] = (config, run_dir / "checkpoints" / "last.ckpt")
    return runs


def test_overrides_apply_to_the_weights_of_an_explicit_checkpoint(trained, tmp_path: Path) -> None:
    config, checkpoint = trained["fdm"]  # trained with scheme: autoreg
    vdiff.run(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            str(checkpoint),
            "--model.init_args.rollout.scheme",
            "long_range",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    pictures = sorted(p.name for p in (tmp_path / "predictions").glob("scheme_*.png"))
    assert pictures == ["scheme_long_range.png"], "the checkpoint's saved settings replaced the override"


def test_checkpoint_of_another_method_is_refused_naming_both(trained, tmp_path: Path) -> None:
    fdm_config, _ = trained["fdm"]
    _, ramvid_checkpoint = trained["ramvid"]
    with pytest.raises(CheckpointMismatchError) as error:
        vdiff.run(
            [
                "test",
                "--config",
                str(fdm_config),
                "--ckpt_path",
                str(ramvid_checkpoint),
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )
    message = str(error.value)
    assert "RaMViD" in message and "FDM" in message and str(ramvid_checkpoint) in message, message
    assert not (tmp_path / "metrics_test.json").exists()


def test_checkpoint_of_another_shape_is_refused_naming_the_weights_and_settings(trained, tmp_path: Path) -> None:
    _, checkpoint = trained["ramvid"]
    wider = tiny_config(tmp_path, model={"network": {"model_channels": 16}})
    with pytest.raises(CheckpointMismatchError) as error:
        vdiff.run(["test", "--config", str(wider), "--ckpt_path", str(checkpoint)])
    message = str(error.value)
    assert "another shape" in message and "checkpoint (8," in message and "configured (16," in message, message
    assert "model_channels: 8 -> 16" in message, message


def test_checkpoint_without_a_recorded_class_is_checked_by_its_weights(trained, tmp_path: Path) -> None:
    fdm_config, _ = trained["fdm"]
    _, ramvid_checkpoint = trained["ramvid"]
    bare = torch.load(ramvid_checkpoint, map_location="cpu", weights_only=True)
    bare.pop("hyper_parameters")
    path = tmp_path / "bare.ckpt"
    torch.save(bare, path)
    with pytest.raises(CheckpointMismatchError, match="no class recorded.*weights do not fit.*FDM"):
        vdiff.run(
            ["test", "--config", str(fdm_config), "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path)]
        )


def test_evaluation_needs_a_checkpoint_unless_untrained_is_asked_for(trained, tmp_path: Path) -> None:
    config, _ = trained["ramvid"]
    for command in ("validate", "test", "predict"):
        with pytest.raises(ValueError, match=f"vdiff {command}: no checkpoint given.*--untrained"):
            vdiff.run([command, "--config", str(config), "--trainer.default_root_dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=f"--ckpt_path last: no last\\*.ckpt in {tmp_path}/checkpoints"):
        vdiff.run(["test", "--config", str(config), "--ckpt_path", "last", "--trainer.default_root_dir", str(tmp_path)])
    assert not (tmp_path / "metrics_test.json").exists()
    with pytest.raises(ValueError, match="contradict"):
        vdiff.run(["test", "--config", str(config), "--ckpt_path", "last", "--untrained"])
    vdiff.run(["test", "--config", str(config), "--untrained", "--trainer.default_root_dir", str(tmp_path)])
    assert (tmp_path / "metrics_test.json").exists()


def test_report_names_the_checkpoint_and_its_step(trained, tmp_path: Path) -> None:
    # Needs the report fields of lightning_modules (checkpoint path and global step).
    config, checkpoint = trained["ramvid"]
    vdiff.run(["test", "--config", str(config), "--ckpt_path", "last"])
    report = json.loads((config.parent / "metrics_test.json").read_text())
    assert report["checkpoint"] == str(checkpoint) and report["checkpoint_global_step"] == 2
    vdiff.run(["test", "--config", str(config), "--untrained", "--trainer.default_root_dir", str(tmp_path)])
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["checkpoint"] is None and report["checkpoint_global_step"] == 0


def test_checkpoint_utilities_import_no_callback() -> None:
    # The callbacks import the checkpoint utilities, never the reverse, and the guard that names a checkpoint to
    # resume from does not import the callback that writes them (which imports the guard's error).
    code = (
        "import sys, video_diffusion_lab.checkpoints; "
        "print([m for m in sys.modules if m.startswith('video_diffusion_lab.callbacks')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    guard = ast.parse(Path(non_finite.__file__).read_text())
    imported = {node.module for node in ast.walk(guard) if isinstance(node, ast.ImportFrom)}
    assert "video_diffusion_lab.callbacks.checkpointing" not in imported
