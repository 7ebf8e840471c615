"""Every command the documentation shows runs as written, as far as its arguments go: the README, every page under
docs/ and the usage lines in the comment headers of the configs (experiments/**/*.yaml, docs/examples/*.yaml).

- ``vdiff`` (also as ``python -m video_diffusion_lab.cli``, under torchrun or srun) parses the whole command line with
  ``--print_config``, which prints instead of running: the config files exist and every flag names a real field;
- the other console scripts (``vdiff-import``, ``vdiff-metrics``, ``vdiff-prepare``) and ``python benchmarks/*.py``
  run until their argparse parser has read the command line, and stop there;
- ``make`` targets exist in the Makefile;
- any other program must be one of EXTERNAL_PROGRAMS, so that a command of the project written in an unexpected form
  fails here instead of going unchecked.

Commands are read from ```bash blocks (continued by a trailing backslash or an open quote). Config headers write them
as ``# [Label:] vdiff ...``, continued by a trailing backslash or by a line that starts with ``--``, with remarks in
parentheses; there ``...`` stands for the header's own config. The embedded configs are also run for real in
tests/test_embedded_configs.py; this test catches a renamed option, field or config anywhere the docs show one.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.tiny_run import EXPERIMENTS, REPO
from video_diffusion_lab import cli as vdiff

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
CONFIGS = sorted(EXPERIMENTS.rglob("*.yaml")) + sorted((REPO / "docs" / "examples").glob("*.yaml"))
# The project's console scripts as installed, by name (vdiff-import -> video_diffusion_lab.import_cli:main).
CONSOLE_SCRIPTS = {e.name: e for e in entry_points(group="console_scripts") if e.module.startswith(vdiff.__package__)}
# Programs outside the project that the docs may show, and modules they run with `python -m`: not checked here.
EXTERNAL_PROGRAMS = {".", "cd", "export", "source", "git", "pip", "mkdocs", "ruff", "pytest", "wget", "tar", "wandb"}
EXTERNAL_PROGRAMS |= {"mkdir", "cp", "ls", "aws", "gsutil"}
EXTERNAL_MODULES = {"pip", "venv", "pytest", "mkdocs"}
# Placeholders that commands meant for "any model config" use, and the config this test puts in their place.
PLACEHOLDERS = {
    "experiments/<model>.yaml": "experiments/ramvid_shapes.yaml",
    "<method config>": "experiments/ramvid_shapes.yaml",
}
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass(frozen=True)
class Command:
    source: str  # "README.md:42"
    words: tuple[str, ...]  # the command line without environment assignments
    env: tuple[tuple[str, str], ...] = field(default=())

    def __str__(self) -> str:
        return " ".join(self.words)


def split_words(line: str) -> list[str]:
    """Shell words of ``line``: placeholders replaced, quotes resolved, ``#`` comments dropped; ValueError while a
    quote is open. (``<...>`` placeholders are not redirections here, so ``&&``, ``;`` and ``|`` separate commands
    only as words of their own.)"""
    for placeholder, value in PLACEHOLDERS.items():
        line = line.replace(placeholder, value)
    return shlex.split(line, comments=True)


def simple_commands(source: str, words: list[str]) -> Iterator[Command]:
    """The simple commands of a shell line (``a && b``: a, b), each with its leading ``VAR=value`` assignments apart."""
    current: list[str] = []
    for word in [*words, ";"]:
        if word not in SEPARATORS:
            current.append(word)
            continue
        env = []
        while current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]):
            env.append(tuple(current.pop(0).split("=", 1)))
        if current:
            current[0] = current[0].removeprefix(".venv/bin/")
            yield Command(source, tuple(current), tuple(env))
        current = []


def document_commands(path: Path) -> Iterator[Command]:
    """The commands of the ```bash blocks of a Markdown file."""
    name = path.relative_to(REPO).as_posix()
    text = path.read_text()
    for block in re.finditer(r"^[ \t]*```(?:bash|sh|shell)[ \t]*\n(.*?)^[ \t]*```", text, flags=re.S | re.M):
        first_line = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", None
        for offset, line in enumerate(block.group(1).splitlines()):
            start = first_line + offset if start is None else start
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            pending += line
            try:
                words = split_words(pending)
            except ValueError:  # an open quote: the argument goes on on the next line
                pending += "\n"
                continue
            yield from simple_commands(f"{name}:{start}", words)
            pending, start = "", None
        assert not pending.strip(), f"{name}:{start}: unterminated command {pending!r}"


HEADER_COMMAND = re.compile(r"^(?:[\w ,-]{1,40}:\s+)?(?P<command>(?:\w+=\S+\s+)*vdiff(?:-[a-z]+)?\s.*)$")
REMARK = re.compile(r"\s*\([^()]*\)")


def header_commands(path: Path) -> Iterator[Command]:
    """The usage lines of a config's leading comment block."""
    name = path.relative_to(REPO).as_posix()
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].strip())
    i = 0
    while i < len(header):
        match = HEADER_COMMAND.match(header[i])
        if match:
            start, command = i, match["command"]
            while i + 1 < len(header) and (command.rstrip().endswith("\\") or header[i + 1].startswith("--")):
                i += 1
                command = command.rstrip().removesuffix("\\") + " " + header[i]
            words = [
                w
                for word in split_words(REMARK.sub("", command))
                for w in (["--config", name] if word == "..." else [word])
            ]
            yield from simple_commands(f"{name}:{start + 1}", words)
        i += 1


def all_commands() -> list[Command]:
    found = [c for path in DOCUMENTS for c in document_commands(path)]
    found += [c for path in CONFIGS for c in header_commands(path)]
    unique: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], Command] = {}
    for command in found:
        unique.setdefault((command.words, command.env), command)
    return list(unique.values())


COMMANDS = all_commands()
# Config overlays that a documented `vdiff-import ... --out X.ckpt` writes as X.yaml (not in the repository).
IMPORTED_OVERLAYS = {
    c.words[c.words.index("--out") + 1].removesuffix(".ckpt") + ".yaml"
    for c in COMMANDS
    if c.words[0] == "vdiff-import" and "--out" in c.words
}


# ------------------------------------------------------------------------------------------------------- the checks
class ArgumentsParsed(Exception):
    """Raised by argparse's parse_args in place of returning: the command line was read, nothing runs."""


@pytest.fixture
def parse_only(monkeypatch: pytest.MonkeyPatch) -> None:
    parse_args = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        raise ArgumentsParsed(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)


def without_imported_overlays(args: tuple[str, ...]) -> list[str]:
    kept: list[str] = []
    for arg in args:
        if kept and kept[-1] == "--config" and arg in IMPORTED_OVERLAYS:
            kept.pop()
        else:
            kept.append(arg)
    return kept


def check_vdiff(args: tuple[str, ...], command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        vdiff.run([*without_imported_overlays(args), "--print_config"])
    printed = capsys.readouterr()
    assert exit_info.value.code in (0, None), f"{command.source}: {command}\n{printed.err[-3000:]}"
    assert "model:" in printed.out


def check_argparse(run: object, command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    """``run()`` must reach argparse's parse_args (patched by ``parse_only``) and get through it."""
    with pytest.raises((ArgumentsParsed, SystemExit)) as outcome:
        run()
    printed = capsys.readouterr()
    assert outcome.type is ArgumentsParsed, f"{command.source}: {command}\n{printed.err[-3000:]}"


def check_module(module: str, args: tuple[str, ...], command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m module args``: the vdiff CLI, or the module of another console script."""
    if module == "video_diffusion_lab.cli":
        return check_vdiff(args, command, capsys)
    scripts = [ep for ep in CONSOLE_SCRIPTS.values() if ep.module == module]
    assert scripts, f"{command.source}: {command}: `-m {module}` is not one of the project's commands"
    check_argparse(lambda: scripts[0].load()(list(args)), command, capsys)


def check_make(target: str, command: Command) -> None:
    targets = re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(), flags=re.M)
    assert target in targets, f"{command.source}: {command}: the Makefile has no target {target!r}"


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.source} {c.words[0]}" for c in COMMANDS])
@pytest.mark.usefixtures("parse_only")
def test_documented_command_runs_as_written(
    command: Command, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in command.env:
        if name == "PYTHONPATH":
            for folder in reversed(value.split(":")):
                monkeypatch.syspath_prepend(str(REPO / folder))
        monkeypatch.setenv(name, value)
    program, *args = command.words
    if program in ("python", "python3", "torchrun", "srun") and "-m" in args:
        module_at = args.index("-m") + 1
        if args[module_at] not in EXTERNAL_MODULES:
            check_module(args[module_at], tuple(args[module_at + 1 :]), command, capsys)
    elif program in ("python", "python3") and args and args[0].endswith(".py"):
        script = REPO / args[0]
        assert script.is_file(), f"{command.source}: {command}: no script {args[0]}"
        monkeypatch.setattr(sys, "argv", [str(script), *args[1:]])
        check_argparse(lambda: runpy.run_path(str(script), run_name="__main__"), command, capsys)
    elif program == "vdiff":
        check_vdiff(tuple(args), command, capsys)
    elif program in CONSOLE_SCRIPTS:
        check_argparse(lambda: CONSOLE_SCRIPTS[program].load()(args), command, capsys)
    elif program == "make":
        for target in args:
            check_make(target, command)
    else:
        assert program in EXTERNAL_PROGRAMS, (
            f"{command.source}: {command}: {program!r} is neither a command of the project that this test checks nor "
            "in EXTERNAL_PROGRAMS"
        )


def test_the_docs_show_a_command_for_every_config() -> None:
    used = {w for c in COMMANDS for w in c.words if w.endswith(".yaml")}
    for config in CONFIGS:
        assert config.relative_to(REPO).as_posix() in used, f"no documented command uses {config.relative_to(REPO)}"


def test_the_readme_shows_commands_of_every_kind() -> None:
    readme = {c.words[0] for c in COMMANDS if c.source.startswith("README.md:")}
    assert {"make", "vdiff", "pip", *CONSOLE_SCRIPTS} <= readme, sorted(readme)
