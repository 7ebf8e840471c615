"""Run folders written before 0.2 (packages at the top level: ``class_path: lightning_modules.RaMViD``) still load.

``tests/fixtures/legacy_run`` is a tiny RaMViD run (2 steps) written by the 0.1 code: its ``config_fit.yaml`` and
``checkpoints/last.ckpt`` are kept as that code wrote them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.tiny_run import run_vdiff

LEGACY_RUN = Path(__file__).parent / "fixtures" / "legacy_run"
WRITTEN_IN = "/tmp/legacy/run"  # the run folder the fixture was written in


def test_pre_namespace_run_folder_tests_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(LEGACY_RUN, run)
    config = run / "config_fit.yaml"
    text = config.read_text()
    assert "class_path: lightning_modules.RaMViD" in text  # the fixture is what 0.1 wrote
    config.write_text(text.replace(WRITTEN_IN, str(run)))  # as if it had been written here (paths are absolute)

    tested = run_vdiff("test", "--config", str(config), "--trainer.default_root_dir", str(run), "--ckpt_path", "last")
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert "class path(s) moved into video_diffusion_lab" in tested.stdout + tested.stderr
    report = json.loads((run / "metrics_test.json").read_text())
    assert report["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    assert report["checkpoint_global_step"] == 2

    resumed = run_vdiff(
        "fit",
        "--config",
        str(config),
        "--trainer.default_root_dir",
        str(run),
        "--ckpt_path",
        "last",
        "--trainer.max_steps",
        "3",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
