"""Reference 000's diagnostics, each on a case with a known answer."""

import numpy as np
import pytest
import torch

from invfem.derivatives import hessian
from invfem.diagnostics import (activation_histograms, eigen_profiles, magnitudes, network_loss, saturation, spectrum,
                                step_angles, hidden_activations)
from invfem.nn import MLP
from invfem.problems import poisson


def test_spectrum_sign_counts_at_eps_lambda_max():
    h = torch.diag(torch.tensor([5.0, 1e-7, -2.0, 0.0, 3.0, -4e-6, -6e-6]))
    s = spectrum(h)                                   # cut = 1e-6 * 5 = 5e-6
    assert (s["n_positive"], s["n_negative"], s["n_zero"]) == (2, 2, 3)
    assert s["lambda_min"] == -2.0 and s["lambda_max"] == 5.0 and s["eigenvalues"] == sorted(s["eigenvalues"])
    assert spectrum(h, eps=1e-8)["n_negative"] == 3


def test_step_angles_of_steepest_descent_and_newton_steps(gen):
    a = torch.randn(6, 6, generator=gen)
    h = a @ a.T + 0.5 * torch.eye(6)                  # convex quadratic
    g = torch.randn(6, generator=gen)
    sd = step_angles(-0.3 * g, g, h)
    assert sd["cos_theta1"] == pytest.approx(1.0, abs=1e-14) and sd["cos_theta2"] < 1 - 1e-3
    newton = step_angles(-0.5 * torch.linalg.solve(h, g), g, h)
    assert newton["cos_theta2"] == pytest.approx(1.0, abs=1e-12) and not newton["indefinite"]
    # singular and indefinite: the pseudo-inverse Newton direction
    singular = step_angles(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.diag(torch.tensor([1.0, 0.0])))
    assert singular["cos_theta2"] == pytest.approx(1.0) and singular["singular"]
    assert step_angles(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]),
                       torch.diag(torch.tensor([1.0, -1.0])))["indefinite"]


def test_loss_along_the_extreme_eigenvectors_of_a_quadratic(gen):
    a = torch.randn(5, 5, generator=gen)
    h = a + a.T                                       # indefinite
    theta = torch.randn(5, generator=gen)
    loss = lambda t: 0.5 * (t - theta) @ h @ (t - theta)
    alphas = np.linspace(-1, 1, 9)
    out = eigen_profiles(loss, theta, h, alphas)
    lam = torch.linalg.eigvalsh(h)
    np.testing.assert_allclose(out["f_min"], 0.5 * float(lam[0]) * alphas**2, atol=1e-12)
    np.testing.assert_allclose(out["f_max"], 0.5 * float(lam[-1]) * alphas**2, atol=1e-12)


def test_saturation_of_a_net_with_chosen_weights():
    mlp = MLP([1, 2, 1])
    theta = torch.tensor([100.0, 1e-3, 0.0, 0.0, 1.0, 1.0, 0.0])    # W1 = (100, 1e-3)^T, b1 = 0, W2, b2
    acts = hidden_activations(mlp, theta, torch.tensor([[-1.0], [1.0], [0.5]]))
    assert saturation(mlp, acts) == pytest.approx(0.5)               # unit 1 saturated everywhere, unit 2 never
    hist = activation_histograms(mlp, theta, torch.tensor([0.5]), torch.tensor([[-1.0], [1.0], [0.5]]), bins=4)
    assert hist["saturation"] == pytest.approx(0.5) and sum(hist["all_points"][0]["counts"]) == 6
    assert hist["at_point"][0]["counts"] == [0, 0, 1, 1]             # tanh(50) in (0.5, 1], tanh(5e-4) in (0, 0.5]
    assert saturation(MLP([1, 2, 1], activation="gelu"), acts) is None


def test_weight_magnitude_cdf():
    mlp = MLP([2, 3, 1])
    theta = torch.arange(mlp.n_params, dtype=torch.float64) - 6
    m = magnitudes(mlp, theta)
    assert len(m["weights"]) == 6 + 3 and len(m["biases"]) == 3 + 1
    assert m["weights"] == sorted(m["weights"]) and m["weights_cdf"][-1] == 1.0 and m["biases_cdf"][0] == 0.25


def test_network_only_loss_is_zero_at_the_true_law_with_an_exact_hessian(gen):
    p = poisson.make_problem(0, mesh={"lshape": {"refine": 1}}, network={"widths": [], "positivity": None},
                             observations={"synthetic": {"kappa_true": "1 + 0.5*x - 0.25*y", "at": 5}})
    true = torch.tensor([0.5, -0.25, 1.0])
    l = network_loss(p, true)
    assert float(l(true)) < 1e-28
    theta = torch.randn(3, generator=gen)
    torch.testing.assert_close(l.hessian(theta), hessian(l, theta), rtol=1e-12, atol=1e-12)
