"""The paper configs against their specification, ``experiments/PAPERS.md``.

Every table row there names a key of the resolved config (``vdiff fit --config <config> --print_config``), the value
it must have and its source. Each config is resolved alone and with its protocol overlay on top; every row must hold
in both, so a config (or overlay) that departs from PAPERS.md fails here. ``global_batch`` is computed
(devices x num_nodes x batch_size x accumulate_grad_batches), and every training config's header states it as that
product; ``parameters`` is the network's parameter count built from the config on the meta device, against the
official count.
"""

from __future__ import annotations

import contextlib
import io
import re
from functools import cache
from typing import Any

import pytest
import torch
import yaml
from jsonargparse.typing import import_object
from pytorch_lightning.cli import instantiate_module

import video_diffusion_lab.lightning_modules.video_diffusion as video_diffusion
from tests.tiny_run import REPO
from video_diffusion_lab import cli as vdiff

PAPERS = REPO / "experiments" / "PAPERS.md"
PAPER_CONFIGS = (
    "experiments/fdm_carla.yaml",
    "experiments/fdm_carla_test.yaml",
    "experiments/ramvid_bair.yaml",
    "experiments/ramvid_kinetics600.yaml",
    "experiments/vdm_bair.yaml",
    "experiments/vdm_kinetics600.yaml",
    "experiments/rvd_bair.yaml",
    "experiments/rvd_bair_1to15.yaml",
    "experiments/rvd_128.yaml",
)
M = "model.init_args."
# Rows every paper config's table must have, so that a setting cannot leave the specification silently.
REQUIRED = (
    M + "sampling.sampler",
    M + "sampling.steps",
    M + "sampling.gamma",
    M + "task.num_given",
    M + "task.video_length",
    M + "ema.evaluate",
    "parameters",
)
REQUIRED_TRAINING = (
    M + "clip.num_frames",
    M + "clip.image_size",
    M + "network.model_channels",
    M + "network.channel_mult",
    M + "diffusion.schedule",
    M + "diffusion.prediction",
    M + "optimizer.class_path",
    M + "optimizer.init_args.lr",
    M + "ema.decay",
    "trainer.devices",
    "trainer.num_nodes",
    "data.init_args.batch_size",
    "trainer.accumulate_grad_batches",
    "global_batch",
    "trainer.max_steps",
)
REQUIRED_PROTOCOL = (M + "evaluation.num_samples", "trainer.limit_test_batches")
TRAINING_ONLY = {"experiments/fdm_carla.yaml"}  # its protocol is fdm_carla_test.yaml
PROTOCOL_ONLY = {"experiments/fdm_carla_test.yaml"}  # its model block is fdm_carla.yaml's (tested below)

# "Global batch 32 = 8 devices x 1 node x 2 clips x 2 accumulated" in a config's header comment
STATED_BATCH = re.compile(r"Global batch (\d+) = (\d+) devices? x (\d+) nodes? x (\d+) clips? x (\d+) accumulated")
SECTION = re.compile(r"^### `(experiments/[\w./-]+\.yaml)`\s*$")
OVERLAY = re.compile(r"^Protocol overlay: `(experiments/protocols/[\w./-]+\.yaml)`")
ROW = re.compile(r"^\|[^|]*\|\s*`([^`]+)`\s*\|\s*`([^`]*)`\s*\|")


def read_specification() -> dict[str, dict[str, Any]]:
    """{config: {"overlay": path or None, "rows": {key: value}}} from the tables of PAPERS.md."""
    spec: dict[str, dict[str, Any]] = {}
    current = None
    for line in PAPERS.read_text().splitlines():
        if line.startswith("#"):
            match = SECTION.match(line)
            current = match.group(1) if match else None
            if current is not None:
                assert current not in spec, f"PAPERS.md: two sections for {current}"
                spec[current] = {"overlay": None, "rows": {}}
            continue
        if current is None:
            continue
        if match := OVERLAY.match(line):
            spec[current]["overlay"] = match.group(1)
        elif match := ROW.match(line):
            key, value = match.groups()
            assert key not in spec[current]["rows"], f"PAPERS.md, {current}: {key} appears twice"
            spec[current]["rows"][key] = yaml.safe_load(value)
    return spec


SPEC = read_specification()


@cache
def resolved(*configs: str) -> dict[str, Any]:
    """The config as the CLI resolves it (defaults filled in), from ``--print_config``."""
    out = io.StringIO()
    args = ["fit"] + [a for config in configs for a in ("--config", str(REPO / config))] + ["--print_config"]
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        vdiff.run(args)
    return yaml.safe_load(out.getvalue())


def lookup(config: dict[str, Any], key: str) -> Any:
    if key == "global_batch":
        trainer = config["trainer"]
        return (
            trainer["devices"]
            * trainer["num_nodes"]
            * config["data"]["init_args"]["batch_size"]
            * trainer["accumulate_grad_batches"]
        )
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{key}: no {part!r} in the resolved config")
        value = value[part]
    return value


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        numbers = isinstance(actual, (int, float)) and isinstance(expected, (int, float))
        return numbers and actual == pytest.approx(expected)
    if isinstance(expected, list):
        return isinstance(actual, (list, tuple)) and len(actual) == len(expected) and all(map(same, actual, expected))
    return actual == expected


