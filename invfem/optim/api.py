"""``minimize(fun, x0, method=...)``: the one entry point every study calls.

Second-order methods run the one loop of ``invfem.optim.trust_region`` with a model from
``invfem.optim.steps``; baselines (Adam, scipy BFGS and L-BFGS-B) share the oracle and the
history format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from invfem.errors import ConfigError
from invfem.linalg.jacobian import as_dense
from invfem.optim import baselines, steps
from invfem.optim.bfgs import STATUS_LINE_SEARCH, bfgs
from invfem.optim.bounds import flat_start, interior_start, parse_bounds
from invfem.optim.checkpoint import run_hooks
from invfem.optim.options import (AdamOptions, BfgsOptions, ExactNewtonOptions, KrylovOptions, NewtonOptions,
                                  ReflectiveOptions, ScipyOptions, TrustExactOptions, parse_options)
from invfem.optim.least_squares import (LeastSquaresOptions, ResidualOracle, _auto_jacobian, check_method,
                                        matrix_free, run_least_squares)
from invfem.optim.oracle import Oracle
from invfem.optim.result import OptimizeResult
from invfem.optim.trust_region import STATUS_ROUNDOFF, LoopSettings, status_message, trust_region
from invfem.runtime import reuse_freed_memory


@dataclass(frozen=True)
class Method:
    """A registered method: its options class, and either a trust-region model or a runner."""

    options: type
    model: type | None = None
    runner: object = None
    bounds: bool = False
    newton: bool = False
    derivatives: str = "gradient"   # "hessian" (dense), "hvp", "gradient" or "jacobian" (of residuals): what it consumes
    host_blas_threads: int | None = 1   # numpy/scipy (OpenBLAS) threads during the run; None: leave them


METHODS = {
    "trust-exact": Method(TrustExactOptions, steps.ExactModel, derivatives="hessian"),
    "trust-ncg": Method(KrylovOptions, steps.KrylovModel, derivatives="hvp"),
    "trust-krylov": Method(KrylovOptions, steps.LanczosModel, derivatives="hvp"),
    "trust-reflective": Method(ReflectiveOptions, steps.ReflectiveModel, bounds=True, derivatives="hessian"),
    "newton-damped": Method(NewtonOptions, steps.NewtonModel, newton=True, derivatives="hessian"),
    "newton-exact": Method(ExactNewtonOptions, steps.ExactNewtonModel, newton=True, derivatives="hessian"),
    "saddle-free-newton": Method(NewtonOptions, steps.SaddleFreeModel, newton=True, derivatives="hessian"),
    "adam": Method(AdamOptions, runner=baselines.adam),
    "bfgs": Method(BfgsOptions, runner=bfgs),
    # scipy's BFGS does two dense n^3 products per iteration in numpy: it keeps its BLAS threads
    "scipy-bfgs": Method(ScipyOptions, runner=baselines.scipy_method("BFGS"), host_blas_threads=None),
    "l-bfgs-b": Method(ScipyOptions, runner=baselines.scipy_method("L-BFGS-B"), bounds=True),
    # least squares on residuals (invfem.optim.least_squares), f = ||r||^2
    "trf": Method(LeastSquaresOptions, bounds=True, derivatives="jacobian"),
    "dogbox": Method(LeastSquaresOptions, bounds=True, derivatives="jacobian"),
    "lm": Method(LeastSquaresOptions, derivatives="jacobian"),
}

#: statuses that mean converged (minimize's codes)
SUCCESS = (0, STATUS_ROUNDOFF, 9, 10, 11)

_EXTRA_STATUS = {4: "non-finite loss", 5: "the scipy method stopped early",
                 STATUS_LINE_SEARCH: "line search found no acceptable step (no further decrease representable)"}


def minimize(fun, x0, method: str = "trust-exact", bounds=None, options=None, callback=None,
             jac=None, hess=None, hessp=None, checkpoint=None, resume=None, residual=None,
             residual_jacobian=None) -> OptimizeResult:
    """Minimise ``fun`` (flat float64 tensor -> 0-d tensor) from ``x0``.

    * ``method``: one of ``METHODS`` (trust-exact, trust-ncg, trust-krylov, trust-reflective,
      newton-damped, newton-exact, saddle-free-newton, adam, bfgs (invfem's O(n^2) BFGS),
      scipy-bfgs, l-bfgs-b, and on residuals trf, dogbox, lm).
    * ``residual(x) -> (m,)`` and ``residual_jacobian(x) -> (m, n)`` (None: by ``torch.func``)
      of a loss ``fun = ||residual||^2`` (a :class:`~invfem.problem.Problem`'s ``residual`` and
      ``jacobian``): the least-squares methods ``trf``, ``dogbox``, ``lm`` run
      :mod:`invfem.optim.least_squares` on them and report ``f = ||r||^2`` (robust losses:
      twice scipy's cost); ``hess="gauss-newton"`` gives the Hessian methods ``2 J^T J``.
    * ``bounds``: ``(lower, upper)`` (tensors, arrays or scalars; +-inf allowed) or
      ``scipy.optimize.Bounds``; only trust-reflective and l-bfgs-b accept them. An x0
      outside them is clipped into them with a warning (as scipy does); trust-reflective
      keeps iterates strictly feasible and moves entries of x0 lying on a bound inside by a
      relative 1e-10.
    * ``options``: None, a dict, a preset name (``"reference-001"`` for trust-ncg), or the
      method's options dataclass; unknown keys raise ``ConfigError`` naming the valid ones.
    * Derivatives come from ``torch.func`` unless ``jac(x)``, ``hess(x)`` or ``hessp(x, v)``
      are given. ``fun`` sees tensors on the device of ``x0``; ``x`` and ``jac`` come back there.
    * ``callback(state)`` receives each iteration's state (the history entry plus ``x``) and
      stops the run by returning True. The history's ``time`` leaves out the time spent in
      ``callback`` and ``checkpoint`` (it is the method's own wall time).
    * ``checkpoint``: an :class:`~invfem.optim.checkpoint.Checkpoint` that receives the run's
      state every so many iterations or seconds; ``resume``: such a state, to continue the
      run from it (``x0`` is then ignored). Trust-region, Newton, Adam and ``bfgs`` runs
      resume exactly; scipy's methods from their last x with a fresh memory.
    * A trial point where ``fun`` is NaN/inf, or raises :class:`~invfem.errors.InvalidTrialPoint`
      (e.g. a coefficient <= 0), is a rejected step; the history counts the latter
      (``invalid_trials``). scipy's line searches cannot reject a point, so for ``l-bfgs-b``
      and ``scipy-bfgs`` an undefined trial point is shown to them as a value far above the
      last (``baselines.UNDEFINED_PENALTY``) with the last gradient: they backtrack.

    Returns an :class:`OptimizeResult`: ``x`` and ``jac`` as tensors, ``fun``, ``nit``,
    ``nfev``, ``njev``, ``nhev``, ``status`` (0 converged, 1 maxiter, 2 callback, 3 radius
    collapsed, 4 non-finite loss, 5 scipy stopped, 6 line search failed, 8 the predicted
    reduction is at f's round-off; 7 is no longer used), ``message``,
    ``success`` (status 0 or 8; least squares also 9 ftol, 10 xtol, 11 both, not 12 max_nfev),
    ``history``.

    The first call keeps freed memory in the process for reuse (:func:`invfem.runtime.reuse_freed_memory`).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {sorted(METHODS)}")
    reuse_freed_memory()        # the dense per-iteration work otherwise faults its matrices in page by page
    spec = METHODS[method]
    opts = parse_options(method, spec.options, options)
    x0, device = flat_start(x0)
    n = x0.shape[0]
    if spec.derivatives == "jacobian":
        if residual is None:
            raise ConfigError(f"method {method!r} works on residuals: pass residual= (a Problem's residual; "
                              "its loss must be ||residual||^2)")
        check_method(method, opts, bounds is not None)
    kind = hess if isinstance(hess, str) else getattr(opts, "hessian", "exact")
    hess = None if isinstance(hess, str) else hess
    gauss_newton = None
    if kind != "exact":
        gauss_newton = gauss_newton_hessian(kind, residual, residual_jacobian)
        if kind == "auto" and method != "trust-exact":
            raise ConfigError(f"hessian 'auto' (the switch between Gauss-Newton and the exact Hessian) is a "
                              f"trust-exact option, not {method!r}'s; use hessian: gauss-newton")
        if kind == "gauss-newton":
            hess = gauss_newton
    if bounds is not None:
        if not spec.bounds:
            raise ConfigError(f"method {method!r} does not take bounds; use one of "
                              f"{sorted(k for k, m in METHODS.items() if m.bounds)}")
        lower, upper = parse_bounds(bounds, n)
        x0 = interior_start(x0, lower, upper, strictly=method in ("trust-reflective", "trf"))
        bounds = (lower, upper)
    elif method in ("trust-reflective", "trf", "dogbox", "lm"):
        bounds = (np.full(n, -np.inf), np.full(n, np.inf))
    if resume is not None and resume.get("method") != method:
        raise ConfigError(f"cannot resume a {resume.get('method')!r} run with method {method!r}")
    if spec.derivatives == "jacobian":
        oracle = ResidualOracle(residual, n, jac=residual_jacobian, loss=opts.loss, f_scale=opts.f_scale,
                                value_scale=2.0, device=device, operators=matrix_free(method, opts))
    else:
        oracle = Oracle(fun, n, jac=jac, hess=hess, hessp=hessp, hessian_chunk=getattr(opts, "hessian_chunk", None),
                        device=device, gauss_newton=gauss_newton if kind == "auto" else None)
    callback, checkpoint = run_hooks(callback, checkpoint, oracle, method)
    # The heavy algebra is torch's; numpy/scipy (OpenBLAS) only do vector work and the scipy
    # baselines' bookkeeping. Two BLAS thread pools spin against each other on a small
    # machine (L-BFGS-B measured 27 ms/iteration instead of 5 on 2 cores), so OpenBLAS gets one.
    with threadpool_limits(limits=spec.host_blas_threads, user_api="blas"):
        x, f, g, status, history = _run(spec, opts, oracle, x0, bounds, callback, checkpoint, resume, method)
    optimality = history[-1]["gnorm"]
    message = status_message(status, optimality, opts, _EXTRA_STATUS)
    return OptimizeResult(x=torch.as_tensor(x, device=device), fun=float(f), jac=torch.as_tensor(g, device=device),
                          nit=len(history) - 1,
                          nfev=oracle.nfev, njev=oracle.njev, nhev=oracle.nhev, status=status, message=message,
                          success=status in SUCCESS, optimality=optimality, history=history, method=method)


def gauss_newton_hessian(kind: str, residual, residual_jacobian):
    """``x -> 2 J^T J``: the Gauss–Newton Hessian of ``loss = ||r||^2`` (``kind`` names the option
    that asked for it, for the errors)."""
    from invfem.optim.options import CURVATURES
    if kind not in CURVATURES:
        raise ConfigError(f"hess must be a callable or one of {list(CURVATURES)}, got {kind!r}")
    if residual is None:
        raise ConfigError(f"hessian {kind!r} needs residual= (a Problem's residual; its loss must be ||residual||^2)")
    jacobian = residual_jacobian if residual_jacobian is not None else (
        lambda x: _auto_jacobian(residual, x, int(residual(x).shape[0])))

    def gauss_newton(x):
        j = as_dense(jacobian(x))
        return 2.0 * (j.T @ j)
    return gauss_newton


def _run(spec, opts, oracle, x0, bounds, callback, checkpoint=None, resume=None, method=None):
    """The method's runner (baselines), a least-squares model, or the trust-region loop with its model."""
    if spec.derivatives == "jacobian":
        return run_least_squares(oracle, x0, method, opts, bounds, callback, checkpoint, resume)
    if spec.runner is not None:
        scipy_bounds = list(zip(*bounds)) if bounds is not None else None
        return spec.runner(oracle, x0, opts, callback, scipy_bounds, checkpoint=checkpoint, resume=resume)
    if spec.newton:
        settings = LoopSettings(math.inf, math.inf, -math.inf, opts.gtol, opts.maxiter, shrink_below=-math.inf)
    else:
        settings = LoopSettings.from_options(opts)
    return trust_region(oracle, x0, lambda x, g, previous: spec.model(oracle, x, g, opts, bounds, previous=previous),
                        settings, callback, checkpoint=checkpoint, resume=resume)
