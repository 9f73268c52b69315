"""invfem.optim.least_squares against scipy.optimize.least_squares on classical residual problems."""

import numpy as np
import pytest
import scipy.optimize
import torch

from invfem.errors import ConfigError, NonFiniteError, ShapeError
from invfem.optim import Checkpoint, minimize
from invfem.optim.least_squares import least_squares, robust_loss

T_BD = torch.arange(1, 21, dtype=torch.float64) / 5
Y_OSBORNE = torch.tensor([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718, 0.685,
                          0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467, 0.457, 0.448,
                          0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406], dtype=torch.float64)


def rosenbrock(x):
    return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def powell_singular(x):
    return torch.stack([x[0] + 10 * x[1], 5 ** 0.5 * (x[2] - x[3]), (x[1] - 2 * x[2]) ** 2,
                        10 ** 0.5 * (x[0] - x[3]) ** 2])


def brown_dennis(x):
    return (x[0] + x[1] * T_BD - torch.exp(T_BD)) ** 2 + (x[2] + x[3] * torch.sin(T_BD) - torch.cos(T_BD)) ** 2


def osborne(x):
    t = 10 * torch.arange(33, dtype=torch.float64)
    return Y_OSBORNE - (x[0] + x[1] * torch.exp(-t * x[3]) + x[2] * torch.exp(-t * x[4]))


# (name, residual, x0, bounds for the bounded variant)
PROBLEMS = [
    ("rosenbrock", rosenbrock, [-1.2, 1.0], ([-2.0, -2.0], [0.9, 2.0])),
    ("powell", powell_singular, [3.0, -1.0, 0.0, 1.0], ([0.1, -10, -10, -10], [10.0] * 4)),
    ("brown_dennis", brown_dennis, [25.0, 5.0, -5.0, -1.0], ([-30, 0, -30, -30], [30.0] * 4)),
    ("osborne", osborne, [0.5, 1.5, -1.0, 0.01, 0.02], ([0, 0, -5, 0, 0], [5, 5, 5, 1, 1.0])),
]
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