def test_every_paper_config_has_a_complete_table() -> None:
    assert set(SPEC) == set(PAPER_CONFIGS), "PAPERS.md must have one table per paper config, and only those"
    for config, section in SPEC.items():
        required = REQUIRED
        if config not in PROTOCOL_ONLY:
            required += REQUIRED_TRAINING
        if config not in TRAINING_ONLY:
            required += REQUIRED_PROTOCOL
        missing = [key for key in required if key not in section["rows"]]
        assert not missing, f"PAPERS.md, {config}: no row for {missing}"
        assert (REPO / config).is_file(), config
        if section["overlay"] is not None:
            assert (REPO / section["overlay"]).is_file(), section["overlay"]


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_config_and_its_protocol_overlay_match_the_table(config: str) -> None:
    section = SPEC[config]
    resolutions = {config: resolved(config)}
    if section["overlay"] is not None:
        resolutions[f"{config} + {section['overlay']}"] = resolved(config, section["overlay"])
    wrong = []
    for name, resolved_config in resolutions.items():
        for key, expected in section["rows"].items():
            if key == "parameters":
                continue
            actual = lookup(resolved_config, key)
            if not same(actual, expected):
                wrong.append(f"{name}: {key} is {actual!r}, PAPERS.md says {expected!r}")
    assert not wrong, "\n".join(wrong)


def network_parameters(config: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """The module built from the resolved config on the meta device (the 1.17B VDM allocates nothing); the noise
    schedule is built on the CPU, where its checks can read values."""
    build_schedule = video_diffusion.build_schedule

    def build_schedule_on_cpu(*args: Any, **kwargs: Any) -> Any:
        with torch.device("cpu"):
            return build_schedule(*args, **kwargs)

    monkeypatch.setattr(video_diffusion, "build_schedule", build_schedule_on_cpu)
    model = resolved(config)["model"]
    with torch.device("meta"):
        module = instantiate_module(import_object(model["class_path"]), model["init_args"])
    return sum(p.numel() for p in module.network.parameters())


@pytest.mark.parametrize("config", PAPER_CONFIGS)
def test_parameter_count_is_the_official_one(config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = SPEC[config]["rows"]["parameters"]
    assert network_parameters(config, monkeypatch) == expected, f"{config}: PAPERS.md's count is {expected:,}"


def test_fdm_protocol_config_evaluates_the_trained_model() -> None:
    train, test = resolved("experiments/fdm_carla.yaml")["model"], resolved("experiments/fdm_carla_test.yaml")["model"]
    assert train["class_path"] == test["class_path"]
    for group in ("clip", "network", "diffusion", "padding"):
        assert train["init_args"][group] == test["init_args"][group], f"fdm_carla_test.yaml: {group} differs"


@pytest.mark.parametrize("config", [c for c in PAPER_CONFIGS if "/rvd_" in c])
def test_rvd_learning_rate_follows_the_released_trainer(config: str) -> None:
    """The released trainer (modules/trainer.py:124-136) calls ``scheduler.step()`` on a LambdaLR with
    max(0.8 ** epoch, 0.2) before the optimiser step of every iteration s >= 100000; iteration s therefore uses
    5e-5 * max(0.8 ** (s - 99999), 0.2) from then on and 5e-5 before. Here the scheduler steps after every optimiser
    step, so optimiser step s uses factor(s)."""
    model = resolved(config)["model"]["init_args"]
    lr = model["optimizer"]["init_args"]["lr"]
    scheduler = model["lr_scheduler"]
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = import_object(scheduler["class_path"])(optimizer, **scheduler["init_args"])
    for step in [0, 1, 2000, 99_998, 99_999, *range(100_000, 100_012), 200_000, 999_999]:
        released = lr * (max(0.8 ** (step - 99_999), 0.2) if step >= 100_000 else 1.0)
        assert lr * schedule.factor(step) == pytest.approx(released), f"{config}: lr at step {step}"


@pytest.mark.parametrize(
    "config", sorted({*PAPER_CONFIGS, "experiments/carla_position_regressor.yaml"} - PROTOCOL_ONLY)
)
def test_header_states_the_global_batch_as_its_factors(config: str) -> None:
    """Every paper config that trains (and the CARLA regressor's) says "Global batch N = D devices x M node(s) x B
    clips x A accumulated" in its header, and the trainer and data blocks hold exactly those numbers, written out."""
    text = (REPO / config).read_text()
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    stated = STATED_BATCH.search(header)
    assert stated, f"{config}: the header must state 'Global batch N = D devices x M nodes x B clips x A accumulated'"
    total, devices, nodes, clips, accumulated = map(int, stated.groups())
    raw = yaml.safe_load(text)
    trainer, data = raw["trainer"], raw["data"]["init_args"]
    written = (
        trainer.get("devices"),
        trainer.get("num_nodes"),
        data.get("batch_size"),
        trainer.get("accumulate_grad_batches"),
    )
    assert written == (devices, nodes, clips, accumulated), f"{config}: the trainer / data blocks say {written}"
    assert total == devices * nodes * clips * accumulated, f"{config}: {devices} x {nodes} x {clips} x {accumulated}"
    if config in SPEC:
        assert total == SPEC[config]["rows"]["global_batch"], f"{config}: PAPERS.md's global batch differs"
