"""Every ``vdiff`` command in the README parses as written: its config files exist and every flag names a real field
(``--print_config`` parses the whole command line, then prints instead of running). The embedded configs are also
run for real in tests/test_embedded_configs.py; this catches a renamed field or config anywhere in the README."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.tiny_run import REPO
from video_diffusion_lab import cli as vdiff

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def readme_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        lines += [line.split("#", 1)[0].strip() for line in joined.splitlines()]
    return lines


def imported_overlays(lines: list[str]) -> set[str]:
    """The config overlays that the README's ``vdiff-import ... --out X.ckpt`` commands write (X.yaml)."""
    outputs = (re.search(r"--out\s+(\S+)\.ckpt", line) for line in lines if line.startswith("vdiff-import "))
    return {match.group(1) + ".yaml" for match in outputs if match}


LINES = readme_lines()
OVERLAYS = imported_overlays(LINES)
COMMANDS = [line for line in LINES if line.startswith("vdiff ") and line.split()[1] in SUBCOMMANDS]


def without_imported_overlays(args: list[str]) -> list[str]:
    """The arguments without ``--config X.yaml`` for overlays an earlier README command writes (not in the repo)."""
    kept, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--config" and i + 1 < len(args) and args[i + 1] in OVERLAYS:
            skip = True
            continue
        kept.append(arg)
    return kept


def test_the_readme_shows_commands_for_every_method() -> None:
    assert len(COMMANDS) >= 8
    for config in ("ramvid_shapes", "fdm_shapes", "vdm_shapes", "rvd_shapes"):
        assert any(f"experiments/{config}.yaml" in c for c in COMMANDS), f"no README command uses {config}.yaml"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = without_imported_overlays(shlex.split(command)[1:])
    with pytest.raises(SystemExit) as exit_info:
        vdiff.run([*args, "--print_config"])
    printed = capsys.readouterr()
    assert exit_info.value.code in (0, None), f"{command}\n{printed.err[-2000:]}"
    assert "model:" in printed.out
