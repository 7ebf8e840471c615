"""``fit``'s sanity check and validation sample with a progress bar when the trainer shows its own, and silently when
it does not (``trainer.enable_progress_bar``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_run import tiny_config
from video_diffusion_lab import cli as vdiff

pytestmark = pytest.mark.usefixtures("single_thread")


def test_validation_sampling_shows_progress_with_the_trainers_bar(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    vdiff.run(["fit", "--config", str(tiny_config(tmp_path / "bar", trainer={"enable_progress_bar": True}))])
    out, err = capfd.readouterr()
    assert "Sanity Checking" in out and "Validation" in out, "the trainer's own bars"
    # The sampler's bar over its 3 DDIM steps (tiny RaMViD), in the sanity check and in the validation.
    assert err.count("DDIM:   0%|          | 0/3") == 2, err

    vdiff.run(["fit", "--config", str(tiny_config(tmp_path / "quiet", trainer={"max_steps": 1}))])
    assert "DDIM" not in capfd.readouterr().err, "no sampling bar when the trainer shows none"
