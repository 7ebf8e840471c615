"""benchmarks/maze_conditioning.py as a user runs it, on a tiny FDM maze run trained here: the table has the run's row
and the copy-last row per lag, the copy-last errors are those of the test videos, and the header names the threads.
(A 2-step network's output hardly depends on its inputs, so how far swapped given frames move it is not checked.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_run import run_benchmark, table_rows, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.api import load_run
from video_diffusion_lab.metrics.revisit import signed_range

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_conditioning_benchmark_on_a_tiny_maze_run(tmp_path: Path) -> None:
    run = tmp_path / "fdm"
    vdiff.run(["fit", "--config", str(tiny_config(run, method="maze", trainer={"max_steps": 2}))])
    out = tmp_path / "out"
    args = ["--run", f"fdm={run}", "--videos", "2", "--window", "4", "--given", "2", "--starts", "0", "6"]
    done = run_benchmark("maze_conditioning.py", *args, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    text = (out / "maze_conditioning.md").read_text()
    assert text.startswith("# OMP_NUM_THREADS=1 .venv/bin/python benchmarks/maze_conditioning.py"), "its threads"
    rows = table_rows(text)
    assert rows["run"] == ["lag 1", "lag 2", "moved by other given frames"]
    assert rows["copy last given frame"][-1] == "0"
    assert len(rows["fdm (2 steps)"]) == 3 and float(rows["fdm (2 steps)"][-1]) >= 0

    # The copy-last row, computed here from the same test videos: frame given - 1 held, scored at lags 1 and 2.
    video = signed_range(load_run(run, **{"data.init_args.test_size": 2}).batch("test", 2)["video"])
    for lag in (1, 2):
        error = sum(float((video[:, s + 1 + lag] - video[:, s + 1]).abs().mean()) for s in (0, 6)) / 2 * 127.5
        assert float(rows["copy last given frame"][lag - 1]) == pytest.approx(error, abs=0.06)
