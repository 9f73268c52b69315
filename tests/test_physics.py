"""Nonlinear and time-dependent physics: the four problems of issue 4 and their solvers."""

import importlib
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from invfem.derivatives import hessian, symmetry_error, taylor_test
from invfem.errors import ConfigError, ConvergenceError, ShapeError, SingularMatrixError
from invfem.fem import FunctionSpace, unit_square
from invfem.fem.heat import HeatStepper
from invfem.fem.nonlinear import NonlinearPoisson

PROBLEMS = ("poisson_residual", "heat_residual", "poisson_nonlinear_fem", "heat_fem")


def tiny(name, **options):
    widths = (1, 4, 4, 1) if name.startswith("poisson") else (2, 4, 4, 1)
    extra = {"n_steps": 4} if name.startswith("heat") else {}
    if name.endswith("fem"):            # a solve needs kappa > 0: a positive output transform
        extra["positivity"] = "softplus"
    return importlib.import_module(f"invfem.problems.{name}").make_problem(n=3, widths=widths, **{**extra, **options})


@pytest.mark.parametrize("name", PROBLEMS)
def test_taylor_rates(name, gen):
    p = tiny(name)
    d = torch.randn(p.n_params, generator=gen)
    result = taylor_test(p.loss, p.theta0, d / d.norm(), h0=1e-2)
    assert result.passed(), result.min_rates
    assert min(result.min_rates[0], 2.0) >= 0.95 and result.min_rates[1] >= 1.95 and result.min_rates[2] >= 2.95


# ---------------------------------------------------------------------------------------
# dense references (tiny meshes, dense torch.linalg everywhere)
# ---------------------------------------------------------------------------------------

def _reference_poisson_residual(p):
    space = p.info["space"]
    from invfem.fem import stiffness_map
    stiff = stiffness_map(space)
    u_obs = p.info["u_obs"]
    free = space.free_index
    points = space.interpolate(u_obs)[:, None]
    # rebuild the noisy load exactly as the problem does, from its residual at theta0
    r0 = p.residual(p.theta0)
    k0 = stiff.pattern.to_dense(stiff.values(p.kappa(p.theta0, points).reshape(-1)))
    load = (k0 @ u_obs)[free] - r0

    def loss(theta):
        K = stiff.pattern.to_dense(stiff.values(p.kappa(theta, points).reshape(-1)))
        return (((K @ u_obs)[free] - load) ** 2).sum()
    return loss


def _reference_heat_residual(p):
    space = p.info["space"]
    from invfem.fem import mass_map, stiffness_map
    stiff, mass = stiffness_map(space), mass_map(space)
    free, dt = space.free_index, p.info["dt"]
    M = mass.pattern.to_dense(mass.values(torch.ones(space.n_quad)))[free]
    U = p.info["snapshots"]
    from invfem.fem import load_vector
    F = load_vector(space, lambda x, y: torch.ones_like(x))[free]        # f = 1

    def loss(theta):
        K = stiff.pattern.to_dense(stiff.values(p.kappa(theta, space.quadrature_points).reshape(-1)))[free]
        r = (U[1:] - U[:-1]) @ M.T / dt + U[1:] @ K.T - F
        return (r ** 2).sum()
    return loss


def _reference_heat_fem(p):
    space, stepper = p.info["space"], p.info["stepper"]
    free, dt = space.free_index, p.info["dt"]
    mass_dense = stepper.stiffness.pattern.to_dense(stepper.mass_values)[free][:, free]
    steps = p.info["observed_steps"]
    observed = _observed_heat(p)
    u0 = p.info["u0"][free]

    def loss(theta):
        kq = p.kappa(theta, space.quadrature_points).reshape(-1)
        K = stepper.stiffness.pattern.to_dense(stepper.stiffness.values(kq))[free][:, free]
        A = mass_dense + dt * K
        states, u = [u0], u0
        for k in range(stepper.n_steps):
            u = torch.linalg.solve(A, mass_dense @ u + dt * stepper.loads[k + 1])
            states.append(u)
        return ((torch.stack(states)[steps] - observed) ** 2).sum()
    return loss


