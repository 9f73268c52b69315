"""The one trust-region loop: ratio rho, radius update, acceptance, stopping tests, history.

Every second-order method is this loop with a different model (``invfem.optim.steps``):
the model computes a step for the current radius; the loop evaluates f at the trial point,
forms rho = (f(x) - f(x + p) - correction) / predicted, and

* rejects the step when rho <= eta or f(x + p) is NaN/inf or undefined (the loss raised
  InvalidTrialPoint, e.g. a coefficient <= 0): such a trial shrinks the radius below the
  failed step's length; it never stops the run,
* shrinks the radius (x shrink) when rho < shrink_below, expands it (x expand, capped at
  max_radius) when rho > expand_above and the step reached the boundary
  (Nocedal & Wright, Alg. 4.1).

It stops when the optimality measure is below gtol (status 0), after maxiter iterations
(1), when the callback asks (2), when the radius drops below xtol (1 + ||x||) (3), or when
the model's predicted change is at the round-off of f and its step no longer lowers the
optimality measure (8). Least-squares methods (:mod:`invfem.optim.least_squares`) also
stop on scipy's tests after a trial: ``ftol`` (an accepted step with rho > 1/4 lowered f by
less than ftol f: 9), ``step_xtol`` (a step shorter than xtol (xtol + ||x||): 10; both: 11),
or after ``max_nfev`` evaluations of f (12); they shrink the radius from the failed step's
length (``shrink_from_step``), as scipy's ``trf`` and Moré's Levenberg–Marquardt do.

Below f's round-off rho is noise: such steps are taken while they
still lower ||g|| (the model is exact at that scale), and the run stops at the first that
does not — instead of shrinking the radius through rejected steps (a converged
least-squares fit with f* ~ 1e5 spent 9 such iterations before this test).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from invfem.errors import NonFiniteError
from invfem.optim.checkpoint import common_state, replayed, restore_common

STATUS_MESSAGES = {
    0: "optimality measure below gtol",
    1: "maximum number of iterations reached",
    2: "stopped by callback",
    3: "trust radius below xtol (1 + ||x||): no further decrease representable",
    8: "predicted reduction at the round-off of f: converged as far as f can show",
    9: "ftol termination condition is satisfied (relative reduction of f below ftol)",
    10: "xtol termination condition is satisfied (step below xtol (xtol + ||x||))",
    11: "both ftol and xtol termination conditions are satisfied",
    12: "maximum number of function evaluations reached",
    13: "every trial point since the last accepted iterate was invalid (not finite or outside the domain): "
        "the loss is not defined around x",
    14: "the model proposes no step (zero or singular curvature) with the gradient above gtol",
}

def status_message(status: int, gnorm: float, options=None, extra: dict | None = None) -> str:
    """The stop reason in words, with the numbers that say how far from converged a run is:
    ``iteration budget used (maxiter = 500): |g| = 2.6e-05, 26x gtol = 1e-06`` rather than
    "maximum number of iterations reached", which reads as a failure of the method."""
    gtol, maxiter = getattr(options, "gtol", None), getattr(options, "maxiter", None)
    ratio = gnorm / gtol if gtol else 0.0
    above = (f", {ratio:.0f}x gtol = {gtol:g}" if gtol and ratio >= 100 else
             f", {ratio:.3g}x gtol = {gtol:g}" if gtol and gnorm > gtol else
             f", below gtol = {gtol:g}" if gtol else "")
    if status == 0:
        return f"converged: |g| = {gnorm:.3g}" + (f" below gtol = {gtol:g}" if gtol else "")
    if status == 1:
        budget = f" (maxiter = {maxiter})" if maxiter is not None else ""
        return f"iteration budget used{budget}: |g| = {gnorm:.3g}{above}"
    base = STATUS_MESSAGES.get(status) or (extra or {}).get(status) or f"status {status}"
    return f"{base}; |g| = {gnorm:.3g}{above}"


STATUS_ROUNDOFF = 8
#: the model's predicted change is at f's round-off below this multiple of eps |f|
ROUNDOFF = 100 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs; built from a method's options (see ``invfem.optim.api``)."""

    initial_radius: float
    max_radius: float
    eta: float
    gtol: float
    maxiter: int
    xtol: float = 1e-15
    shrink: float = 0.25
    expand: float = 2.0
    shrink_below: float = 0.25
    expand_above: float = 0.75
    ftol: float = 0.0               # least squares: stop once an accepted step lowers f by < ftol f
    step_xtol: float = 0.0          # least squares: stop at a step shorter than step_xtol (step_xtol + ||x||)
    max_nfev: int | None = None     # stop after this many evaluations of f
    shrink_from_step: bool = False  # shrink to shrink * ||step|| (scipy trf, Moré's LM) instead of the radius
    accept_decrease: bool = False   # accept any step that lowers f (scipy trf: rho's correction only moves the radius)

    @classmethod
    def from_options(cls, o):
        return cls(o.initial_radius, o.max_radius, o.eta, o.gtol, o.maxiter, o.xtol, o.shrink, o.expand,
                   o.shrink_below, o.expand_above)


