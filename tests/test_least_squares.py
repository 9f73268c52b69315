"""invfem.optim.least_squares against scipy.optimize.least_squares on classical residual problems."""

import numpy as np
import pytest
import scipy.optimize
import torch

from invfem.errors import ConfigError, NonFiniteError, ShapeError
from invfem.optim import Checkpoint, minimize
from invfem.optim.classical import (LEAST_SQUARES, brown_dennis_residual, osborne_residual,
                                    rosenbrock_residual)
from invfem.optim.least_squares import least_squares, robust_loss

PROBLEMS = [(p.name, p.fun, list(p.x0), p.bounds) for p in LEAST_SQUARES]
rosenbrock, brown_dennis, osborne = rosenbrock_residual, brown_dennis_residual, osborne_residual
TIGHT = {"ftol": 1e-14, "xtol": 1e-14, "gtol": 1e-14}


def scipy_solution(fun, x0, **kwargs):
    return scipy.optimize.least_squares(lambda x: fun(torch.as_tensor(x)).numpy(), x0,
                                        jac=lambda x: torch.func.jacrev(fun)(torch.as_tensor(x)).numpy(), **kwargs)


@pytest.mark.parametrize("method", ["trf", "dogbox", "lm"])
@pytest.mark.parametrize("bounded", [False, True], ids=["free", "bounded"])
@pytest.mark.parametrize("name,fun,x0,bounds", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_same_minimizer_as_scipy_and_no_higher_cost(name, fun, x0, bounds, method, bounded):
    if method == "lm" and bounded:
        pytest.skip("lm takes no bounds")
    kwargs = {"bounds": bounds} if bounded else {}
    ours = least_squares(fun, torch.tensor(x0), method=method, **TIGHT, **kwargs)
    ref = scipy_solution(fun, x0, method=method, **TIGHT, **kwargs)
    assert ours.success
    assert ours.cost <= ref.cost * (1 + 1e-8) + 1e-20
    if name != "powell":        # Powell's minimizer is singular: x is determined only to ~sqrt(cost)
        np.testing.assert_allclose(ours.x.numpy(), ref.x, atol=1e-6, rtol=1e-6)
    if bounded:
        lower, upper = (np.asarray(b, dtype=float) for b in bounds)
        x = ours.x.numpy()
        assert np.all(x >= lower) and np.all(x <= upper)
        if method == "trf":
            assert np.all(x > lower) and np.all(x < upper)          # strictly feasible iterates
    np.testing.assert_allclose(ours.grad.numpy(), ours.jac.numpy().T @ ours.fun.numpy(), rtol=1e-10, atol=1e-300)
    assert ours.cost == pytest.approx(0.5 * float(ours.fun @ ours.fun), rel=1e-12, abs=1e-300)


def test_unbounded_trf_and_dogbox_take_scipys_steps():
    for method in ("trf", "dogbox"):
        ours = least_squares(rosenbrock, torch.tensor([-1.2, 1.0]), method=method)
        ref = scipy_solution(rosenbrock, [-1.2, 1.0], method=method)
        assert (ours.nfev, ours.njev) == (ref.nfev, ref.njev)


def test_trf_iterates_stay_strictly_inside_the_bounds():
    seen = []
    least_squares(rosenbrock, torch.tensor([-1.2, 1.0]), bounds=([-2.0, -2.0], [0.9, 2.0]),
                  callback=lambda state: seen.append(state["x"].numpy().copy()))
    xs = np.array(seen)
    assert len(xs) > 5 and np.all(xs[:, 0] < 0.9) and np.all(xs[:, 0] > -2.0)
    assert xs[-1, 0] == pytest.approx(0.9, abs=1e-6)


def test_lm_solves_an_underdetermined_problem():
    fun = lambda x: torch.stack([x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 1, x[0] - x[1]])   # m = 2 < n = 3
    res = least_squares(fun, torch.tensor([2.0, 0.5, 1.0]), method="lm")
    assert res.success and res.cost < 1e-20
    with pytest.raises(ValueError):
        scipy_solution(fun, [2.0, 0.5, 1.0], method="lm")          # scipy refuses m < n


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_robust_losses_match_scipys_cost_and_minimizer(loss):
    torch.manual_seed(0)
    t = torch.linspace(0, 3, 30)
    y = 2.0 * torch.exp(-1.3 * t) + 0.01 * torch.randn(30)
    y[[3, 17]] += 2.0                                               # outliers
    fun = lambda x: x[0] * torch.exp(-x[1] * t) - y
    ours = least_squares(fun, torch.tensor([1.0, 1.0]), loss=loss, f_scale=0.1, **TIGHT)
    ref = scipy_solution(fun, [1.0, 1.0], loss=loss, f_scale=0.1, **TIGHT)
    # scipy's cost definition at the same x
    z = (ref.fun / 0.1) ** 2
    assert ref.cost == pytest.approx(0.5 * 0.01 * robust_loss(loss, z)[0].sum(), rel=1e-12)
    assert ours.cost <= ref.cost * (1 + 1e-10)
    np.testing.assert_allclose(ours.x.numpy(), ref.x, rtol=1e-6)
    assert abs(float(ours.x[0]) - 2.0) < 0.1                        # the outliers are discounted


@pytest.mark.parametrize("name,fun,x0,bounds", PROBLEMS[:3], ids=[p[0] for p in PROBLEMS[:3]])
def test_lsmr_subspace_solver_reaches_the_exact_solvers_minimum(name, fun, x0, bounds):
    # (on Osborne's ill-conditioned fit the 2-D subspace crawls, as scipy's does: 500 evaluations)
    exact = least_squares(fun, torch.tensor(x0), **TIGHT)
    subspace = least_squares(fun, torch.tensor(x0), tr_solver="lsmr", **TIGHT)
    assert subspace.cost == pytest.approx(exact.cost, rel=1e-8, abs=1e-18)


def test_lsmr_tolerances_are_scipys_and_can_be_set(monkeypatch):
    """tr_options reach LSMR (scipy's names and defaults): a looser atol and one LSMR iteration
    per step change the steps, and the fit still gets near Powell's zero-residual minimum."""
    import scipy.sparse.linalg

    from invfem.optim import lsq_steps

    seen, real = [], scipy.sparse.linalg.lsmr
    monkeypatch.setattr(scipy.sparse.linalg, "lsmr", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    fun, x0 = PROBLEMS[1][1], torch.tensor(PROBLEMS[1][2])
    default = least_squares(fun, x0, tr_solver="lsmr", **TIGHT)
    assert seen[0] == lsq_steps.LSMR_DEFAULTS
    seen.clear()
    capped = least_squares(fun, x0, tr_solver="lsmr", tr_options={"atol": 1e-2, "maxiter": 1}, **TIGHT)
    assert seen[0] == {"atol": 1e-2, "btol": 1e-6, "maxiter": 1}
    assert default.cost < 1e-18 and capped.cost < 1e-9         # Powell's singular zero-residual fit
    assert capped.njev != default.njev
    with pytest.raises(ConfigError, match="unknown key 'damp' in option tr_options"):
        least_squares(fun, x0, tr_solver="lsmr", tr_options={"damp": 1.0})
    with pytest.raises(ConfigError, match="tr_options applies to tr_solver 'lsmr' only"):
        least_squares(fun, x0, tr_options={"atol": 1e-3})
    with pytest.raises(ConfigError, match="tr_options.maxiter must be a positive integer"):
        least_squares(fun, x0, tr_solver="lsmr", tr_options={"maxiter": 0})


def test_default_jacobian_equals_a_given_one():
    auto = least_squares(osborne, torch.tensor([0.5, 1.5, -1.0, 0.01, 0.02]))
    given = least_squares(osborne, torch.tensor([0.5, 1.5, -1.0, 0.01, 0.02]), jac=torch.func.jacfwd(osborne))
    np.testing.assert_allclose(auto.x.numpy(), given.x.numpy(), rtol=1e-12)
    assert auto.nfev == given.nfev


def test_resume_ends_at_the_uninterrupted_x():
    x0 = torch.tensor([25.0, 5.0, -5.0, -1.0])
    full = least_squares(brown_dennis, x0, bounds=([-30, 0, -30, -30], [30.0] * 4), **TIGHT)
    states = []
    least_squares(brown_dennis, x0, bounds=([-30, 0, -30, -30], [30.0] * 4), maxiter=7, **TIGHT,
                  checkpoint=Checkpoint(states.append, every=5))
    assert states and states[-1]["iteration"] == 5
    resumed = least_squares(brown_dennis, x0, bounds=([-30, 0, -30, -30], [30.0] * 4), **TIGHT, resume=states[-1])
    np.testing.assert_allclose(resumed.x.numpy(), full.x.numpy(), rtol=0, atol=1e-12)
    assert resumed.nfev == full.nfev and len(resumed.history) == len(full.history)


def test_minimize_reports_the_sum_of_squares():
    loss = lambda x: (rosenbrock(x) ** 2).sum()
    res = minimize(loss, torch.tensor([-1.2, 1.0]), method="trf", residual=rosenbrock)
    assert res.success and res.fun < 1e-20 and res.history[0]["f"] == pytest.approx(24.2)
    gn = minimize(loss, torch.tensor([-1.2, 1.0]), method="trust-exact", hess="gauss-newton", residual=rosenbrock)
    assert gn.success and gn.fun < 1e-16


def test_bad_input_gives_one_line_errors():
    x0 = torch.tensor([-1.2, 1.0])
    with pytest.raises(ShapeError, match="1-d tensor of residuals"):
        least_squares(lambda x: x.sum(), x0)
    with pytest.raises(ShapeError, match=r"jac returned shape \(3, 2\), expected \(2, 2\)"):
        least_squares(rosenbrock, x0, jac=lambda x: torch.zeros(3, 2))
    with pytest.raises(NonFiniteError, match="residuals are not finite at x0.*index 1"):
        least_squares(lambda x: torch.stack([x[0], torch.log(x[1] - 2)]), x0)
    with pytest.raises(ValueError, match="lower bound is not below upper bound at index 1"):
        least_squares(rosenbrock, x0, bounds=([-2.0, 1.0], [2.0, 1.0]))
    with pytest.raises(ConfigError, match="'lm' does not take bounds"):
        least_squares(rosenbrock, x0, method="lm", bounds=([-2.0, -2.0], [2.0, 2.0]))
    with pytest.raises(ConfigError, match="unknown least-squares method 'gauss'"):
        least_squares(rosenbrock, x0, method="gauss")
    with pytest.raises(ConfigError, match="option loss"):
        least_squares(rosenbrock, x0, loss="l1")
    with pytest.raises(ValueError, match="x0 is infeasible.*index 0"):
        least_squares(rosenbrock, x0, bounds=([0.0, -2.0], [2.0, 2.0]))
    with pytest.raises(ConfigError, match="works on residuals"):
        minimize(lambda x: (rosenbrock(x) ** 2).sum(), x0, method="trf")


def large_residual(x):
    """Rosenbrock with a third residual that stays large at the minimum (f* ~ 0.415)."""
    return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0], 0.5 + 0.3 * x[1] ** 2])


