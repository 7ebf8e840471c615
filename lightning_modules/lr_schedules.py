"""Learning-rate schedules the papers use that torch does not ship, for ``lr_scheduler`` in the configs.

The module steps a scheduler once per optimiser step (``interval: step``), so ``step`` below counts optimiser steps.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class StepDecayLR(LambdaLR):
    """lr = base_lr * max(gamma ** n, min_factor): the first decay at ``start_step`` (default: ``step_size``), then
    one every ``step_size`` steps, i.e. n = 0 before ``start_step`` and n = (step - start_step) // step_size + 1 after.

    RVD's released trainer (``config.py``: lr 5e-5, decay 0.8, minf 0.2, scheduler_checkpoint_step 100000;
    ``trainer.py`` calls ``scheduler.step()`` on EVERY step once step >= 100000) is
    ``StepDecayLR(start_step=100000, step_size=1, gamma=0.8, min_factor=0.2)``: 5e-5 for 100k steps, then the floor
    1e-5 within 8 steps. A decay every 100k steps is ``start_step=100000, step_size=100000``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        step_size: int,
        gamma: float,
        min_factor: float = 0.0,
        start_step: int | None = None,
    ):
        if step_size < 1:
            raise ValueError(f"lr_scheduler.step_size: must be >= 1, got {step_size}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"lr_scheduler.gamma: must be in (0, 1], got {gamma}")
        if not 0.0 <= min_factor <= 1.0:
            raise ValueError(f"lr_scheduler.min_factor: must be in [0, 1], got {min_factor}")
        self.step_size, self.gamma, self.min_factor = step_size, gamma, min_factor
        self.start_step = step_size if start_step is None else start_step
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        decays = 0 if step < self.start_step else (step - self.start_step) // self.step_size + 1
        return max(self.gamma**decays, self.min_factor)
