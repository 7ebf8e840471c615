"""What the network predicts, and the conversions between the three choices.

With z = alpha x + sigma eps and alpha^2 + sigma^2 = 1 (variance preserving):
    eps-prediction (DDPM):            x = (z - sigma eps) / alpha
    x0-prediction:                    x
    v-prediction (Salimans & Ho):     v = alpha eps - sigma x,  so  x = alpha z - sigma v,  eps = sigma z + alpha v
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Prediction = Literal["eps", "x0", "v"]
PREDICTIONS = ("eps", "x0", "v")


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: unknown parameterization {prediction!r}; choose one of {PREDICTIONS}")


def x0_from_eps(z: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (z - sigma * eps) / alpha


def eps_from_x0(z: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (z - alpha * x0) / sigma


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return alpha * eps - sigma * x0


def x0_from_v(z: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return alpha * z - sigma * v


def eps_from_v(z: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return sigma * z + alpha * v


def x0_from_output(output: Tensor, z: Tensor, alpha: Tensor, sigma: Tensor, prediction: Prediction) -> Tensor:
    """The clean-data estimate implied by a network output in the given parameterization."""
    if prediction == "eps":
        return x0_from_eps(z, output, alpha, sigma)
    if prediction == "x0":
        return output
    if prediction == "v":
        return x0_from_v(z, output, alpha, sigma)
    check_prediction(prediction)
    raise AssertionError  # unreachable


def training_target(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, prediction: Prediction) -> Tensor:
    """What the network should output for data x0 noised with eps."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_x0_eps(x0, eps, alpha, sigma)
    check_prediction(prediction)
    raise AssertionError  # unreachable
