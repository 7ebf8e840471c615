"""benchmarks/long_video_schemes.py as a user runs it, on tiny maze runs of FDM and RaMViD trained here: the table
has every row asked for with intervals and call counts, the pictures, the JSON and the W&B run are written, finished
rows come back from the cache, and a run whose test videos differ is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.tiny_run import run_benchmark, table_rows, tiny_config
from video_diffusion_lab import cli as vdiff

pytestmark = pytest.mark.usefixtures("single_thread")


def benchmark(*args: str) -> subprocess.CompletedProcess:
    return run_benchmark("long_video_schemes.py", *args)


def test_the_scheme_benchmark_on_tiny_maze_runs(tmp_path: Path) -> None:
    runs = {"fdm": tmp_path / "fdm", "ramvid": tmp_path / "ramvid"}
    vdiff.run(["fit", "--config", str(tiny_config(runs["fdm"], method="maze", trainer={"max_steps": 2}))])
    vdiff.run(["fit", "--config", str(tiny_config(runs["ramvid"], method="ramvid_maze", trainer={"max_steps": 2}))])
    out = tmp_path / "out"
    args = [
        *(f"--run={name}={folder}" for name, folder in runs.items()),
        *("--videos", "2", "--samples", "2", "--batch", "2", "--late", "4"),
        *("--schemes", "autoreg", "adaptive_hierarchy_2"),
        *("--samplers", "paper", "dpmpp", "--out", str(out), "--pictures", str(out), "--cache", str(out / "rows")),
    ]
    first = benchmark(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (out / "long_video_schemes.md").read_text()
    rows = table_rows(table.split("Colour error of walls seen only")[0])
    expected = [
        f"{name} [{sampler}]"
        for sampler in ("paper", "dpmpp")
        for name in ("fdm autoreg", "fdm adaptive_hierarchy_2", "ramvid autoreg")
    ]
    assert set(expected) | {"copy last frame [-]"} <= set(rows)
    for name in expected:
        paper_calls = int(rows[name.replace("[dpmpp]", "[paper]")][4])
        calls, as_paper = int(rows[name][4]), int(rows[name][5])
        assert calls > 0 and as_paper == paper_calls, name  # the same passes priced with the paper's sampler
        if "[dpmpp]" in name:
            assert calls < paper_calls, name
        assert "[" in rows[name][2], f"{name}: late PSNR has no interval"
    assert table.startswith("# OMP_NUM_THREADS=1 .venv/bin/python benchmarks/long_video_schemes.py"), "its threads"
    for picture in ("stages", "revisits", "lag"):
        assert (out / f"long_video_schemes_{picture}.png").stat().st_size > 1000
    assert (runs["fdm"] / "benchmark" / "long_video_schemes.json").exists()
    logged = list((runs["fdm"] / "benchmark" / "wandb").glob("offline-run-*/files/media/images/*.png"))
    assert len(logged) == 3, logged  # the pictures in an offline W&B run, for wandb sync

    again = benchmark(*args)  # every row from the cache, the same table
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(f"from {out / 'rows'}") == len(expected)
    assert (out / "long_video_schemes.md").read_text().split("\n", 2)[2] == table.split("\n", 2)[2]


def test_runs_on_other_test_videos_are_refused(tmp_path: Path) -> None:
    fdm, other = tmp_path / "fdm", tmp_path / "other"
    vdiff.run(["fit", "--config", str(tiny_config(fdm, method="maze", trainer={"max_steps": 1}))])
    config = tiny_config(other, method="ramvid_maze", data={"seed": 1}, trainer={"max_steps": 1})
    vdiff.run(["fit", "--config", str(config)])
    result = benchmark(f"--run=fdm={fdm}", f"--run=ramvid={other}", "--videos", "2", "--out", str(tmp_path))
    assert result.returncode != 0 and "test videos differ" in result.stderr
