"""``torch.compile`` of a module's network, as a callback so that any config can switch it on.

    trainer:
      callbacks:
        - class_path: CompileNetwork
          init_args: {mode: default}

The network is compiled in place (``nn.Module.compile``), not wrapped (``torch.compile(network)`` would be an
``OptimizedModule`` holding it as ``_orig_mod``): parameter names, the state dict, checkpoints, the EMA update and
``load_from_checkpoint`` stay exactly as without compilation, and a checkpoint written by a compiled run loads into an
eager one and back.

What is compiled is the network's ``forward`` as the denoiser calls it in training (RVD: its residual denoiser; its
recurrent ``observe`` / ``teacher_forcing`` run eagerly). ``sampling`` compiles the EMA copy that evaluation samples
with too; sampling passes of another shape (the last, shorter batch, RVD's one-frame passes) compile once more.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch import nn

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompileNetwork(pl.Callback):
    """``pl_module.network.compile(...)`` at setup (and ``pl_module.ema.module`` with ``sampling``).

    mode, dynamic, fullgraph, backend: ``torch.compile``'s arguments (``dynamic=None``: static shapes first, dynamic
    after a shape changes).
    """

    def __init__(
        self,
        mode: str = "default",
        dynamic: bool | None = None,
        fullgraph: bool = False,
        backend: str = "inductor",
        sampling: bool = False,
    ):
        if mode not in COMPILE_MODES:
            raise ValueError(f"CompileNetwork.mode: choose one of {COMPILE_MODES}, got {mode!r}")
        self.options: dict[str, Any] = {"mode": mode, "dynamic": dynamic, "fullgraph": fullgraph, "backend": backend}
        self.sampling = sampling

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        network = getattr(pl_module, "network", None)
        if not isinstance(network, nn.Module):
            raise ValueError(f"CompileNetwork: {type(pl_module).__name__} has no `network` module to compile")
        targets = [network]
        if self.sampling:
            ema = getattr(pl_module, "ema", None)
            if ema is None:
                raise ValueError(f"CompileNetwork.sampling: {type(pl_module).__name__} has no `ema` copy to compile")
            targets.append(ema.module)
        for module in targets:
            if module._compiled_call_impl is None:  # once per module, however many stages run
                module.compile(**self.options)
