"""The notebook API (``video_diffusion_lab.load_run``) on a run folder written by ``vdiff fit``: the documented
example runs as written, and what it returns agrees with the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_run import REPO, run_vdiff, tiny_config
from video_diffusion_lab import load_run

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api") / "run"
    fitted = run_vdiff("fit", "--config", str(tiny_config(folder)))
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    return folder


def test_the_documented_example_runs(run_dir: Path) -> None:
    example = REPO / "docs" / "examples" / "python_api.py"
    done = subprocess.run(
        [sys.executable, str(example), str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sampled (2, 4, 3, 8, 8)" in done.stdout
    assert "predicted (2, 12, 3, 8, 8)" in done.stdout
    assert (run_dir / "metrics_test.json").is_file()


def test_loaded_weights_are_the_checkpoint_and_samples_are_reproducible(run_dir: Path) -> None:
    run = load_run(run_dir)
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    batch = run.batch("test", size=2)
    first, again = run.sample(batch, seed=3), run.sample(batch, seed=3)
    assert torch.equal(first, again)
    assert not torch.equal(first, run.sample(batch, seed=4))
    mask = run.task_mask(batch)
    assert torch.equal(first[:, mask.observed[0]], batch["video"][:, mask.observed[0]])


def test_missing_run_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config_fit.yaml"):
        load_run(tmp_path)
