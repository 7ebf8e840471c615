"""The configuration groups: nested YAML for every method, checks that name the field, the injected optimiser and
learning-rate schedule, the EMA schedule and the weights evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.tiny_run import REPO, tiny_config
from video_diffusion_lab import cli as vdiff
from video_diffusion_lab.groups import (
    ClipShape,
    DiffusionConfig,
    EMAConfig,
    RolloutConfig,
    SamplingConfig,
    TaskConfig,
)
from video_diffusion_lab.lightning_modules import FDM, RVD, VDM, RaMViD
from video_diffusion_lab.lightning_modules.ema import EMA
from video_diffusion_lab.lightning_modules.lr_schedules import StepDecayLR

GROUPS = ("clip:", "network:", "diffusion:", "sampling:", "task:", "ema:", "optimizer:", "lr_scheduler:")


@pytest.mark.parametrize("name", ["ramvid_shapes", "fdm_shapes", "vdm_shapes", "rvd_shapes", "fdm_carla", "vdm_bair"])
def test_print_config_shows_the_groups(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        vdiff.run(["fit", "--config", str(REPO / "experiments" / f"{name}.yaml"), "--print_config"])
    printed = capsys.readouterr().out
    model = printed[printed.index("\nmodel:") : printed.index("\ndata:")]
    for group in GROUPS:
        assert f"\n    {group}" in model, f"{name}: group {group} missing from the printed model config"
    for flat in ("\n    num_frames:", "\n    lr:", "\n    sampling_steps:", "\n    ema_decay:"):
        assert flat not in model, f"{name}: {flat.strip()} is still a flat model argument"


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: ClipShape(num_frames=0), "clip.num_frames"),
        (lambda: DiffusionConfig(schedule="quadratic"), "diffusion.schedule"),
        (lambda: DiffusionConfig(prediction="score"), "diffusion.prediction"),
        (lambda: SamplingConfig(sampler="euler_a"), "sampling.sampler"),
        (lambda: SamplingConfig(steps=0), "sampling.steps"),
        (lambda: SamplingConfig(grid="cosine"), "sampling.grid"),
        (lambda: SamplingConfig(gamma=1.5), "sampling.gamma"),
        (lambda: SamplingConfig(pc_delta=0.0), "sampling.pc_delta"),
        (lambda: SamplingConfig(second_order_max=0.0), "sampling.second_order_max"),
        (lambda: TaskConfig(task="outpainting"), "task.task"),
        (lambda: RolloutConfig(scheme="hierarchy_9"), "rollout.scheme"),
        (lambda: EMAConfig(decay=1.0), "ema.decay"),
        (lambda: EMAConfig(every_n_steps=0), "ema.every_n_steps"),
        (lambda: EMAConfig(evaluate="best"), "ema.evaluate"),
    ],
)
def test_groups_check_themselves_naming_the_field(build, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build()


def test_every_sampler_option_is_reachable_from_the_sampling_group() -> None:
    options = SamplingConfig(
        sampler="predictor_corrector", gamma=0.3, pc_delta=0.05, corrector_steps=2, eta=0.5
    ).options()
    assert options == {
        "eta": 0.5,
        "gamma": 0.3,
        "delta": 0.05,
        "corrector_steps": 2,
        "s_churn": 0.0,
        "second_order_max": 80.0,
        "sde_eta": 1.0,
        "rho": 7.0,
        "sigma_max": None,
    }
    from video_diffusion_lab.diffusion.samplers import sampling_options

    assert set(options) == set(sampling_options()), "every option of every sampler and grid has a config field"


# ---------------------------------------------------------------------------------------- optimiser and schedule
def test_optimizer_and_lr_scheduler_from_the_command_line(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"limit_val_batches": 0})
    cli = vdiff.run(
        [
            "fit",
            "--config",
            str(config),
            "--model.init_args.optimizer",
            "torch.optim.Adam",
            "--model.init_args.optimizer.lr",
            "0.01",
            "--model.init_args.optimizer.betas",
            "[0.9, 0.99]",
            "--model.init_args.lr_scheduler",
            "video_diffusion_lab.lightning_modules.lr_schedules.StepDecayLR",
            "--model.init_args.lr_scheduler.step_size",
            "2",
            "--model.init_args.lr_scheduler.gamma",
            "0.5",
        ]
    )
    (optimizer,) = cli.trainer.optimizers
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["betas"] == (0.9, 0.99)
    # 4 optimiser steps, the scheduler steps with each: decays after steps 2 and 4 -> 0.01 * 0.5 ** 2.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in cli.model.network.parameters()}, "only the network is trained, not the EMA copy"
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.Adam"
    assert checkpoint["lr_schedulers"][0]["last_epoch"] == 4


def test_optimizer_from_yaml_and_checkpoint_reload(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path,
        trainer={"limit_val_batches": 0},
        model={"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05, "momentum": 0.5}}},
    )
    cli = vdiff.run(["fit", "--config", str(config)])
    (optimizer,) = cli.trainer.optimizers
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.5
    model = RaMViD.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert model.clip == ClipShape(num_frames=4, image_size=8, channels=3)
    assert model.sampling.steps == 3 and model.task.num_given == 2
    for name, tensor in cli.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_step_decay_matches_the_rvd_release() -> None:
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([parameter], lr=5e-5)
    schedule = StepDecayLR(optimizer, step_size=1, gamma=0.8, min_factor=0.2, start_step=100_000)
    assert schedule.factor(99_999) == 1.0
    assert schedule.factor(100_000) == pytest.approx(0.8)
    assert schedule.factor(100_007) == pytest.approx(0.2)  # 0.8 ** 8 < 0.2: the floor
    every = StepDecayLR(optimizer, step_size=100_000, gamma=0.8, min_factor=0.2, start_step=100_000)
    assert [every.factor(s) for s in (0, 100_000, 199_999, 200_000)] == pytest.approx([1.0, 0.8, 0.8, 0.64])


# ------------------------------------------------------------------------------------------------------------ EMA
def test_ema_every_n_steps_from_a_start_step() -> None:
    network = nn.Linear(1, 1, bias=False)
    ema = EMA(network, EMAConfig(decay=0.5, every_n_steps=2, start_step=4))
    history = []
    for step in range(8):
        network.weight.data.fill_(float(step + 1))  # the weights after optimiser step `step`
        ema.update(network)
        history.append(float(ema.module.weight))
    # step 0: copy (before start); 1: skipped; 2: copy; 3: skipped; 4: 0.5*3 + 0.5*5; 6: 0.5*4 + 0.5*7
    assert history == [1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 5.5, 5.5]
    assert int(ema.num_updates) == 8


def test_evaluated_weights_follow_the_ema_field() -> None:
    tiny = dict(clip=ClipShape(num_frames=4, image_size=8), task=TaskConfig(num_given=2))
    network = dict(model_channels=8, channel_mult=(1, 2), predictor_mult=(1, 2))
    from video_diffusion_lab.lightning_modules.rvd import RVDNetworkConfig

    raw = RVD(network=RVDNetworkConfig(**network), ema=EMAConfig(evaluate="raw"), **tiny)
    assert raw.denoiser().network is raw.network and raw.denoiser(use_ema=True).network is raw.ema.module
    averaged = RVD(network=RVDNetworkConfig(**network), ema=EMAConfig(evaluate="ema"), **tiny)
    assert averaged.denoiser().network is averaged.ema.module


def test_methods_list_only_their_own_fields_besides_the_groups() -> None:
    import inspect

    shared = {
        "self",
        "clip",
        "network",
        "diffusion",
        "sampling",
        "task",
        "rollout",
        "ema",
        "evaluation",
        "optimizer",
        "lr_scheduler",
    }
    own = {
        RaMViD: {"p_uncond", "max_given"},
        FDM: {"padding", "windows"},
        RVD: {"residual_scale", "loss_type", "train_warmup", "predictor_loss_weight"},
        VDM: {
            "num_image_frames",
            "cond_vectors",
            "cond_drop_prob",
            "guidance_weight",
            "conditioning_method",
            "reconstruction_weight",
            "spatial_factor",
        },
    }
    for method, fields in own.items():
        assert set(inspect.signature(method.__init__).parameters) - shared == fields, method.__name__
