"""Mixed precision from the trainer (``--trainer.precision bf16-mixed`` / ``16-mixed``) for every method, with the
diffusion math around the network in float32.

What runs on a CPU: Lightning 2.6's ``Trainer(accelerator="cpu", precision="bf16-mixed")`` (``torch.autocast("cpu",
torch.bfloat16)`` around the steps), tested here by training and validating every method. ``precision="16-mixed"``
on a CPU is replaced by Lightning itself with ``bf16-mixed`` (its warning: "AMP with fp16 is not supported on CPU"),
so an fp16 trainer run with its ``GradScaler`` needs a GPU and is not tested here; the fp16 arithmetic of every
method is, through the same ``MixedPrecision`` plugin context entered directly (``torch.autocast`` supports float16
on CPUs), for the training loss.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision

from tests.tiny_methods import METHODS, tiny_batch, tiny_loader, tiny_module
from video_diffusion_lab.diffusion import Denoiser, FrameMask, build_schedule, sample

HALF = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# Relative difference of the training loss from fp32's allowed per precision (measured: at most 4e-4 for bf16,
# 2e-5 for fp16, on these tiny random-weight networks).
LOSS_RTOL = {"bf16-mixed": 2e-3, "16-mixed": 3e-4}


pytestmark = pytest.mark.usefixtures("single_thread")


def output_dtypes(network: torch.nn.Module) -> list[torch.dtype]:
    """Records the dtype of every forward output of ``network``."""
    seen: list[torch.dtype] = []
    network.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("precision", sorted(HALF))
@pytest.mark.parametrize("method", METHODS)
def test_training_loss_under_autocast_is_float32_and_close_to_fp32(method: str, precision: str) -> None:
    module = tiny_module(method)
    batch = tiny_batch(frames=6 if method == "fdm" else 4)
    torch.manual_seed(3)
    reference = module.training_loss(batch)
    seen = output_dtypes(module.network.denoiser if method == "rvd" else module.network)
    torch.manual_seed(3)  # the same times, noise and masks
    with MixedPrecision(precision, "cpu").forward_context():
        loss = module.training_loss(batch)
    assert seen and all(dtype == HALF[precision] for dtype in seen), f"the network ran in {set(seen)}"
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=LOSS_RTOL[precision], atol=0)


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.samples: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach())

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.samples.append(outputs["samples"])


def test_16_mixed_on_cpu_is_bf16_in_lightning() -> None:
    """Why the fp16 trainer runs are GPU-only: on a CPU Lightning swaps 16-mixed for bf16-mixed, with a warning."""
    with pytest.warns(UserWarning, match="fp16 is not supported on CPU"):
        trainer = pl.Trainer(accelerator="cpu", precision="16-mixed", logger=False)
    assert trainer.precision_plugin.precision == "bf16-mixed"


@pytest.mark.parametrize("method", METHODS)
def test_fit_and_validate_with_trainer_bf16_mixed(method: str, tmp_path) -> None:
    """A few optimiser steps and a validation pass (sampling through the guided / rollout samplers) under
    ``precision="bf16-mixed"``: the network runs in bf16; losses and samples are finite float32, parameters stay
    float32 and change."""
    module = tiny_module(method)
    seen = output_dtypes(module.network.denoiser if method == "rvd" else module.network)
    before = [p.detach().clone() for p in module.network.parameters()]
    recorder = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="bf16-mixed",
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        default_root_dir=tmp_path,
    )
    assert isinstance(trainer.precision_plugin, MixedPrecision)
    trainer.fit(module, train_dataloaders=tiny_loader(method), val_dataloaders=tiny_loader("ramvid", 1))
    trainer.validate(module, tiny_loader("ramvid", 1), verbose=False)
    assert len(recorder.losses) == 2
    assert seen and all(dtype == torch.bfloat16 for dtype in seen), f"the network did not run in bf16: {set(seen)}"
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in recorder.losses)
    assert recorder.samples and all(s.dtype == torch.float32 and torch.isfinite(s).all() for s in recorder.samples)
    assert all(p.dtype == torch.float32 for p in module.network.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(module.network.parameters(), before))


class HalfOutput(torch.nn.Module):
    """A stand-in network: a fixed function of (z, time) rounded to half precision, as under autocast; with
    ``upcast`` the same rounded values returned in float32."""

    def __init__(self, dtype: torch.dtype, upcast: bool = False):
        super().__init__()
        self.dtype, self.upcast = dtype, upcast

    def forward(self, z, time, mask, **cond):
        out = (0.7 * z + 0.01 * time.reshape(-1, 1, 1, 1, 1)).to(self.dtype)
        return out.float() if self.upcast else out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loss_reduction_and_sampler_arithmetic_run_in_float32(dtype: torch.dtype) -> None:
    """With a network that answers in half precision, the loss and sampled clips are exactly what float32 arithmetic
    on the same (rounded) network outputs gives: no reduction, conversion or sampler step is done in half."""
    torch.manual_seed(0)
    x0 = torch.rand(2, 4, 3, 8, 8) * 2 - 1
    mask = FrameMask.from_observed(torch.tensor([[True, False, False, False]] * 2), torch.arange(4).expand(2, 4))
    schedule = build_schedule("cosine", 100)
    half, rounded = Denoiser(HalfOutput(dtype), schedule, "v"), Denoiser(HalfOutput(dtype, upcast=True), schedule, "v")
    t, noise = torch.tensor([10, 90]), torch.randn_like(x0)
    loss = half.loss(x0, mask, t=t, noise=noise)
    assert loss.dtype == torch.float32
    # float32 reference: the target, the error and its reduction over latent frames, written out
    alpha, sigma = (c.reshape(-1, 1, 1, 1, 1) for c in schedule.alpha_sigma(t))
    z = mask.keep_observed(alpha * x0 + sigma * noise, x0)
    output = HalfOutput(dtype, upcast=True)(z, schedule.network_time(t), mask)
    error = ((output - (alpha * noise - sigma * x0)) ** 2).flatten(2).mean(dim=2)
    expected = ((error * mask.latent).sum(1) / mask.latent.sum(1)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)

    for sampler in ("ddim", "ddpm", "heun", "dpmpp_3m_sde"):
        a = sample(half, x0, mask, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(1))
        b = sample(rounded, x0, mask, sampler=sampler, steps=5, generator=torch.Generator().manual_seed(1))
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