def test_gauss_newton_and_the_switch_reach_the_exact_minimum():
    loss = lambda x: (large_residual(x) ** 2).sum()
    x0 = torch.tensor([-1.2, 1.0])
    runs = {kind: minimize(loss, x0, options={"hessian": kind}, residual=large_residual)
            for kind in ("exact", "gauss-newton", "auto")}
    for kind, res in runs.items():
        assert res.success, kind
        np.testing.assert_allclose(res.x.numpy(), runs["exact"].x.numpy(), atol=1e-7)
    # large residual: Gauss-Newton converges linearly, the switch takes exact curvature near the end
    assert runs["auto"].nit < runs["gauss-newton"].nit
    with pytest.raises(ConfigError, match="'auto'.*trust-exact option"):
        minimize(loss, x0, method="trust-ncg", options={"hessian": "auto"}, residual=large_residual)
    with pytest.raises(ConfigError, match="needs residual="):
        minimize(loss, x0, options={"hessian": "gauss-newton"})
    with pytest.raises(ConfigError, match="option hessian must be one of"):
        minimize(loss, x0, options={"hessian": "bfgs"})


def test_gauss_newton_hessian_is_two_jt_j():
    x = torch.tensor([0.3, -0.7])
    seen = []
    minimize(lambda z: (large_residual(z) ** 2).sum(), x, options={"hessian": "gauss-newton", "maxiter": 1},
             residual=large_residual, callback=lambda s: seen.append(s) and False)
    from invfem.optim.api import gauss_newton_hessian
    j = torch.func.jacrev(large_residual)(x)
    torch.testing.assert_close(gauss_newton_hessian("gauss-newton", large_residual, None)(x), 2 * j.T @ j)


