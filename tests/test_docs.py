"""The documentation: the README is a front page whose links and results table are current, the mkdocs site builds
with ``--strict`` and shows every recorded result, and the tutorial's method trains and samples through ``vdiff``.
(The commands in all of them are checked by tests/test_readme_commands.py.)"""

from __future__ import annotations

import html
import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_run import REPO
from video_diffusion_lab import cli as vdiff

README = REPO / "README.md"
DOCS = REPO / "docs"
RESULTS = REPO / "benchmarks" / "results"
RESULT_MARKER = re.compile(r"^<!-- result: (\S+) -->$", flags=re.M)


def table_rows(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("|")]


def page_text(page: Path) -> str:
    """What a built page shows: its HTML without tags (code highlighting splits code into many tags)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_the_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_the_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text()):
        if not re.match(r"[a-z]+://", target):
            assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_the_readme_results_table_is_the_recorded_one() -> None:
    """The README cannot include files, so it copies the method table: the copy must equal the recorded file."""
    recorded = table_rows((RESULTS / "method_table.md").read_text())
    readme = table_rows(README.read_text())
    assert recorded and any(readme[i : i + len(recorded)] == recorded for i in range(len(readme))), (
        "README's results table differs from benchmarks/results/method_table.md: copy the file's table"
    )


def test_every_recorded_result_is_in_the_docs() -> None:
    shown = {match for page in DOCS.rglob("*.md") for match in RESULT_MARKER.findall(page.read_text())}
    for result in sorted(RESULTS.iterdir()):
        name = result.relative_to(REPO).as_posix()
        assert name in shown, f"{name} is on no docs page: add <!-- result: {name} --> where it belongs"


def test_the_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e '.[docs]'")
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,  # snippets and result paths are relative to the repository root
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    results = (site / "results" / "index.html").read_text()
    for row in table_rows((RESULTS / "method_table.md").read_text())[2:]:  # the rows below the header
        cells = "".join(f"<td>{cell.strip()}</td>" for cell in row.strip("|").split("|"))
        assert cells in re.sub(r">\s+<", "><", results), f"the results page lacks the method table's row {row}"
    for page in site.rglob("*.html"):  # every include was made (none left as text, none mangled by a formatter)
        assert not re.search(r"--8\s*<\s*--", page_text(page)), f"{page.relative_to(site)} shows a snippet marker"
    tutorial = page_text(site / "tutorial_new_method" / "index.html")
    assert "class TinyVideoNet" in tutorial and "def training_loss" in tutorial


def test_the_tutorial_method_trains_and_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tutorial's commands, with its config shrunk to seconds: 2 training steps, ``test`` samples the test clips
    and writes the report, and the sampling script continues videos from the checkpoint without Lightning."""
    monkeypatch.syspath_prepend(str(DOCS / "examples"))  # PYTHONPATH=docs/examples, as the tutorial runs it
    for module in ("tiny_method", "tiny_sampling"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    config = str(DOCS / "examples" / "tiny_method.yaml")
    tiny = {
        "trainer.default_root_dir": str(tmp_path),
        "trainer.logger": "false",
        "trainer.max_steps": "2",
        "trainer.enable_progress_bar": "false",
        "model.init_args.sampling.steps": "2",
        "model.init_args.width": "8",
        "data.init_args.train_size": "4",
        "data.init_args.val_size": "2",
        "data.init_args.test_size": "2",
        "data.init_args.batch_size": "2",
    }
    tiny = [word for name, value in tiny.items() for word in (f"--{name}", value)]
    vdiff.run(["fit", "--config", config, *tiny])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    vdiff.run(["test", "--config", config, *tiny, "--ckpt_path", "last"])
    report = json.loads((tmp_path / "metrics_test.json").read_text())
    assert report["model"]["psnr_mean"] is not None and math.isfinite(report["model"]["psnr_mean"])
    assert report["model"]["psnr_mean"] > 0

    tiny_sampling = importlib.import_module("tiny_sampling")
    video = tiny_sampling.continue_videos(str(tmp_path / "checkpoints" / "last.ckpt"), frames=12, steps=2)
    assert video.shape == (2, 12, 3, 16, 16) and torch.isfinite(video).all()
