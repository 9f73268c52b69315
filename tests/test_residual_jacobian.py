"""Problem.residual and Problem.jacobian: loss == ||r||^2, the closed-form Jacobian against
torch.func.jacrev of the residual, its Taylor rates, and Gauss-Newton/trf on a PDE problem."""

import numpy as np
import pytest
import torch
from torch.func import jacrev

from invfem.optim import minimize
from invfem.optim.least_squares import least_squares
from invfem.problems import (heat, heat_fem, heat_residual, neural_ode, poisson, poisson_fem, poisson_nonlinear_fem,
                             poisson_residual, regression, torus)


def write_csv(path, rows, header):
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return str(path)


def _points_file(tmp_path):
    points = [[-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [-0.3, -0.6], [-0.7, 0.1]]
    return write_csv(tmp_path / "obs.csv", [[x, y, 0.02 * i, 0.01 * (1 + i)] for i, (x, y) in enumerate(points)],
                     "x,y,u,sigma")


def _heat_file(tmp_path):
    dt = 0.01
    rows = [[k * dt, x, y, 0.01 * k] for k in (2, 3) for x, y in ((0.3, 0.3), (0.6, 0.2), (0.5, 0.8))]
    return write_csv(tmp_path / "heat.csv", rows, "t,x,y,u")


LSHAPE = {"mesh": {"lshape": {"refine": 1}}, "network": {"widths": [4]}}
CASES = {
    "poisson_fem": lambda tmp: poisson_fem.make_problem(n=4, widths=(2, 5, 5, 1)),
    "poisson_fem_p2_observed_half_noisy": lambda tmp: poisson_fem.make_problem(n=3, order=2, widths=(2, 5, 1),
                                                                               observed=0.5, noise=0.01),
    "poisson_residual": lambda tmp: poisson_residual.make_problem(n=4, widths=(1, 5, 5, 1)),
    "heat_residual": lambda tmp: heat_residual.make_problem(n=4, widths=(2, 5, 1), n_steps=3),
    "heat_fem": lambda tmp: heat_fem.make_problem(n=4, widths=(2, 5, 1), n_steps=3, observe_every=2),
    "poisson_nonlinear_fem": lambda tmp: poisson_nonlinear_fem.make_problem(n=4, widths=(1, 5, 1), observed=0.6),
    "regression": lambda tmp: regression.make_problem(n_points=30, widths=(1, 6, 6, 1)),
    "torus": lambda tmp: torus.make_problem(0),
    "neural_ode": lambda tmp: neural_ode.make_problem(0, n_samples=5, hidden=4),
    # config-built: point observations with sigma per row, regularization, P1 and P2, kappa(u), heat series
    "config_poisson_points_sigma_alpha_p1": lambda tmp: poisson.make_problem(
        0, **LSHAPE, observations={"file": _points_file(tmp)}, regularization=0.05),
    "config_poisson_points_sigma_alpha_p2": lambda tmp: poisson.make_problem(
        0, **LSHAPE, order=2, observations={"file": _points_file(tmp)}, regularization=0.05),
    "config_poisson_kappa_of_u_synthetic_sigma": lambda tmp: poisson.make_problem(
        0, **LSHAPE, coefficient_input="u", source=5, regularization=0.01,
        observations={"synthetic": {"kappa_true": "1 + u^2", "at": 12, "noise": 1e-3, "noise_kind": "gaussian"}}),
    "config_heat_time_series_sigma_alpha": lambda tmp: heat.make_problem(
        0, mesh={"unit_square": {"n": 4}}, dt=0.01, n_steps=3, network={"widths": [4]},
        observations={"file": _heat_file(tmp), "sigma": 0.01}, regularization=0.02),
    "config_heat_residual_p2": lambda tmp: heat.make_problem(
        0, mesh={"unit_square": {"n": 3}}, order=2, dt=0.01, n_steps=2, network={"widths": [3]}, loss="residual",
        observations={"synthetic": {"kappa_true": "1 + x", "at": "nodes"}}),
}


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path):
    problem = CASES[request.param](tmp_path)
    theta = problem.theta0 + 0.01 * torch.randn(problem.n_params, generator=torch.Generator().manual_seed(1))
    return request.param, problem, theta


def test_loss_is_the_squared_residual_and_the_jacobian_is_exact(case):
    name, p, theta = case
    assert p.residual is not None and p.jacobian is not None, name
    r = p.residual(theta)
    assert float(p.loss(theta)) == pytest.approx(float(r @ r), rel=1e-13)
    jac = p.jacobian(theta)
    reference = jacrev(p.residual)(theta)
    assert jac.shape == (r.numel(), p.n_params)
    assert float(torch.linalg.norm(jac - reference) / torch.linalg.norm(reference)) < 1e-10
    # Taylor: ||r(theta + h d) - r(theta)|| is O(h), minus h J d is O(h^2)
    d = torch.randn(p.n_params, generator=torch.Generator().manual_seed(2))
    d /= d.norm()
    steps = 1e-3 * 0.5 ** np.arange(4)
    first, second = [], []
    for h in steps:
        diff = p.residual(theta + h * d) - r
        first.append(float(diff.norm()))
        second.append(float((diff - h * (jac @ d)).norm()))
    rates = lambda e: np.log(np.array(e[1:]) / np.array(e[:-1])) / np.log(0.5)
    assert np.all(rates(first) > 0.95) and np.all(rates(second) > 1.9), (name, rates(first), rates(second))


