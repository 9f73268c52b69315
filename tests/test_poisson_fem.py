import pytest
import torch
from torch.func import jacrev

from invfem.derivatives import hessian, symmetry_error, taylor_test
from invfem.fem import DirichletSystem, load_vector, stiffness_map
from invfem.problems import poisson_fem


@pytest.fixture(scope="module")
def tiny():
    torch.set_default_dtype(torch.float64)
    return poisson_fem.make_problem(n=3, seed=1, widths=(2, 8, 8, 1))


def test_reference_defaults():
    p = poisson_fem.make_problem()
    assert p.info["n_dofs"] == 121 and p.info["n_elements"] == 200 and p.n_params == 921
    assert p.loss(p.theta0).ndim == 0 and float(p.loss(p.theta0)) > 0


def test_observations_are_the_fe_solution_of_the_true_coefficient():
    p = poisson_fem.make_problem(n=4)
    space, solve = p.info["space"], p.info["solve"]
    u = solve(poisson_fem.kappa_reference(space.quadrature_points))
    torch.testing.assert_close(u[p.info["observed_dofs"]], p.info["u_obs"], rtol=0, atol=0)
    assert float(u.min()) == 0.0 and float(u.max()) > 0.01  # f = 1 > 0, u = 0 on the boundary
    assert float(p.loss(p.theta0)) > 1e-6


def test_taylor_rates_of_the_full_loss(gen):
    p = poisson_fem.make_problem(n=6, seed=0)
    d = torch.randn(p.n_params, generator=gen)
    result = taylor_test(p.loss, p.theta0, d / d.norm(), h0=5e-2)
    r0, r1, r2 = result.min_rates
    assert r0 >= 0.95 and r1 >= 1.95 and r2 >= 2.95, result.rates


def _dense_loss(p):
    """The same loss with the sparse solve replaced by a dense torch.linalg.solve."""
    space = p.info["space"]
    stiff = stiffness_map(space)
    dsys = DirichletSystem.build(space, stiff.pattern)
    load = load_vector(space, lambda x, y: torch.ones_like(x))
    pts = space.quadrature_points
    u_ref = p.info["solve"](poisson_fem.kappa_reference(pts))
    obs = torch.as_tensor(space.free_dofs)

    def loss(theta):
        values = stiff.values(p.kappa(theta, pts))
        a = dsys.pattern.to_dense(dsys.condense_matrix(values))
        u = torch.linalg.solve(a, dsys.condense_rhs(values, load))
        return ((u - u_ref[obs]) ** 2).sum()
    return loss


def test_full_hessian_equals_dense_reference(tiny):
    dense = _dense_loss(tiny)
    theta = tiny.theta0
    torch.testing.assert_close(tiny.loss(theta), dense(theta), rtol=1e-12, atol=0)
    ref = torch.func.hessian(dense)(theta)
    h = hessian(tiny.loss, theta)
    assert torch.linalg.norm(h - ref) / torch.linalg.norm(ref) < 1e-8
    assert symmetry_error(h) < 1e-10
    scale = torch.linalg.norm(ref)
    for other in (torch.func.hessian(tiny.loss)(theta), jacrev(jacrev(tiny.loss))(theta),
                  torch.autograd.functional.hessian(tiny.loss, theta)):
        assert torch.linalg.norm(other - h) / scale < 1e-10


def test_structured_hessian_equals_generic_and_dense_reference(tiny):
    theta = tiny.theta0
    ref = torch.func.hessian(_dense_loss(tiny))(theta)
    h = tiny.hessian(theta)
    assert torch.linalg.norm(h - ref) / torch.linalg.norm(ref) < 1e-8
    assert torch.linalg.norm(h - hessian(tiny.loss, theta)) / torch.linalg.norm(ref) < 1e-10
    assert symmetry_error(h) < 1e-10
    solver = tiny.info["solver"]
    solver.clear()
    solver.stats.reset()
    tiny.hessian(theta)
    assert solver.stats.factorizations == 1
    # forward, adjoint, and ONE solve with min(P, Q) right-hand sides for the sensitivities
    n_rhs = min(tiny.n_params, tiny.info["n_quad"])
    assert solver.stats.solve_calls == 3 and solver.stats.rhs_solved == 2 + n_rhs


def test_full_hessian_uses_one_factorization(tiny):
    solver = tiny.info["solver"]
    solver.clear()
    solver.stats.reset()
    hessian(tiny.loss, tiny.theta0)
    assert solver.stats.factorizations == 1
    assert solver.stats.solve_calls == 4  # forward, tangent, adjoint, tangent of adjoint


def test_options_noise_and_partial_observation():
    clean = poisson_fem.make_problem(n=4)
    noisy = poisson_fem.make_problem(n=4, noise=0.1, observed=0.5)
    assert noisy.info["n_observed"] == 4 and clean.info["n_observed"] == 9
    assert float(noisy.loss(noisy.theta0)) != float(clean.loss(clean.theta0))
    with pytest.raises(ValueError, match="observed"):
        poisson_fem.make_problem(n=4, observed=0.0)
