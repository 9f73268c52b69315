"""problems/neural_ode.py (reference 003): RK4 is 4th order; loss, HVPs and Hessians exact to second order."""

import math

import pytest
import torch

from invfem.derivatives import hessian, symmetry_error, taylor_test, value_and_grad
from invfem.errors import ConfigError
from invfem.problems import neural_ode
from invfem.structured import hessian_path


def test_rk4_is_fourth_order():
    lam = torch.tensor([[-1.0, 3.0], [-3.0, -1.0]])                   # u' = u lam: a damped rotation
    u0, times = torch.tensor([1.0, 0.5]), torch.linspace(0, 2, 5)
    exact = torch.stack([u0 @ torch.linalg.matrix_exp(lam * t) for t in times])
    errors = [float((neural_ode.rk4(lambda u: u @ lam, u0, times, s) - exact).abs().max()) for s in (4, 8, 16)]
    assert all(abs(math.log2(a / b) - 4) < 0.15 for a, b in zip(errors, errors[1:])), errors


def test_reference_003_setup():
    p = neural_ode.make_problem(seed=0)
    assert p.n_params == 252 and p.info["observed"].shape == (30, 2) and hessian_path(p).kind == "generic"
    torch.testing.assert_close(p.info["observed"][0], torch.tensor([2.0, 0.0]))
    assert float(p.info["times"][-1]) == 1.5 and float(p.loss(p.theta0)) > 0


def test_loss_derivatives_are_exact_to_second_order():
    p = neural_ode.make_problem(seed=1, n_samples=6, hidden=6, substeps=1, data_substeps=10)
    theta = p.theta0 + 0.1 * torch.randn(p.n_params, generator=torch.Generator().manual_seed(2))
    d = torch.randn(p.n_params, generator=torch.Generator().manual_seed(3))
    # the third-order remainder is small along d, so its rate reaches 3 only at the finer steps:
    # judge each order by its finest-step rate
    rates = taylor_test(p.loss, theta, d / d.norm(), h0=1e-2).rates[:, -1]
    assert rates[0] > 0.95 and rates[1] > 1.95 and rates[2] > 2.9, rates
    h = p.hessian(theta)
    assert symmetry_error(h) < 1e-12
    eps, cols = 1e-6, []                                            # central differences of the gradient
    for i in range(p.n_params):
        e = torch.zeros(p.n_params)
        e[i] = eps
        cols.append((value_and_grad(p.loss, theta + e)[1] - value_and_grad(p.loss, theta - e)[1]) / (2 * eps))
    fd = torch.stack(cols, dim=1)
    assert float((h - fd).abs().max()) < 1e-6 * max(1.0, float(h.abs().max()))
    torch.testing.assert_close(h, hessian(p.loss, theta), rtol=1e-12, atol=1e-12)


def test_neural_ode_bad_input():
    with pytest.raises(ConfigError, match="substeps must be an integer >= 1"):
        neural_ode.make_problem(substeps=0)