def _observed_heat(p):
    # observations are the kappa_true trajectory (noise 0): recompute with a dense solve
    space, stepper = p.info["space"], p.info["stepper"]
    free, dt = space.free_index, p.info["dt"]
    M = stepper.stiffness.pattern.to_dense(stepper.mass_values)[free][:, free]
    K = stepper.stiffness.pattern.to_dense(stepper.stiffness.values(p.kappa_true(space.quadrature_points)))[free][:, free]
    u, states = p.info["u0"][free], [p.info["u0"][free]]
    for k in range(stepper.n_steps):
        u = torch.linalg.solve(M + dt * K, M @ u + dt * stepper.loads[k + 1])
        states.append(u)
    return torch.stack(states)[p.info["observed_steps"]]


def _reference_nonlinear(p):
    """Unrolled dense Newton: J from torch.func.jacrev of a dense residual, torch.linalg.solve."""
    space, pde = p.info["space"], p.info["pde"]
    free = space.free_index
    from invfem.fem import stiffness_map
    stiff = stiffness_map(space)
    F = pde.load[free]
    obs, u_obs = p.info["observed_dofs"], p.info["u_obs"]

    def residual(u_free, theta):
        u = space.expand(u_free)
        kq = p.kappa(theta, space.interpolate(u)[:, None]).reshape(-1)
        return (stiff.pattern.to_dense(stiff.values(kq)) @ u)[free] - F

    def loss(theta):
        u = torch.zeros(space.n_free)
        for _ in range(25):
            J = torch.func.jacrev(residual)(u, theta)
            u = u - torch.linalg.solve(J, residual(u, theta))
        return ((space.expand(u)[obs] - u_obs) ** 2).sum()
    return loss


REFERENCES = {"poisson_residual": _reference_poisson_residual, "heat_residual": _reference_heat_residual,
              "poisson_nonlinear_fem": _reference_nonlinear, "heat_fem": _reference_heat_fem}


@pytest.mark.parametrize("name", PROBLEMS)
def test_full_hessian_matches_dense_reference(name):
    p = tiny(name)
    reference = REFERENCES[name](p)
    theta = p.theta0
    assert float(reference(theta)) == pytest.approx(float(p.loss(theta)), rel=1e-10)
    h_ref = torch.autograd.functional.hessian(reference, theta)
    scale = h_ref.abs().max()
    candidates = {"generic": hessian(p.loss, theta), "torch.func.hessian": torch.func.hessian(p.loss)(theta),
                  "structured": p.hessian(theta)}
    assert p.hessian_kind == "structured"
    for label, h in candidates.items():
        assert float((h - h_ref).abs().max() / scale) < 1e-7, label
        assert symmetry_error(h) < 1e-12, label


# ---------------------------------------------------------------------------------------
# Newton on the quasi-linear problem
# ---------------------------------------------------------------------------------------

def test_newton_converges_quadratically():
    space = FunctionSpace(unit_square(8), 1)
    pde = NonlinearPoisson(space, lambda x, y: 10 * torch.ones_like(x))
    _, norms = pde.newton(lambda z: 1 + 2 * z[:, 0] ** 2)
    assert len(norms) >= 4 and norms[-1] <= 1e-12 * norms[0] + 1e-13
    # e_{k+1} <= C e_k^2 with a modest C once in the basin; linear convergence would make
    # the ratios r_{k+1}/r_k^2 blow up as r_k -> 0
    tail = [(a, b) for a, b in zip(norms, norms[1:]) if a < 0.5 and b > 1e-14]
    assert len(tail) >= 2
    assert all(b / a**2 < 1.0 for a, b in tail)
    assert norms[-1] / norms[-2] < 1e-4


