"""The installed package owns one top-level name, ``video_diffusion_lab``, and lives beside PyPI's packages whose names
the pre-0.2 layout took (``diffusion``, ``networks``, ``callbacks``).

A fresh virtual environment gets the package built as a wheel (not editable) and the three neighbours (``--no-deps``);
its dependencies (torch, Lightning, ...) are borrowed from the test's own environment through a ``.pth`` file, so
nothing large is downloaded. Then ``vdiff fit`` runs from a folder outside the repository, and each neighbour's
import name resolves to its own files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.tiny_run import REPO, tiny_config

NEIGHBOURS = ("diffusion", "networks", "callbacks")


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # Dependencies from this environment, after the venv's own site-packages on sys.path.
    (purelib / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    try:
        run(python, "-m", "pip", "install", "-q", "--no-deps", "diffusion", "networks", "callbacks")
    except (AssertionError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"PyPI's neighbour packages could not be installed (no package registry?): {error}")
    run(python, "-m", "pip", "install", "-q", "--no-deps", REPO)
    return venv


def test_only_the_namespace_is_installed_at_the_top(fresh_venv: Path) -> None:
    python = fresh_venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    record = next(purelib.glob("video_diffusion_lab-*.dist-info")) / "RECORD"
    top = {line.split("/", 1)[0] for line in record.read_text().splitlines() if "/" in line}
    # Console scripts are recorded as ../../../bin/vdiff: outside site-packages, not import names.
    assert {name for name in top if not name.endswith(".dist-info") and name != ".."} == {"video_diffusion_lab"}


def test_neighbours_import_their_own_code(fresh_venv: Path, tmp_path: Path) -> None:
    python = fresh_venv / "bin" / "python"
    code = "import importlib.util as u, sys; print('\\n'.join(u.find_spec(n).origin for n in sys.argv[1:]))"
    origins = run(python, "-c", code, *NEIGHBOURS, cwd=tmp_path).stdout.split()
    for name, origin in zip(NEIGHBOURS, origins, strict=True):
        assert str(fresh_venv) in origin and f"/{name}/" in origin, f"{name} resolves to {origin}"
    ours = run(python, "-c", "import video_diffusion_lab.callbacks as c; print(c.__file__)", cwd=tmp_path).stdout
    assert str(fresh_venv) in ours and "video_diffusion_lab/callbacks/" in ours


def test_vdiff_fit_runs_from_the_installed_package(fresh_venv: Path, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run")
    run(fresh_venv / "bin" / "vdiff", "fit", "--config", config, cwd=tmp_path)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