def trust_region(oracle, x0: np.ndarray, build_model, settings: LoopSettings, callback=None, checkpoint=None,
                 resume=None):
    """Run the loop from ``x0``; ``build_model(x, g, previous)`` returns the model at x
    (``previous``: the model of the last accepted iterate, or None, for warm starts).

    Returns (x, f, g, status, history); ``history[k]`` is the state after k iterations
    (entry 0: the start) with f, gnorm (the optimality measure), radius (the one the step
    used), rho, step_norm, accepted, inner_iterations, hard_case, negative_curvature,
    f_trial, the cumulative nfev/njev/nhev and the wall time. ``checkpoint`` /
    ``resume``: see :mod:`invfem.optim.checkpoint` (the radius and the model's warm start
    are kept, so a resumed run takes the same steps).
    """
    if resume is None:
        start, k0 = time.perf_counter(), 0
        x = np.array(x0, dtype=np.float64)
        f, g = oracle.value_and_grad(x)
        if not math.isfinite(f) or not all_finite(g):
            raise NonFiniteError(f"fun or its gradient is not finite at x0 (f = {f})")
        model = build_model(x, g, None)
        radius = settings.initial_radius
        history = [history_entry(0, f, model.optimality, oracle, start)]
    else:
        start, history, k0, x, f, g = restore_common(oracle, resume, "trust-region")
        model = replayed(oracle, resume, lambda: build_model(x, g, None))
        if hasattr(model, "restore"):
            model.restore(resume["model"])
        radius = float(resume["radius"])

    def state():
        return common_state("trust-region", len(history) - 1, x, f, g, history, oracle, start, radius=radius,
                            model=model.warm_state() if hasattr(model, "warm_state") else None)

    status = 1
    trials = invalid = 0                 # trial points since the last accepted iterate, and how many were not finite
    for k in range(k0 + 1, settings.maxiter + 1):
        if checkpoint is not None:
            checkpoint.maybe(k - 1, state)
        if model.optimality < settings.gtol:
            status = 0
            break
        if settings.max_nfev is not None and oracle.nfev >= settings.max_nfev:
            status = 12
            break
        step = model.step(radius)
        if abs(step.predicted) <= ROUNDOFF * abs(f) or step.norm == 0:
            # rho is round-off noise here, but the quadratic model is exact at this scale: take
            # the step while it still lowers the optimality measure, stop at the first that does not
            roundoff = _roundoff_step(oracle, x, f, step, model, build_model)
            if roundoff is None:
                status = _roundoff_status(trials, invalid, step, model, f)
                break
            x, f, g, model = roundoff
            trials = invalid = 0
            history.append(history_entry(k, f, model.optimality, oracle, start, radius=radius,
                                         step_norm=float(np.linalg.norm(step.p)), accepted=True,
                                         inner_iterations=int(step.inner_iterations), f_trial=f))
            if callback is not None and callback({**history[-1], "x": oracle.tensor(x.copy())}):
                status = 2
                break
            continue
        x_trial = x + step.p if step.x_new is None else step.x_new
        f_trial = oracle.value(x_trial)
        finite = math.isfinite(f_trial)
        trials, invalid = trials + 1, invalid + (not finite)
        if finite and step.predicted > 0:
            rho = (f - f_trial - step.correction) / step.predicted
        elif finite and settings.eta == -math.inf:
            rho = math.nan  # Newton variants: no model decrease predicted, the step is taken anyway
        else:
            rho = -math.inf
        used = radius
        if not finite:
            radius = settings.shrink * min(radius, step.norm)
        elif rho < settings.shrink_below:
            if settings.shrink_from_step:
                radius = settings.shrink * step.norm
            elif math.isfinite(radius):
                radius = settings.shrink * radius
        elif rho > settings.expand_above and step.hits_boundary:
            radius = min(settings.expand * radius, settings.max_radius)
        accepted = finite and (rho > settings.eta or settings.eta == -math.inf or
                               settings.accept_decrease and f_trial < f)
        step_norm = math.sqrt(float(step.p @ step.p))
        stop = _tolerance_status(settings, f, f_trial, rho, step_norm, x) if finite else None
        if accepted:
            trials = invalid = 0
            f_before = f
            x = x_trial
            f, g = oracle.value_and_grad(x)
            if hasattr(model, "observe"):
                model.observe(rho, step, f_before, f)
            if not all_finite(g):
                raise NonFiniteError(f"the gradient is not finite at iteration {k} (f = {f})")
            model = build_model(x, g, model)
        entry = history_entry(k, f, model.optimality, oracle, start, radius=used, rho=rho,
                       step_norm=step_norm, accepted=accepted,
                       inner_iterations=int(step.inner_iterations), hard_case=bool(step.hard_case),
                       negative_curvature=bool(step.negative_curvature), hits_boundary=bool(step.hits_boundary),
                       f_trial=f_trial)
        history.append(entry)
        if callback is not None and callback({**entry, "x": oracle.tensor(x.copy())}):
            status = 2
            break
        if stop is not None:
            status = stop
            break
        if radius < settings.xtol * (1 + np.linalg.norm(x)):
            status = 13 if trials and invalid == trials else 3
            break
    else:
        status = 0 if model.optimality < settings.gtol else 1
    return x, f, g, status, history