def _l2_error(space, u_h, exact):
    xq = space.quadrature_points
    diff = space.interpolate(u_h) - exact(xq[:, 0], xq[:, 1])
    return float(torch.sqrt(space.integrate(diff**2)))


def _rates(errors):
    return [math.log2(a / b) for a, b in zip(errors, errors[1:])]


def test_nonlinear_poisson_manufactured_solution_converges_at_order_2():
    # u = sin(pi x) sin(pi y), kappa(u) = 1 + u^2, f = -div(kappa(u) grad u)
    def u_exact(x, y):
        return torch.sin(math.pi * x) * torch.sin(math.pi * y)

    def f(x, y):
        u = u_exact(x, y)
        grad2 = math.pi**2 * ((torch.cos(math.pi * x) * torch.sin(math.pi * y)) ** 2
                              + (torch.sin(math.pi * x) * torch.cos(math.pi * y)) ** 2)
        return -(2 * u * grad2 - 2 * math.pi**2 * u * (1 + u**2))

    errors = []
    for n in (8, 16, 32):
        space = FunctionSpace(unit_square(n), 1, intorder=4)
        u_h, _ = NonlinearPoisson(space, f).newton(lambda z: 1 + z[:, 0] ** 2)
        errors.append(_l2_error(space, u_h, u_exact))
    assert all(1.9 < r < 2.2 for r in _rates(errors)), (errors, _rates(errors))


# ---------------------------------------------------------------------------------------
# heat equation: rates in space and time, one factorization
# ---------------------------------------------------------------------------------------

def test_heat_manufactured_solution_converges_at_order_2_in_space():
    # u = (1 + t) sin(pi x) sin(pi y), kappa = 1 + x
    def u_exact(x, y, t=0.1):
        return (1 + t) * torch.sin(math.pi * x) * torch.sin(math.pi * y)

    def f(x, y, t):
        s = torch.sin(math.pi * x) * torch.sin(math.pi * y)
        div = -2 * math.pi**2 * (1 + x) * (1 + t) * s + math.pi * (1 + t) * torch.cos(math.pi * x) * torch.sin(math.pi * y)
        return s - div

    errors = []
    for n in (8, 16, 32):
        space = FunctionSpace(unit_square(n), 1, intorder=4)
        stepper = HeatStepper(space, 0.01, 10, scheme="crank-nicolson", f=f)
        xy = space.dof_coordinates
        u0 = u_exact(xy[:, 0], xy[:, 1], 0.0).index_fill(0, space.dirichlet_index, 0.0)
        states = stepper.trajectory(1 + space.quadrature_points[:, 0], u0)
        errors.append(_l2_error(space, states[-1], lambda x, y: u_exact(x, y, 0.1)))
    assert all(1.9 < r < 2.2 for r in _rates(errors)), (errors, _rates(errors))


@pytest.mark.parametrize("scheme,order", [("backward-euler", 1), ("crank-nicolson", 2)])
def test_heat_time_order_against_the_exact_semi_discrete_solution(scheme, order):
    space = FunctionSpace(unit_square(6), 1)
    kq = 1.0 + space.quadrature_points[:, 0]
    xy = space.dof_coordinates
    u0 = (torch.sin(math.pi * xy[:, 0]) * torch.sin(math.pi * xy[:, 1])).index_fill(0, space.dirichlet_index, 0.0)
    T, free = 0.2, space.free_index
    probe = HeatStepper(space, T, 1, f=1.0)
    K = probe.stiffness.pattern.to_dense(probe.stiffness.values(kq))[free][:, free].numpy()
    M = probe.stiffness.pattern.to_dense(probe.mass_values)[free][:, free].numpy()
    steady = np.linalg.solve(K, probe.loads[0].numpy())
    exact = steady + scipy.linalg.expm(-np.linalg.solve(M, K) * T) @ (u0[free].numpy() - steady)
    errors = []
    for n_steps in (16, 32, 64, 128):
        stepper = HeatStepper(space, T / n_steps, n_steps, scheme=scheme, f=1.0)
        errors.append(float(np.linalg.norm(stepper.trajectory(kq, u0)[-1][free].numpy() - exact)))
        assert stepper.system.solver.stats.factorizations == 1
    assert abs(_rates(errors)[-1] - order) < 0.1, (errors, _rates(errors))


