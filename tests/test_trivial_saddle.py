"""Reference 002: the trivial saddle of a regression network, and the diagnostics that show it."""

import math

import torch

from invfem.diagnostics import basis_functions, gradient_split, orthogonality, output_coefficients, trivial_verdict
from invfem.nn import MLP
from invfem.optim import minimize
from invfem.problems import regression


def _problem(seed):
    # 002's setting: a two-hidden-layer tanh network without output bias, Xavier initialisation,
    # a target with zero mean on an equally spaced grid (width, target and grid are our choice:
    # the extracted text lost them)
    return regression.make_problem(seed=seed, target="sin(pi*x)", n_points=101, interval=(-1, 1), sampling="grid",
                                   widths=(1, 10, 10, 1), output_bias=False, test_points=201)


def test_orthogonality_of_known_functions():
    x = torch.linspace(-1, 1, 201)
    basis = torch.stack([torch.ones_like(x), x, torch.cos(math.pi * x), torch.zeros_like(x)])
    o = orthogonality(basis, torch.sin(math.pi * x))
    assert o[0] < 1e-14 and o[2] < 1e-14 and o[3] == 0            # constant, cosine, zero: orthogonal
    expected = float((x * torch.sin(math.pi * x)).sum() / (x.norm() * torch.sin(math.pi * x).norm()))
    assert abs(float(o[1]) - expected) < 1e-14 and o[1] > 0.7
    assert abs(float(orthogonality(basis[1:2], -3 * x)[0]) - 1.0) < 1e-14


def test_basis_coefficients_and_gradient_split():
    p = _problem(0)
    mlp, theta = p.kappa, p.theta0 + 0.1 * torch.randn(p.n_params, generator=torch.Generator().manual_seed(1))
    x = p.info["points"]
    phi, c = basis_functions(mlp, theta, x[:, None]), output_coefficients(mlp, theta)
    assert phi.shape == (10, 101) and c.shape == (1, 10)
    torch.testing.assert_close(c @ phi, mlp(theta, x)[None], rtol=1e-13, atol=1e-13)   # f = sum_k c_k phi_k
    g = torch.func.grad(p.loss)(theta)
    split = gradient_split(p.loss, mlp, theta)
    assert abs(split["outer"] - float(g[-10:].norm())) < 1e-14
    assert abs(split["inner"] ** 2 + split["outer"] ** 2 - float(g.norm()) ** 2) < 1e-12
    with_bias = MLP([1, 4, 1])
    assert gradient_split(lambda t: with_bias(t, x[:, None]).sum(), with_bias, with_bias.init(0))["outer"] > 0


def test_damped_newton_ends_at_the_trivial_saddle_where_trust_exact_fits_the_target():
    """Relaxed LM-damped Newton (alpha 0.5, mu 1e-2) from seed 1 ends at f = 0, stationary, a
    saddle (lambda_min < 0). Here the basis itself vanishes (the first layer's weights go to
    ~1e-8) under nonzero coefficients — the other face of 002's trivial solution (zero
    coefficients on an orthogonal basis): either way every basis function is orthogonal to
    the target or gone. The trust region from the same seed: loss < 1e-6 of that, and no
    eigenvalue below -1e-6 lambda_max. (Plain newton-exact on this instance also reaches
    f = 0, at a degenerate point whose lambda_min is 0 to round-off.)"""
    p = _problem(1)
    x, y = p.info["points"], p.info["targets"]
    newton = minimize(p.loss, p.theta0, method="newton-damped", hess=p.hessian,
                      options={"alpha": 0.5, "mu": 1e-2, "maxiter": 300})
    verdict = trivial_verdict(p.loss, p.kappa, newton.x, x[:, None], y, p.hessian(newton.x))
    assert verdict["trivial"], verdict
    assert abs(newton.fun - float(torch.mean(y ** 2))) < 1e-10                       # the loss of f = 0
    phi = basis_functions(p.kappa, newton.x, x[:, None])
    rms = phi.norm(dim=1) / math.sqrt(x.shape[0])            # each basis function's size on the grid
    assert float((orthogonality(phi, y) * rms).max()) < 1e-6  # orthogonal to the target, or vanished
    split = gradient_split(p.loss, p.kappa, newton.x)
    assert split["inner"] < 1e-6 and split["outer"] < 1e-6
    trust = minimize(p.loss, p.theta0, method="trust-exact", hess=p.hessian, options={"maxiter": 300})
    verdict = trivial_verdict(p.loss, p.kappa, trust.x, x[:, None], y, p.hessian(trust.x))
    assert trust.fun < 1e-6 * newton.fun and not verdict["trivial"]
    assert verdict["lambda_min"] >= -1e-6 * verdict["lambda_max"] and verdict["output_ratio"] > 0.99
