"""Every ``vdiff`` command in the README parses as written: its config files exist and every flag names a real field
(``--print_config`` parses the whole command line, then prints instead of running). The embedded configs are also
run for real in tests/test_embedded_configs.py; this catches a renamed field or config anywhere in the README."""

from __future__ import annotations

import re
import shlex

import pytest

import vdiff
from tests.tiny_run import REPO

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("vdiff ") and line.split()[1] in SUBCOMMANDS:
                commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands_for_every_method() -> None:
    assert len(COMMANDS) >= 8
    for config in ("ramvid_shapes", "fdm_shapes", "vdm_shapes", "rvd_shapes"):
        assert any(f"experiments/{config}.yaml" in c for c in COMMANDS), f"no README command uses {config}.yaml"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = shlex.split(command)[1:]
    with pytest.raises(SystemExit) as exit_info:
        vdiff.run([*args, "--print_config"])
    printed = capsys.readouterr()
    assert exit_info.value.code in (0, None), f"{command}\n{printed.err[-2000:]}"
    assert "model:" in printed.out
