"""``invfem.optim.minimize``: the trust-region loop, Newton variants, baselines, bounds, errors."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from invfem.derivatives import hvp, value_and_grad
from invfem.errors import ConfigError, ShapeError
from invfem.optim import METHODS, KrylovOptions, minimize
from invfem.optim.classical import CLASSICAL, rosenbrock

TRUST = ("trust-exact", "trust-ncg", "trust-krylov")
# known local (non-global) minimum values reached from the standard start
OTHER_MINIMA = {"rosenbrock-10": 3.9865791123471386}  # x ~ (-0.993, 0.997, ..., 0.988)


def _scipy_run(tf, method):
    def fg(x):
        f, g = value_and_grad(tf.fun, torch.as_tensor(x))
        return float(f), g.numpy()

    if method == "trust-exact":
        kw = {"hess": lambda x: torch.func.hessian(tf.fun)(torch.as_tensor(x)).numpy()}
    else:
        kw = {"hessp": lambda x, v: hvp(tf.fun, torch.as_tensor(x), torch.as_tensor(v)).numpy()}
    return scipy.optimize.minimize(fg, np.array(tf.x0), jac=True, method=method,
                                   options={"gtol": 1e-8, "maxiter": 1000}, **kw)


@pytest.mark.parametrize("method", TRUST)
@pytest.mark.parametrize("tf", CLASSICAL, ids=[t.name for t in CLASSICAL])
def test_trust_region_methods_converge_within_1_5x_scipy_iterations(tf, method):
    res = minimize(tf.fun, tf.start(), method=method)
    assert res.success, res.message
    assert float(torch.linalg.norm(res.jac)) < 1e-8
    target = [tf.f_min] + ([OTHER_MINIMA[tf.name]] if tf.name in OTHER_MINIMA else [])
    assert min(abs(res.fun - t) for t in target) < 1e-7 * (1 + abs(tf.f_min))
    ref = _scipy_run(tf, method)
    if ref.success:  # (scipy's trlib gives up on mccormick from (0, 0))
        assert res.nit <= 1.5 * ref.nit, (res.nit, ref.nit)


def test_history_records_every_iteration():
    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="trust-exact")
    h = res.history
    assert len(h) == res.nit + 1 and h[0]["iter"] == 0 and h[0]["accepted"] is None
    keys = {"f", "gnorm", "radius", "rho", "step_norm", "accepted", "inner_iterations", "hard_case",
            "negative_curvature", "time", "nfev", "njev", "nhev"}
    assert keys <= set(h[1])
    # the loss never increases along accepted steps; rejected steps keep f
    for prev, cur in zip(h, h[1:]):
        assert cur["f"] <= prev["f"] + 1e-14
        if not cur["accepted"]:
            assert cur["f"] == prev["f"]
    assert any(not e["accepted"] for e in h[1:])
    assert h[-1]["gnorm"] == pytest.approx(float(torch.linalg.norm(res.jac)))
    assert res.nfev == h[-1]["nfev"] and res.nhev == h[-1]["nhev"] > 0
    assert all(b["time"] >= a["time"] for a, b in zip(h, h[1:]))


def test_radius_follows_the_ratio():
    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="trust-ncg")
    h = res.history
    for cur, nxt in zip(h[1:], h[2:]):
        if cur["rho"] < 0.25:
            assert nxt["radius"] == pytest.approx(0.25 * cur["radius"])
        elif cur["rho"] > 0.75 and cur["hits_boundary"]:
            assert nxt["radius"] == pytest.approx(min(2 * cur["radius"], 1e3))
        else:
            assert nxt["radius"] == cur["radius"]
        assert cur["accepted"] == (cur["rho"] > 0.15)


def test_callback_sees_state_and_stops():
    seen = []

    def callback(state):
        seen.append(state)
        return state["iter"] == 3

    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="trust-krylov", callback=callback)
    assert res.status == 2 and not res.success and res.nit == 3
    assert [s["iter"] for s in seen] == [1, 2, 3]
    assert isinstance(seen[-1]["x"], torch.Tensor) and "inner_iterations" in seen[-1]


def _barrier(x):
    # +inf/NaN beyond x = 1: a step past the barrier must be rejected, not crash the run
    return torch.sum((x - 2.0) ** 2) - torch.sum(torch.log(1.0 - x))


@pytest.mark.parametrize("method", ["trust-exact", "trust-ncg", "newton-damped", "saddle-free-newton"])
def test_non_finite_trial_is_a_rejected_step(method):
    # the first full step lands exactly on the barrier, x = 1
    options = {"initial_radius": 10.0} if method.startswith("trust") else {"mu": 0.0}
    res = minimize(_barrier, torch.zeros(3), method=method, options=options)
    assert res.success
    rejected = [e for e in res.history[1:] if not math.isfinite(e["f_trial"])]
    assert rejected and all(not e["accepted"] for e in rejected)
    # stationary point of (x-2)^2 - log(1-x): 2(x-2)(1-x) + 1 = 0 with x < 1
    x_star = (3 - math.sqrt(3)) / 2
    np.testing.assert_allclose(res.x.numpy(), x_star, atol=1e-9)


def test_user_supplied_derivatives_are_used():
    calls = {"hess": 0, "hessp": 0}

    def hess(x):
        calls["hess"] += 1
        return torch.func.hessian(rosenbrock)(x)

    def hessp(x, v):
        calls["hessp"] += 1
        return hvp(rosenbrock, x, v)

    x0 = torch.tensor([-1.2, 1.0])
    auto = minimize(rosenbrock, x0, method="trust-exact")
    user = minimize(rosenbrock, x0, method="trust-exact", hess=hess,
                    jac=lambda x: value_and_grad(rosenbrock, x)[1])
    assert calls["hess"] == user.nhev > 0 and user.nit == auto.nit
    torch.testing.assert_close(user.x, auto.x)
    krylov = minimize(rosenbrock, x0, method="trust-ncg", hessp=hessp)
    assert calls["hessp"] == krylov.nhev > 0 and krylov.success
    calls["hess"] = 0
    from_hess = minimize(rosenbrock, x0, method="trust-ncg", hess=hess)   # one Hessian per iterate, not per product
    assert from_hess.success and calls["hess"] == from_hess.nhev <= from_hess.nit + 1


def test_reference_001_preset():
    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0] * 2), method="trust-ncg", options="reference-001")
    assert res.success
    assert res.history[1]["radius"] == 2.0
    assert max(e["radius"] for e in res.history[1:]) <= 10.0
    assert max(e["inner_iterations"] for e in res.history[1:]) <= 500
    from invfem.optim.options import PRESETS, parse_options
    opts = parse_options("trust-ncg", KrylovOptions, {"preset": "reference-001", "cg_maxiter": 20})
    assert (opts.initial_radius, opts.max_radius, opts.eta, opts.cg_tol, opts.cg_maxiter) == (2.0, 10.0, 1e-3, 1e-8, 20)
    assert PRESETS["trust-ncg"]["reference-001"]["cg_maxiter"] == 500


# ---------------------------------------------------------------------------------------
# saddles (reference 002)
# ---------------------------------------------------------------------------------------

def _saddle(x):
    # strict saddle at 0 (Hessian diag(2, -2)); minima at (0, +-sqrt(2))
    return x[0] ** 2 - x[1] ** 2 + 0.25 * x[1] ** 4


def _min_eig(x):
    return float(torch.linalg.eigvalsh(torch.func.hessian(_saddle)(x))[0])


def test_exact_newton_finds_the_saddle_while_curvature_aware_methods_find_a_minimum():
    x0 = torch.tensor([0.1, 0.05])
    newton = minimize(_saddle, x0, method="newton-exact")
    assert newton.success and float(torch.linalg.norm(newton.x)) < 1e-8
    assert _min_eig(newton.x) == pytest.approx(-2.0)                     # converged to the saddle
    for method in ("trust-exact", "saddle-free-newton", "trust-krylov"):
        res = minimize(_saddle, x0, method=method)
        assert res.success, method
        assert _min_eig(res.x) > 0.5, method                              # a minimum
        assert abs(float(res.x[1])) == pytest.approx(math.sqrt(2.0))
        assert res.fun == pytest.approx(-1.0)
    assert any(e["negative_curvature"] for e in minimize(_saddle, x0, method="trust-exact").history)


def test_damped_newton_is_relaxed_newton():
    # on a strictly convex quadratic, damped Newton with mu = 0 and alpha = 1 is one step
    a = torch.tensor([[3.0, 1.0], [1.0, 2.0]])

    def quad(x):
        return 0.5 * x @ a @ x - x.sum()

    res = minimize(quad, torch.zeros(2), method="newton-damped", options={"mu": 0.0})
    assert res.nit == 1 and res.success
    half = minimize(quad, torch.zeros(2), method="newton-damped", options={"mu": 0.0, "alpha": 0.5})
    torch.testing.assert_close(torch.tensor(half.history[1]["step_norm"]),
                               0.5 * torch.tensor(res.history[1]["step_norm"]))
    assert half.success and half.nit > 20     # linear rate 1/2


# ---------------------------------------------------------------------------------------
# bounds (reference 004)
# ---------------------------------------------------------------------------------------

def _rosen_residuals(x):
    return np.concatenate([10.0 * (x[1:] - x[:-1] ** 2), 1.0 - x[:-1]])


@pytest.mark.parametrize("x0,lower,upper", [
    ([-1.2, 1.0], [-2.0, -2.0], [0.5, 2.0]),                 # minimum (1, 1) cut off by x1 <= 0.5
    ([-1.2, 2.0], [-np.inf, 1.5], [np.inf, np.inf]),         # lower bound active on x2
    ([-1.2, 1.0] * 5, [-2.0] * 10, [0.5, 1.1] * 5),          # n = 10, several active bounds
])
def test_trust_reflective_agrees_with_lbfgsb_and_least_squares_trf(x0, lower, upper):
    seen = []
    res = minimize(rosenbrock, torch.tensor(x0), method="trust-reflective",
                   bounds=(torch.tensor(lower), torch.tensor(upper)), callback=lambda s: seen.append(s["x"]))
    assert res.success, res.message
    lo, up = np.array(lower), np.array(upper)
    for x in seen:   # feasible iterates (strictly inside up to the rounding of x near an active bound)
        assert np.all(x.numpy() >= lo) and np.all(x.numpy() <= up)
    assert np.all(seen[0].numpy() > lo) and np.all(seen[0].numpy() < up)
    active = (np.abs(res.x.numpy() - lo) < 1e-6) | (np.abs(res.x.numpy() - up) < 1e-6)
    assert active.any()

    def fg(x):
        f, g = value_and_grad(rosenbrock, torch.as_tensor(x))
        return float(f), g.numpy()

    lbfgsb = scipy.optimize.minimize(fg, np.array(x0), jac=True, method="L-BFGS-B", bounds=list(zip(lo, up)),
                                     options={"gtol": 1e-12, "ftol": 0.0, "maxiter": 10000})
    trf = scipy.optimize.least_squares(_rosen_residuals, np.array(x0), bounds=(lo, up), method="trf",
                                       xtol=1e-15, ftol=1e-15, gtol=1e-15)
    np.testing.assert_allclose(res.x.numpy(), lbfgsb.x, atol=1e-6)
    np.testing.assert_allclose(res.x.numpy(), trf.x, atol=1e-6)
    assert res.fun == pytest.approx(lbfgsb.fun, rel=1e-9, abs=1e-12)
    assert res.fun == pytest.approx(2 * trf.cost, rel=1e-9, abs=1e-12)


def test_trust_reflective_without_bounds_is_a_trust_region_method():
    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="trust-reflective")
    assert res.success and res.fun < 1e-15


def test_bounds_accept_scipy_bounds_and_start_on_a_bound():
    res = minimize(rosenbrock, torch.tensor([0.5, 1.0]), method="trust-reflective",
                   bounds=scipy.optimize.Bounds([-2.0, -2.0], [0.5, 2.0]))
    assert res.success
    np.testing.assert_allclose(res.x.numpy(), [0.5, 0.25], atol=1e-7)
    lb = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="l-bfgs-b", bounds=([-2.0, -2.0], [0.5, 2.0]))
    np.testing.assert_allclose(lb.x.numpy(), [0.5, 0.25], atol=1e-6)


# ---------------------------------------------------------------------------------------
# baselines and bad input
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,options", [("adam", {"lr": 0.05, "maxiter": 3000, "gtol": 1e-6}),
                                            ("bfgs", None), ("scipy-bfgs", None), ("l-bfgs-b", None)])
def test_baselines_converge_with_history(method, options):
    def quad(x):
        return torch.sum(torch.arange(1, 5) * (x - 1.0) ** 2)

    res = minimize(quad, torch.zeros(4), method=method, options=options)
    assert res.success, res.message
    np.testing.assert_allclose(res.x.numpy(), 1.0, atol=1e-5)
    assert len(res.history) == res.nit + 1 and res.history[-1]["f"] == pytest.approx(res.fun, abs=1e-12)


@pytest.mark.parametrize("method", ["trust-reflective", "l-bfgs-b"])
def test_x0_outside_the_bounds_is_clipped_into_them_with_a_warning(method):
    """As scipy.optimize.minimize: a warning naming the first entry, then the run from the clipped x0
    (trust-reflective: strictly inside)."""
    lower, upper = torch.tensor([-1.0, 1.5]), torch.tensor([2.0, 3.0])
    with pytest.warns(RuntimeWarning, match=r"outside the bounds at 2 entries \(first: index 0, -1.2"):
        res = minimize(rosenbrock, torch.tensor([-1.2, 5.0]), method=method, bounds=(lower, upper),
                       options={"maxiter": 200})
    assert res.success, res.message
    assert bool(((res.x >= lower) & (res.x <= upper)).all())
    first = res.history[0]["f"]
    clipped = torch.tensor([-1.0, 3.0])
    if method == "l-bfgs-b":
        assert first == pytest.approx(float(rosenbrock(clipped)), rel=1e-14)
    else:                                         # strictly feasible: moved inside by a relative 1e-10
        assert first == pytest.approx(float(rosenbrock(clipped)), rel=1e-8) and first != float(rosenbrock(clipped))


def test_gtol_zero_stops_at_the_round_off_of_f_not_by_shrinking_the_radius():
    """Brown & Dennis (f* = 85822.2): before, trust-exact converged at iteration 29 and then spent 9
    rejected steps shrinking the radius to xtol (status 3, ||g|| = 5e-5). Now steps below f's
    round-off are taken while ||g|| drops, and gtol: 0 (reference 000's setting) stops at the first
    that does not, for every trust-region and Newton method."""
    t = torch.arange(1, 21) / 5.0

    def brown_dennis(x):
        r = (x[0] + t * x[1] - torch.exp(t)) ** 2 + (x[2] + x[3] * torch.sin(t) - torch.cos(t)) ** 2
        return (r**2).sum()

    x0 = torch.tensor([25.0, 5.0, -5.0, -1.0])
    for method in ["trust-exact", "trust-ncg", "trust-krylov", "trust-reflective", "newton-exact",
                   "saddle-free-newton"]:
        res = minimize(brown_dennis, x0, method=method, options={"gtol": 0, "maxiter": 500})
        assert res.status == 8 and res.success, (method, res.message)
        assert res.nit <= 25, (method, res.nit)
        assert not [h for h in res.history[1:] if not h["accepted"]], method
        assert res.history[-1]["gnorm"] < 1e-9 and res.fun == pytest.approx(85822.2016263563, rel=1e-13)
    default = minimize(brown_dennis, x0, method="trust-exact")
    assert default.status == 0 and default.nit <= 15


@pytest.mark.parametrize("method", ["trust-exact", "trust-ncg", "newton-damped", "adam", "bfgs", "scipy-bfgs",
                                    "l-bfgs-b"])
def test_gtol_zero_is_accepted(method):
    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method=method, options={"gtol": 0, "maxiter": 5})
    assert res.nit <= 5 and np.isfinite(res.fun)
    with pytest.raises(ConfigError, match="gtol must be a finite number >= 0"):
        minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method=method, options={"gtol": -1.0})


def test_bad_input_raises_clear_errors():
    x0 = torch.tensor([-1.2, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        minimize(rosenbrock, torch.tensor([math.nan, 1.0]))
    with pytest.raises(ValueError, match="lower bound exceeds upper bound at index 1"):
        minimize(rosenbrock, x0, method="trust-reflective", bounds=([-2.0, 3.0], [2.0, 2.0]))
    with pytest.raises(ShapeError, match="0-d tensor"):
        minimize(lambda x: x**2, x0)
    with pytest.raises(ShapeError, match="flat vector"):
        minimize(rosenbrock, torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="unknown method 'trust-magic'.*trust-exact"):
        minimize(rosenbrock, x0, method="trust-magic")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['radius'\].*initial_radius"):
        minimize(rosenbrock, x0, method="trust-exact", options={"radius": 2.0})
    with pytest.raises(ConfigError, match="eta"):
        minimize(rosenbrock, x0, method="trust-ncg", options={"eta": 0.3})
    with pytest.raises(ConfigError, match="unknown preset"):
        minimize(rosenbrock, x0, method="trust-ncg", options="reference-999")
    with pytest.raises(ConfigError, match="does not take bounds"):
        minimize(rosenbrock, x0, method="trust-exact", bounds=([-2.0, -2.0], [2.0, 2.0]))
    with pytest.raises(ConfigError, match="maxiter"):
        minimize(rosenbrock, x0, method="adam", options={"maxiter": 0})
    with pytest.raises(ConfigError, match=r"\['mu'\]"):     # exact Newton is undamped by definition
        minimize(rosenbrock, x0, method="newton-exact", options={"mu": 1e-3})
    with pytest.raises(TypeError, match="hess must be callable"):
        minimize(rosenbrock, x0, hess=torch.eye(2))
    assert set(METHODS) == {"trust-exact", "trust-ncg", "trust-krylov", "trust-reflective", "newton-damped",
                            "newton-exact", "saddle-free-newton", "adam", "bfgs", "scipy-bfgs", "l-bfgs-b",
                            "trf", "dogbox", "lm"}
    with pytest.raises(ConfigError, match="c1 < c2"):
        minimize(rosenbrock, x0, method="bfgs", options={"c1": 0.95})


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_returns_plain_json_history(method):
    import json

    residual = (lambda x: torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])) if METHODS[method].derivatives == "jacobian" \
        else None                                   # the least-squares methods see rosenbrock's residuals
    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method=method, options={"maxiter": 5}, residual=residual)
    text = json.dumps(res.history)            # plain Python types only (results.json)
    assert json.loads(text)[0]["f"] == pytest.approx(24.2)
    assert res.nit == len(res.history) - 1 <= 5 and res.method == method


# ---------------------------------------------------------------------------------------
# invfem's O(n^2) BFGS
# ---------------------------------------------------------------------------------------

def _scipy_bfgs_iterates(tf):
    def fg(x):
        f, g = value_and_grad(tf.fun, torch.as_tensor(x))
        return float(f), g.numpy()

    ref = scipy.optimize.minimize(fg, tf.start().numpy(), jac=True, method="BFGS",
                                  options={"gtol": 1e-8, "return_all": True})
    return ref.allvecs[1:]


@pytest.mark.parametrize("tf", CLASSICAL, ids=[t.name for t in CLASSICAL])
def test_bfgs_iterates_equal_scipy_and_converge(tf):
    iterates = []
    res = minimize(tf.fun, tf.start(), method="bfgs", callback=lambda state: iterates.append(state["x"]) and False)
    ref = _scipy_bfgs_iterates(tf)
    n_check = 5 if tf.name == "rosenbrock-2" else 3
    for k, (ours, theirs) in enumerate(zip(iterates[:n_check], ref[:n_check])):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-10 * (1 + np.abs(theirs).max()),
                                   err_msg=f"iterate {k + 1}")
    target = [tf.f_min] + ([OTHER_MINIMA[tf.name]] if tf.name in OTHER_MINIMA else [])
    assert min(abs(res.fun - t) for t in target) < 1e-7 * (1 + abs(tf.f_min)), res.message
    assert float(torch.linalg.norm(res.jac)) < 1e-6


def test_bfgs_inverse_update_equals_the_product_form():
    from invfem.optim.bfgs import _update

    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 7))
    inv_h = np.linalg.inv(a @ a.T + 7 * np.eye(7))
    s, y = rng.standard_normal(7), rng.standard_normal(7)
    y += 2 * s                                  # y^T s > 0
    rho = 1 / (y @ s)
    eye = np.eye(7)
    expected = (eye - rho * np.outer(s, y)) @ inv_h @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
    updated = torch.as_tensor(inv_h.copy())
    _update(updated, torch.as_tensor(s), torch.as_tensor(y))
    np.testing.assert_allclose(updated.numpy(), expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(updated.numpy() @ y, s, rtol=1e-12)       # the secant equation H+ y = s


def test_bfgs_rejects_non_finite_trials():
    """The first line-search trial lands beyond log's barrier (NaN): the step shrinks, the run goes on."""
    trials = []

    def barrier(x):
        trials.append(float(x[0].detach()))
        return -torch.log(0.5 - x[0]) + (x[0] - 5) ** 2

    res = minimize(barrier, torch.zeros(1), method="bfgs", options={"gtol": 1e-6})
    assert any(t >= 0.5 for t in trials)           # a non-finite trial happened
    assert res.success and all(math.isfinite(h["f"]) for h in res.history)
    x_star = (11 - math.sqrt(121 - 32)) / 4        # 1/(0.5 - x) = 2 (5 - x)
    assert res.x.item() == pytest.approx(x_star, abs=1e-7)


def _undefined_beyond_one(x, target=2.0):
    """(x - target)^2 - log(1 - x), undefined (InvalidTrialPoint) for x >= 1: a physical constraint."""
    from invfem.errors import InvalidTrialPoint

    if bool((x >= 1).any()):
        raise InvalidTrialPoint(f"x = {float(x.detach().max())} >= 1")
    return torch.sum((x - target) ** 2) - torch.sum(torch.log(1.0 - x))


@pytest.mark.parametrize("method", ["trust-exact", "trust-ncg", "newton-damped", "bfgs"])
def test_undefined_trial_points_are_rejected_and_counted(method):
    options = {"initial_radius": 10.0} if method.startswith("trust") else {"mu": 0.0} if method == "newton-damped" else {}
    # BFGS's first trial step has length ~1: a 1-D pull towards 5 sends it beyond x = 1
    target, n = (5.0, 1) if method == "bfgs" else (2.0, 3)
    res = minimize(lambda x: _undefined_beyond_one(x, target), torch.zeros(n), method=method, options=options)
    assert res.success, res.message
    assert res.history[-1]["invalid_trials"] >= 1
    x_star = ((target + 1) - math.sqrt((target + 1) ** 2 - 2 * (2 * target - 1))) / 2   # 2(x - t)(1 - x) + 1 = 0
    np.testing.assert_allclose(res.x.numpy(), x_star, atol=1e-6)


@pytest.mark.parametrize("method", ["l-bfgs-b", "scipy-bfgs"])
def test_scipy_baselines_backtrack_from_undefined_trial_points(method):
    """Their line searches cannot reject a point: an undefined one is shown as a value far
    above the last, and they backtrack to the constrained minimizer (they stopped at x = 0.43
    or x = 0.0 instead, when the first undefined trial ended the run)."""
    target = 10.0
    res = minimize(lambda x: _undefined_beyond_one(x, target), torch.zeros(3), method=method)
    assert res.status in (0, 5), res.message
    x_star = ((target + 1) - math.sqrt((target + 1) ** 2 - 2 * (2 * target - 1))) / 2
    np.testing.assert_allclose(res.x.numpy(), x_star, atol=1e-7)
    assert res.history[-1]["invalid_trials"] >= 1


def test_undefined_points_end_adam_and_an_undefined_start_raises():
    from invfem.errors import InvalidTrialPoint

    res = minimize(_undefined_beyond_one, torch.zeros(3), method="adam", options={"lr": 2.0, "maxiter": 50})
    assert res.status == 4 and res.history[-1]["invalid_trials"] == 1 and bool((res.x < 1).all())
    with pytest.raises(InvalidTrialPoint, match="x = 1.5"):
        minimize(_undefined_beyond_one, torch.full((3,), 1.5), method="l-bfgs-b")
    with pytest.raises(InvalidTrialPoint, match="x = 1.5"):
        minimize(_undefined_beyond_one, torch.full((3,), 1.5), method="trust-exact")


@pytest.mark.parametrize("method,options", [("trust-exact", {"maxiter": 40}), ("trust-ncg", {"maxiter": 30}),
                                            ("trust-krylov", {"maxiter": 30}), ("newton-damped", {"maxiter": 20}),
                                            ("trust-reflective", {"maxiter": 25}),
                                            ("adam", {"maxiter": 60, "lr": 1e-2}), ("bfgs", {"maxiter": 60}),
                                            ("l-bfgs-b", {"maxiter": 60})])
def test_resume_from_a_checkpoint(method, options):
    """A run resumed from its checkpoint at iteration 14 ends where the uninterrupted run ends
    (exactly, for every runner whose memory is ours); scipy's restarts from x with a fresh memory."""
    import copy

    from invfem.optim import Checkpoint

    fun, x0 = CLASSICAL[1].fun, CLASSICAL[1].start()         # Rosenbrock in 10 dimensions
    full = minimize(fun, x0, method=method, options=options)
    saved = []
    minimize(fun, x0, method=method, options={**options, "maxiter": 17},
             checkpoint=Checkpoint(lambda s: saved.append(copy.deepcopy(s)), every=7))
    assert [s["iteration"] for s in saved] == [7, 14] and saved[-1]["method"] == method
    resumed = minimize(fun, x0, method=method, options=options, resume=saved[-1])
    assert resumed.nit == full.nit and len(resumed.history) == len(full.history)
    if method == "l-bfgs-b":
        assert saved[-1]["exact"] is False and resumed.fun < full.history[14]["f"]
    else:
        assert saved[-1]["exact"] is True
        torch.testing.assert_close(resumed.x, full.x, rtol=0, atol=1e-12)
        assert [h["f"] for h in resumed.history] == [h["f"] for h in full.history]
        assert resumed.nfev == full.nfev and resumed.njev == full.njev
    with pytest.raises(ConfigError, match="cannot resume"):
        minimize(fun, x0, method="trust-ncg" if method != "trust-ncg" else "adam", resume=saved[-1])


@pytest.mark.parametrize("method", ["trust-exact", "adam", "bfgs", "l-bfgs-b"])
def test_callback_and_checkpoint_time_is_not_the_methods_time(method):
    """The history's time is the method's own: 0.05 s of callback per iteration and 0.05 s per
    checkpoint write over 10 iterations (about 1 s) are left out."""
    import time as clock

    from invfem.optim import Checkpoint

    fun, x0 = CLASSICAL[1].fun, CLASSICAL[1].start()
    opts = {"maxiter": 10, "gtol": 0}
    started = clock.perf_counter()
    res = minimize(fun, x0, method=method, options=opts, callback=lambda s: clock.sleep(0.05) or False,
                   checkpoint=Checkpoint(lambda s: clock.sleep(0.05), every=1))
    outside = clock.perf_counter() - started
    assert res.nit == 10 and outside > 0.9                  # at least 9 checkpoints and 10 callbacks slept
    assert res.history[-1]["time"] < outside - 0.85


def test_a_chain_of_methods_is_one_run_that_resumes_inside_its_stage():
    """adam then trust-exact: the same iterates as two calls, one joined history (iterations
    and time continue), counters summed; resumed in the middle of either stage it ends identically."""
    import copy

    from invfem.errors import ConfigError as Bad
    from invfem.optim import Checkpoint, minimize_chain

    fun, x0 = CLASSICAL[1].fun, CLASSICAL[1].start()
    stages = [("adam", {"maxiter": 30, "lr": 1e-2}), ("trust-exact", {"maxiter": 25})]
    chain = minimize_chain(fun, x0, stages)
    first = minimize(fun, x0, method="adam", options=stages[0][1])
    second = minimize(fun, first.x, method="trust-exact", options=stages[1][1])
    torch.testing.assert_close(chain.x, second.x, rtol=0, atol=0)
    assert chain.nit == first.nit + second.nit and len(chain.history) == chain.nit + 1
    assert [h["iter"] for h in chain.history] == list(range(chain.nit + 1))
    assert chain.history[31]["stage"] == "trust-exact" and chain.history[31]["time"] >= chain.history[30]["time"]
    assert [h["f"] for h in chain.history[30:]] == [h["f"] for h in second.history]
    assert chain.nfev == first.nfev + second.nfev and chain.method == "adam+trust-exact"
    assert [s["method"] for s in chain.stages] == ["adam", "trust-exact"]
    saved = []
    minimize_chain(fun, x0, [stages[0], ("trust-exact", {"maxiter": 12})],
                   checkpoint=Checkpoint(lambda s: saved.append(copy.deepcopy(s)), every=5))
    assert saved[-1]["stage"] == 1 and saved[-1]["inner"]["iteration"] == 10
    resumed = minimize_chain(fun, x0, stages, resume=saved[-1])
    torch.testing.assert_close(resumed.x, chain.x, rtol=0, atol=1e-12)
    assert [h["f"] for h in resumed.history] == [h["f"] for h in chain.history]
    # resumed in the middle of stage 1 (Adam's moments and step restored), it ends identically too
    in_adam = next(s for s in saved if s["stage"] == 0 and s["inner"]["iteration"] == 15)
    calls = []
    counted = lambda x: calls.append(1) or fun(x)
    minimize_chain(counted, x0, stages)
    from_start = len(calls)
    calls.clear()
    resumed = minimize_chain(counted, x0, stages, resume=in_adam)
    assert len(calls) == from_start - 16     # the gradients at x0 and at Adam's first 15 iterates: not redone
    torch.testing.assert_close(resumed.x, chain.x, rtol=0, atol=1e-12)
    assert [h["f"] for h in resumed.history] == [h["f"] for h in chain.history]
    with pytest.raises(Bad, match="cannot resume"):
        minimize_chain(fun, x0, [("bfgs", {}), ("trust-exact", {})], resume=saved[-1])
    with pytest.raises(Bad, match="unknown method 'newton'"):
        minimize_chain(fun, x0, [("adam", {}), ("newton", {})])


def test_result_is_a_dict_with_attributes_and_pickles():
    import copy
    import pickle

    from invfem.optim import OptimizeResult

    res = minimize(lambda x: ((x - 1.0) ** 2).sum(), torch.zeros(3), method="trust-exact", options={"maxiter": 5})
    assert isinstance(res, OptimizeResult) and isinstance(res, dict)
    assert res.fun == res["fun"] and res.success and torch.allclose(res.x, torch.ones(3, dtype=torch.float64))
    with pytest.raises(AttributeError, match="no_such_field"):
        res.no_such_field
    res.note = "kept"
    assert res["note"] == "kept"
    assert "history" not in repr(res) and "fun" in repr(res)
    for twin in (pickle.loads(pickle.dumps(res)), copy.deepcopy(res)):
        assert twin.nit == res.nit and len(twin.history) == len(res.history)


@pytest.mark.parametrize("method", ["trust-ncg", "trust-krylov"])
def test_eisenstat_walker_forcing_converges_and_bad_forcing_is_refused(method):
    from invfem.errors import ConfigError

    res = minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method=method,
                   options={"forcing": "eisenstat-walker", "gtol": 1e-10})
    assert res.success and float(torch.linalg.norm(res.x - 1.0)) < 1e-6
    with pytest.raises(ConfigError, match="forcing"):
        minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method=method, options={"forcing": "fast"})


def test_trust_ncg_with_the_low_rank_preconditioner_converges_and_trust_krylov_refuses_it():
    from invfem.errors import ConfigError

    x0 = torch.tensor((-1.2, 1.0) * 5, dtype=torch.float64)
    res = minimize(rosenbrock, x0, method="trust-ncg", options={"preconditioner": "low-rank", "preconditioner_rank": 3,
                                                               "preconditioner_every": 3, "gtol": 1e-9, "maxiter": 500})
    assert res.success, res.message
    assert float(res.fun) < 1e-12 or abs(float(res.fun) - OTHER_MINIMA["rosenbrock-10"]) < 1e-8
    assert float(torch.linalg.norm(torch.func.grad(rosenbrock)(res.x))) < 1e-8
    with pytest.raises(ConfigError, match="trust-ncg"):
        minimize(rosenbrock, torch.tensor([-1.2, 1.0]), method="trust-krylov", options={"preconditioner": "low-rank"})