def test_factored_network_jacobian_path_is_exact(case, monkeypatch):
    """With the size threshold at 0 every coefficient problem whose outer loss offers
    jacobian_coupling takes the factored path (the one large meshes take): still jacrev's J."""
    import invfem.structured

    name, p, theta = case
    monkeypatch.setattr(invfem.structured, "FACTORED_JACOBIAN_BYTES", 0)
    reference = jacrev(p.residual)(theta)
    jac = p.jacobian(theta)
    assert float(torch.linalg.norm(jac - reference) / torch.linalg.norm(reference)) < 1e-10, name


def test_trf_and_gauss_newton_fit_poisson_fem_to_round_off():
    p = poisson_fem.make_problem(n=4, widths=(2, 6, 6, 1))
    fit = least_squares(p.residual, p.theta0, jac=p.jacobian, ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=200)
    assert 2 * fit.cost < 1e-16 * float(p.loss(p.theta0))
    assert fit.cost == pytest.approx(0.5 * float(p.loss(fit.x)), rel=1e-8, abs=1e-30)
    same = minimize(p.loss, p.theta0, method="trf", residual=p.residual, residual_jacobian=p.jacobian,
                    options={"ftol": 1e-15, "xtol": 1e-15, "gtol": 1e-15, "max_nfev": 200})
    assert same.success and same.fun < 1e-16 * float(p.loss(p.theta0))   # f = ||r||^2
    gn = minimize(p.loss, p.theta0, method="trust-exact", hess="gauss-newton", residual=p.residual,
                  residual_jacobian=p.jacobian, options={"maxiter": 200})
    assert gn.fun < 1e-12 * float(p.loss(p.theta0))


@pytest.mark.parametrize("alpha", [0.0, 0.03])
def test_jacobian_operator_is_the_jacobian_and_trf_lsmr_runs_on_its_factors(alpha):
    """Residual minimisation: the Jacobian as sparse L times the network's J (with the prior's
    ridge rows): J v, J^T w and the matrix equal the dense Jacobian; trf's LSMR step on the
    factors takes the dense run's steps; every other method forms the matrix."""
    from invfem.linalg.jacobian import JacobianOperator, as_dense

    p = heat_residual.make_problem(n=4, widths=(2, 6, 1), n_steps=3)
    if alpha:
        p = poisson.make_problem(0, mesh={"unit_square": {"n": 4}}, network={"widths": [5]}, loss="residual",
                                 observations={"synthetic": {"kappa_true": "1 + x", "at": "nodes"}},
                                 regularization=alpha)
    theta = p.theta0 + 0.01
    op = p.solver_jacobian(theta)
    assert isinstance(op, JacobianOperator)
    dense = p.jacobian(theta)
    assert op.shape == tuple(dense.shape)
    gen = torch.Generator().manual_seed(0)
    v, w = torch.randn(dense.shape[1], generator=gen), torch.randn(dense.shape[0], generator=gen)
    scale = float(dense.abs().max())
    assert float((op.matvec(v) - dense @ v).abs().max()) < 1e-13 * scale * dense.shape[1]
    assert float((op.rmatvec(w) - dense.T @ w).abs().max()) < 1e-13 * scale * dense.shape[0]
    assert float((as_dense(op) - dense).abs().max()) < 1e-14 * scale
    # LSMR to round-off: inexact solves would differ by their tolerance, not by the factoring
    opts = {"tr_solver": "lsmr", "tr_options": {"atol": 1e-15, "btol": 1e-15}, "maxiter": 8, "ftol": 0, "xtol": 0,
            "gtol": 0}
    factored = minimize(p.loss, p.theta0, method="trf", options=opts, residual=p.residual,
                        residual_jacobian=p.solver_jacobian)
    formed = minimize(p.loss, p.theta0, method="trf", options=opts, residual=p.residual, residual_jacobian=p.jacobian)
    assert factored.nit == formed.nit == 8
    np.testing.assert_allclose(factored.x.numpy(), formed.x.numpy(), rtol=1e-9, atol=1e-11)
    assert factored.fun < 0.5 * float(p.loss(p.theta0))
    # a method that needs the matrix gets it: the exact subproblem, the Gauss-Newton trust region
    exact = minimize(p.loss, p.theta0, method="trf", options={"maxiter": 3}, residual=p.residual,
                     residual_jacobian=p.solver_jacobian)
    assert exact.nit == 3 and exact.fun < float(p.loss(p.theta0))
    gn = minimize(p.loss, p.theta0, method="trust-exact", hess="gauss-newton", options={"maxiter": 3},
                  residual=p.residual, residual_jacobian=p.solver_jacobian)
    assert gn.fun < float(p.loss(p.theta0))
