"""eps / x0 / v: conversions, round trips on the VP circle, training targets and a hand-computed case."""

from __future__ import annotations

import pytest
import torch

from video_diffusion_lab.diffusion.parameterization import (
    PREDICTIONS,
    check_prediction,
    eps_from_v,
    eps_from_x0,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_output,
    x0_from_v,
)


@pytest.fixture
def case():
    """x0, eps, per-example (alpha, sigma) on the VP circle away from its ends, and z."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    angle = torch.rand(6, generator=g, dtype=torch.float64) * 1.4 + 0.08  # in (0.08, 1.48) rad
    alpha = angle.cos().reshape(-1, 1, 1, 1, 1)
    sigma = angle.sin().reshape(-1, 1, 1, 1, 1)
    z = alpha * x0 + sigma * eps
    return x0, eps, alpha, sigma, z


def test_case_is_on_vp_circle(case):
    _, _, alpha, sigma, _ = case
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha))


def test_eps_x0_round_trip(case):
    x0, eps, alpha, sigma, z = case
    torch.testing.assert_close(x0_from_eps(z, eps, alpha, sigma), x0)
    torch.testing.assert_close(eps_from_x0(z, x0, alpha, sigma), eps)


def test_v_round_trip(case):
    x0, eps, alpha, sigma, z = case
    v = v_from_x0_eps(x0, eps, alpha, sigma)
    torch.testing.assert_close(x0_from_v(z, v, alpha, sigma), x0)
    torch.testing.assert_close(eps_from_v(z, v, alpha, sigma), eps)


def test_v_is_the_velocity_on_the_circle(case):
    # z = cos(phi) x0 + sin(phi) eps  =>  dz/dphi = -sin(phi) x0 + cos(phi) eps = v.
    x0, eps, alpha, sigma, _ = case
    v = v_from_x0_eps(x0, eps, alpha, sigma)
    torch.testing.assert_close(v, -sigma * x0 + alpha * eps)
    # |v|^2 + |z|^2 = |x0|^2 + |eps|^2 (a rotation)
    z = alpha * x0 + sigma * eps
    torch.testing.assert_close(v**2 + z**2, x0**2 + eps**2)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_target_then_x0_from_output_recovers_x0(case, prediction):
    x0, eps, alpha, sigma, z = case
    target = training_target(x0, eps, alpha, sigma, prediction)
    torch.testing.assert_close(x0_from_output(target, z, alpha, sigma, prediction), x0)


def test_training_targets_are_the_named_quantities(case):
    x0, eps, alpha, sigma, _ = case
    assert training_target(x0, eps, alpha, sigma, "eps") is eps
    assert training_target(x0, eps, alpha, sigma, "x0") is x0
    torch.testing.assert_close(training_target(x0, eps, alpha, sigma, "v"), alpha * eps - sigma * x0)


def test_hand_computed_case():
    alpha, sigma = torch.tensor(0.6), torch.tensor(0.8)
    x0, eps = torch.tensor(1.0), torch.tensor(0.5)
    z = alpha * x0 + sigma * eps
    assert z.item() == pytest.approx(1.0)
    v = training_target(x0, eps, alpha, sigma, "v")
    assert v.item() == pytest.approx(0.6 * 0.5 - 0.8 * 1.0)  # -0.5
    assert x0_from_output(v, z, alpha, sigma, "v").item() == pytest.approx(1.0)
    assert eps_from_v(z, v, alpha, sigma).item() == pytest.approx(0.5)
    assert x0_from_output(eps, z, alpha, sigma, "eps").item() == pytest.approx(1.0)
    assert eps_from_x0(z, x0, alpha, sigma).item() == pytest.approx(0.5)
    # A wrong eps moves x0 by -sigma / alpha per unit of error.
    assert x0_from_eps(z, eps + 0.3, alpha, sigma).item() == pytest.approx(1.0 - 0.8 / 0.6 * 0.3)


def test_x0_prediction_is_passed_through(case):
    x0, _, alpha, sigma, z = case
    assert x0_from_output(x0, z, alpha, sigma, "x0") is x0


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_check_prediction_accepts_known(prediction):
    check_prediction(prediction)


def test_unknown_prediction_errors(case):
    x0, eps, alpha, sigma, z = case
    with pytest.raises(ValueError, match="prediction"):
        check_prediction("score")
    with pytest.raises(ValueError, match="prediction"):
        x0_from_output(x0, z, alpha, sigma, "score")
    with pytest.raises(ValueError, match="prediction"):
        training_target(x0, eps, alpha, sigma, "score")
