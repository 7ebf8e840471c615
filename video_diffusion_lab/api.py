"""A run folder in a notebook: load its model and data, then sample, predict or evaluate in a few lines.

    from video_diffusion_lab import load_run

    run = load_run("runs/ramvid_shapes")               # config_fit.yaml + checkpoints/last.ckpt
    batch = run.batch("test", size=4)                    # clips from the run's data module, as training saw them
    samples = run.sample(batch)                          # the configured task: (B, T, C, H, W) in [-1, 1]
    video = run.predict(batch["video"][:, :2], length=16)  # continue two given frames to 16
    report = run.evaluate(limit_batches=2)               # what `vdiff test` writes to metrics_test.json

``load_run`` builds exactly what ``vdiff`` builds from the run's ``config_fit.yaml`` (every override of the original
command included), so the numbers match the command line's; ``overrides`` change fields as on the command line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from torch import Tensor
from torch.utils.data import default_collate

from video_diffusion_lab.diffusion import FrameMask, task_mask

# Keys of a saved subcommand config that only the subcommand parsers take.
SUBCOMMAND_KEYS = ("ckpt_path", "untrained", "weights_only")


def _build(config: dict[str, Any], overrides: dict[str, Any]) -> Any:
    from video_diffusion_lab import cli

    args = ["--config", yaml.safe_dump(config)]
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return cli.run(args, subcommand=False)


def _read_config(path: Path) -> dict[str, Any]:
    from video_diffusion_lab import cli

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config; a run folder keeps the config of its fit as config_fit.yaml")
    text = cli.translate_legacy_config(str(path)) or path.read_text()
    config = yaml.safe_load(text)
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path}: not a vdiff config (no 'model' section)")
    return {key: value for key, value in config.items() if key not in SUBCOMMAND_KEYS}


@dataclass
class Run:
    """A trained run: its model (weights loaded, in eval mode), data module and the files they came from."""

    folder: Path
    config: dict[str, Any]
    checkpoint: Path | None
    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> Run:
        self.model.to(device)
        return self

    def batch(self, split: str = "test", size: int = 4, start: int = 0) -> dict[str, Tensor]:
        """Clips ``start .. start + size - 1`` of a split of the run's data module, collated as its loaders do."""
        dataset = self.datamodule.dataset(split)
        if start + size > len(dataset):
            raise ValueError(
                f"batch: the {split} split has {len(dataset)} clips, asked for {start}..{start + size - 1}"
            )
        return default_collate([dataset[i] for i in range(start, start + size)])

    def task_mask(self, batch: dict[str, Tensor]) -> FrameMask:
        """The frame mask of the configured task (``model.task``) for ``batch``."""
        return self.model.eval_mask(self.model.eval_batch(batch))

    @torch.no_grad()
    def sample(self, batch: dict[str, Tensor], mask: FrameMask | None = None, *, seed: int = 0) -> Tensor:
        """The configured task on ``batch`` (or ``mask``'s frames generated given the others): (B, T, C, H, W) in
        [-1, 1], the given frames as they were. The noise of clip i comes from (seed, its data set index), as in
        ``vdiff test``."""
        batch = self.model.eval_batch(batch)
        video = batch["video"].to(self.device)
        if video.dtype == torch.uint8:
            video = video.float() / 127.5 - 1
        mask = self.model.eval_mask(batch) if mask is None else mask
        noise = self._noise(batch, seed)
        return self.model.sample(video, mask.to(self.device), generator=noise, **self._conditioning(batch))

    @torch.no_grad()
    def predict(self, given: Tensor, length: int, *, seed: int = 0, **cond: Tensor) -> Tensor:
        """A video of ``length`` frames that continues the frames ``given`` (B, K, C, H, W) in [-1, 1]; longer than one
        pass it is generated stage by stage with the configured rollout scheme."""
        batch_size, num_given = given.shape[:2]
        if length <= num_given:
            raise ValueError(f"predict: length must exceed the {num_given} given frames, got {length}")
        video = torch.zeros(batch_size, length, *given.shape[2:], dtype=torch.float32)
        video[:, :num_given] = given.float().cpu()
        mask = task_mask("prediction", batch_size, length, num_given)
        generator = torch.Generator().manual_seed(seed)
        if length <= self.model.frames_per_pass:
            return self.model.sample(video.to(self.device), mask.to(self.device), generator=generator, **cond)
        return self.model.sample_long(video, num_given, generator=generator, **cond)

    def evaluate(
        self, output_dir: str | Path | None = None, limit_batches: int | None = None, **overrides: Any
    ) -> dict:
        """``vdiff test`` of this run's checkpoint: the report (``metrics_test.json``, written to ``output_dir``,
        default the run folder) as a dict. ``overrides`` are config fields, e.g. ``{"model.init_args.sampling.steps":
        20}`` given as ``**{...}``."""
        from video_diffusion_lab import cli

        if self.checkpoint is None:
            raise FileNotFoundError(f"evaluate: the run {self.folder} has no checkpoint")
        out = Path(output_dir) if output_dir is not None else self.folder
        args = [
            "test",
            "--config",
            yaml.safe_dump(self.config),
            "--ckpt_path",
            str(self.checkpoint),
            "--trainer.default_root_dir",
            str(out),
            "--trainer.logger",
            "false",
        ]
        if limit_batches is not None:
            args += ["--trainer.limit_test_batches", str(limit_batches)]
        for key, value in {**self.overrides, **overrides}.items():
            args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
        cli.run(args)
        return json.loads((out / "metrics_test.json").read_text())

    def _noise(self, batch: dict[str, Tensor], seed: int) -> Any:
        if "index" in batch:
            from video_diffusion_lab.diffusion.noise import NoiseSource

            return NoiseSource.for_clips(seed, batch["index"].long(), 1)
        return torch.Generator().manual_seed(seed)

    def _conditioning(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.to(self.device) for k, v in self.model.conditioning(batch).items()}


def load_run(
    folder: str | Path,
    checkpoint: str | Path | None = "last",
    *,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> Run:
    """The run in ``folder``: its ``config_fit.yaml`` built as ``vdiff`` builds it, with the weights of ``checkpoint``
    ("last": the newest ``checkpoints/last*.ckpt``; a path; None: the initial weights). ``overrides`` are config
    fields as on the command line, dotted: ``load_run(dir, **{"model.init_args.sampling.steps": 20})``."""
    from video_diffusion_lab.checkpoints import (
        check_checkpoint_matches,
        find_last_checkpoint,
        load_checkpoint,
    )

    folder = Path(folder)
    config = _read_config(folder / "config_fit.yaml")
    config.setdefault("trainer", {})["logger"] = False
    config["trainer"]["default_root_dir"] = str(folder)
    built = _build(config, overrides)
    model, datamodule = built.model, built.datamodule
    path: Path | None = None
    if checkpoint == "last":
        path = find_last_checkpoint([folder / "checkpoints"])
        if path is None:
            raise FileNotFoundError(
                f"load_run: no last*.ckpt in {folder / 'checkpoints'}; pass checkpoint=FILE or None"
            )
    elif checkpoint is not None:
        path = Path(checkpoint)
    if path is not None:
        check_checkpoint_matches(path, model, config["model"]["class_path"])
        state = load_checkpoint(path)
        model.load_state_dict(state["state_dict"])
        model.on_load_checkpoint(state)
    datamodule.setup("test")
    return Run(folder, config, path, model.eval().to(device), datamodule, overrides)