def _roundoff_status(trials: int, invalid: int, step, model, f: float) -> int:
    """Why a round-off-sized step ends the run: 13 where every trial since the last accepted
    iterate was invalid (the radius shrank on NaNs, not on convergence), 14 where the model
    proposes no step although the gradient is far from zero, else round-off convergence (8)."""
    if trials and invalid == trials:
        return 13
    if step.norm == 0 and model.optimality > math.sqrt(np.finfo(np.float64).eps) * max(1.0, abs(f)):
        return 14
    return STATUS_ROUNDOFF


def all_finite(v: np.ndarray) -> bool:
    """Whether every entry is finite: one sum (finite sums have finite terms), the exact test
    only when the sum is not (an overflow of finite terms)."""
    return math.isfinite(float(v.sum())) or bool(np.all(np.isfinite(v)))


def _tolerance_status(settings, f, f_trial, rho, step_norm, x):
    """scipy's least-squares tests after a trial (``check_termination``): 9 ftol, 10 xtol, 11 both, else None."""
    ftol = settings.ftol > 0 and f - f_trial < settings.ftol * f and rho > 0.25
    xtol = settings.step_xtol > 0 and step_norm < settings.step_xtol * (settings.step_xtol + math.sqrt(float(x @ x)))
    return 11 if ftol and xtol else 9 if ftol else 10 if xtol else None


def _roundoff_step(oracle, x, f, step, model, build_model):
    """The step of a model whose predicted change is below f's round-off: (x, f, g, model) after
    it when f does not rise beyond round-off and the optimality measure drops, else None (stop)."""
    if step.norm == 0:
        return None
    x_new = x + step.p if step.x_new is None else step.x_new
    f_new, g_new = oracle.trial_value_and_grad(x_new)
    if g_new is None or not math.isfinite(f_new) or f_new > f + ROUNDOFF * abs(f) or not all_finite(g_new):
        return None
    new_model = build_model(x_new, g_new, model)
    if not new_model.optimality < model.optimality:
        return None
    return x_new, f_new, g_new, new_model


def history_entry(k, f, optimality, oracle, start, **step):
    """One history record (the same keys for every method); step fields absent from ``step`` stay blank."""
    blank = {"radius": None, "rho": None, "step_norm": None, "accepted": None, "inner_iterations": 0,
             "hard_case": False, "negative_curvature": False, "hits_boundary": False, "f_trial": None}
    return {"iter": k, "f": float(f), "gnorm": float(optimality), **blank, **step, "nfev": oracle.nfev, "njev": oracle.njev,
            "nhev": oracle.nhev, "invalid_trials": oracle.ninvalid, "time": time.perf_counter() - start - oracle.paused}
