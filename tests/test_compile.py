"""``callbacks.CompileNetwork``: ``torch.compile`` of every method's network on the CPU, the same training losses as
eager, and checkpoints whose keys are those of an eager run (no ``_orig_mod.``), loadable both ways.

Every method is compiled with the ``aot_eager`` backend (TorchDynamo's graph capture and AOTAutograd's forward and
backward graphs: what depends on the networks' code) and VDM also with ``inductor`` (generated C++ kernels, the
default backend). Compiling takes 15 s (aot_eager) to 2-3 min (inductor) per network on one thread of the 2-core
development machine, so these tests are marked ``slow`` and left out of the default run: ``pytest -m slow``.

RVD's forward breaks the graph once, at its data-dependent choice of the latent frames to denoise; the part after the
break is compiled as a graph of its own (AOTAutograd's traceback of the boolean index-put, printed as a warning
while it traces, is expected)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from tests.tiny_methods import METHODS, tiny_loader, tiny_module
from video_diffusion_lab.callbacks import CompileNetwork

pytestmark = pytest.mark.usefixtures("single_thread")


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def fit(method: str, tmp_path, callbacks: list[pl.Callback]) -> tuple[pl.LightningModule, list[float], pl.Trainer]:
    pl.seed_everything(0, verbose=False)
    module = tiny_module(method)
    recorder = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder, *callbacks],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=tiny_loader(method))
    return module, recorder.losses, trainer


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "backend"),
    [*((method, "aot_eager") for method in METHODS), pytest.param("vdm", "inductor", marks=pytest.mark.timeout(900))],
)
def test_compiled_network_trains_like_eager_and_checkpoints_keep_their_keys(method: str, backend: str, tmp_path):
    torch._dynamo.reset()
    eager, eager_losses, _ = fit(method, tmp_path / "eager", [])
    compiled, losses, trainer = fit(method, tmp_path / "compiled", [CompileNetwork(backend=backend)])
    assert compiled.network._compiled_call_impl is not None and eager.network._compiled_call_impl is None
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-6)

    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert not [key for key in state if "_orig_mod" in key]
    assert state.keys() == eager.state_dict().keys()
    eager.load_state_dict(state)  # a compiled run's checkpoint loads into an eager module (strict) and back
    compiled.load_state_dict(eager.state_dict())


def test_unknown_mode_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match="CompileNetwork.mode"):
        CompileNetwork(mode="fastest")