def test_heat_fem_full_hessian_uses_one_factorization():
    p = tiny("heat_fem", scheme="crank-nicolson")
    solver = p.info["solver"]
    solver.clear()
    solver.stats.reset()
    h = p.hessian(p.theta0)
    assert solver.stats.factorizations == 1
    assert solver.stats.solve_calls > p.info["n_steps"]
    solver.stats.reset()
    hessian(p.loss, p.theta0)          # the generic batched HVP path: same matrix, cached
    assert solver.stats.factorizations == 0
    assert symmetry_error(h) < 1e-12


def test_nonlinear_fem_derivatives_solve_with_one_matrix():
    p = tiny("poisson_nonlinear_fem")
    solver = p.info["solver"]
    solver.clear()
    solver.stats.reset()
    hessian(p.loss, p.theta0)
    assert solver.stats.factorizations == 1


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------

def test_zero_coefficient_is_a_singular_matrix():
    space = FunctionSpace(unit_square(4), 1)
    pde = NonlinearPoisson(space, lambda x, y: torch.ones_like(x))
    with pytest.raises(SingularMatrixError):
        pde.newton(lambda z: 0.0 * z[:, 0])


def test_newton_that_does_not_converge_raises():
    space = FunctionSpace(unit_square(4), 1)
    with pytest.raises(ConvergenceError, match="did not converge in 2 iterations"):
        NonlinearPoisson(space, lambda x, y: 10 * torch.ones_like(x), maxiter=2).newton(lambda z: 1 + 2 * z[:, 0] ** 2)
    # kappa(u) = 1 - u turns negative where u > 1: no solution for a large source
    with pytest.raises(ConvergenceError):
        NonlinearPoisson(space, lambda x, y: 200 * torch.ones_like(x)).newton(lambda z: 1 - z[:, 0])


def test_snapshot_times_are_checked():
    p = tiny("heat_fem")
    space = p.info["space"]
    dt = p.info["dt"]
    values = torch.zeros(2, space.n_dofs)
    with pytest.raises(ConfigError, match="not on the step grid"):
        tiny("heat_fem", snapshots_given=([0.5 * dt, 2 * dt], values))
    with pytest.raises(ConfigError, match="strictly increasing"):
        tiny("heat_fem", snapshots_given=([2 * dt, dt], values))
    with pytest.raises(ConfigError, match=r"lie in \[0"):
        tiny("heat_fem", snapshots_given=([dt, 40 * dt], values))
    with pytest.raises(ShapeError, match="snapshot values"):
        tiny("heat_fem", snapshots_given=([dt, 2 * dt, 3 * dt], values))
    with pytest.raises(ConfigError, match="every step"):
        tiny("heat_residual", snapshots_given=([0, dt, 2 * dt], torch.zeros(3, space.n_dofs)))
    with pytest.raises(ConfigError, match="scheme must be one of"):
        tiny("heat_fem", scheme="forward-euler")
    # user snapshots equal to the synthetic ones give the same loss
    synthetic = tiny("heat_fem")
    times = synthetic.info["observed_steps"].double() * dt
    given = tiny("heat_fem", snapshots_given=(times, _observed_full(synthetic)))
    assert float(given.loss(given.theta0)) == pytest.approx(float(synthetic.loss(synthetic.theta0)), rel=1e-12)


def _observed_full(p):
    stepper, space = p.info["stepper"], p.info["space"]
    states = stepper.trajectory(p.kappa_true(space.quadrature_points), p.info["u0"])
    return states[p.info["observed_steps"]]
