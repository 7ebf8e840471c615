"""LitData is installed apart (it declares torchvision, which would replace the CPU torch): without it the CLI and the
file-based data modules load, and vdiff-prepare stops with the install command instead of a traceback."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_LITDATA = "import sys; sys.modules['litdata'] = None\n"


def run_without_litdata(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_LITDATA + code], capture_output=True, text=True, timeout=120)


def test_the_cli_and_data_modules_load_without_litdata() -> None:
    done = run_without_litdata(
        "from video_diffusion_lab import cli\n"
        "from video_diffusion_lab.datamodules import *\n"
        "import video_diffusion_lab.datamodules as d\n"
        "print('streaming' if hasattr(d, 'StreamingVideoDataModule') else 'file-based only')"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "file-based only"


def test_vdiff_prepare_without_litdata_says_how_to_install_it() -> None:
    done = run_without_litdata("from video_diffusion_lab import prepare")
    assert done.returncode != 0
    assert "pip install --no-deps litdata" in done.stderr