def test_lazy_hessians_save_hessians_and_resume_exactly():
    from invfem.optim.classical import CLASSICAL
    tf = next(t for t in CLASSICAL if t.name == "rosenbrock-10")
    every = minimize(tf.fun, tf.start(), options={"maxiter": 500})
    lazy = minimize(tf.fun, tf.start(), options={"maxiter": 500, "hessian_every": 3})
    assert lazy.success and lazy.optimality < 1e-8      # a stationary point (rosenbrock-10 has two minima)
    assert lazy.nhev < every.nhev
    refreshed = minimize(tf.fun, tf.start(), options={"maxiter": 500, "hessian_every": 3, "hessian_refresh_rho": 0.5})
    assert refreshed.success and refreshed.optimality < 1e-8
    states = []
    minimize(tf.fun, tf.start(), options={"maxiter": 20, "hessian_every": 3},
             checkpoint=Checkpoint(states.append, every=1))
    state = next(s for s in states if s["model"]["age"] > 0)    # a saved model that holds a kept Hessian
    resumed = minimize(tf.fun, tf.start(), options={"maxiter": 500, "hessian_every": 3}, resume=state)
    np.testing.assert_allclose(resumed.x.numpy(), lazy.x.numpy(), rtol=0, atol=1e-12)
    assert resumed.nit == lazy.nit
    with pytest.raises(ConfigError, match="trust-exact only"):
        minimize(tf.fun, tf.start(), method="trust-reflective", options={"hessian_every": 2})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_least_squares_on_the_gpu_returns_tensors_there():
    x0 = torch.tensor([-1.2, 1.0], device="cuda")
    res = least_squares(rosenbrock, x0)
    assert res.x.device.type == "cuda" and res.fun.device.type == "cuda" and res.cost < 1e-20


def test_lazy_model_keeps_the_hessian_unless_rho_was_poor():
    from invfem.optim.oracle import Oracle
    from invfem.optim.options import TrustExactOptions
    from invfem.optim.steps import ExactModel
    fun = lambda x: (large_residual(x) ** 2).sum()
    oracle = Oracle(fun, 2)
    opts = TrustExactOptions(hessian_every=5, hessian_refresh_rho=0.5)
    x, g = np.array([0.3, -0.7]), np.array([1.0, 1.0])
    first = ExactModel(oracle, x, g, opts)
    assert oracle.nhev == 1 and first.age == 0
    first.observe(0.9)
    kept = ExactModel(oracle, x + 0.1, g, opts, previous=first)
    assert oracle.nhev == 1 and kept.age == 1 and kept.H is first.H       # the Hessian of x, kept
    kept.observe(0.1)                                                     # a poorly predicted step
    fresh = ExactModel(oracle, x + 0.2, g, opts, previous=kept)
    assert oracle.nhev == 2 and fresh.age == 0
