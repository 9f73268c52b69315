"""``minimize(fun, x0, method=...)``: the one entry point every study calls.

Second-order methods run the one loop of ``invfem.optim.trust_region`` with a model from
``invfem.optim.steps``; baselines (Adam, scipy BFGS and L-BFGS-B) share the oracle and the
history format.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from invfem.errors import ConfigError, ShapeError
from invfem.optim import baselines, steps
from invfem.optim.bfgs import STATUS_LINE_SEARCH, bfgs
from invfem.optim.checkpoint import Checkpoint
from invfem.optim.options import (AdamOptions, BfgsOptions, ExactNewtonOptions, KrylovOptions, NewtonOptions,
                                  ReflectiveOptions, ScipyOptions, TrustExactOptions, parse_options)
from invfem.optim.oracle import Oracle
from invfem.optim.trust_region import STATUS_MESSAGES, STATUS_ROUNDOFF, LoopSettings, trust_region
from invfem.runtime import reuse_freed_memory


class OptimizeResult(dict):
    """The fields of scipy's result (``x, fun, jac, nit, nfev, njev, nhev, status, message,
    success``) plus ``history`` (one dict per iteration, entry 0 the start) and ``method``; a
    dict whose keys are also attributes, as scipy's ``OptimizeResult`` (not derived from it, so
    that importing invfem does not import ``scipy.optimize``: 0.25 s of every ``invfem run``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __dir__(self):
        return list(self.keys())

    def __repr__(self):
        width = max(map(len, self), default=0) + 1
        return "\n".join(f"{k.rjust(width)}: {v!r}" for k, v in self.items() if k != "history")


@dataclass(frozen=True)
class Method:
    """A registered method: its options class, and either a trust-region model or a runner."""

    options: type
    model: type | None = None
    runner: object = None
    bounds: bool = False
    newton: bool = False
    derivatives: str = "gradient"   # "hessian" (dense), "hvp" or "gradient": what the method consumes
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
}

_EXTRA_STATUS = {4: "non-finite loss", 5: "the scipy method stopped early",
                 STATUS_LINE_SEARCH: "line search found no acceptable step (no further decrease representable)"}


def _bounds(bounds, n):
    """(lower, upper) float64 arrays from a pair of tensors/arrays/scalars or ``scipy.optimize.Bounds``."""
    optimize = sys.modules.get("scipy.optimize")     # a user's Bounds means scipy.optimize is loaded already
    if optimize is not None and isinstance(bounds, optimize.Bounds):
        lower, upper = bounds.lb, bounds.ub
    else:
        try:
            lower, upper = bounds
        except (TypeError, ValueError):
            raise ConfigError("bounds must be a pair (lower, upper) or scipy.optimize.Bounds") from None
    out = []
    for name, b, fill in (("lower", lower, -np.inf), ("upper", upper, np.inf)):
        b = np.full(n, fill) if b is None else torch.as_tensor(b, dtype=torch.float64).detach().numpy()
        if np.ndim(b) == 0:
            b = np.full(n, float(b))
        if np.shape(b) != (n,):
            raise ShapeError(f"{name} bound must be a scalar or have shape ({n},), got {np.shape(b)}")
        if np.any(np.isnan(b)):
            raise ValueError(f"{name} bound contains NaN")
        out.append(np.array(b, dtype=np.float64))
    lower, upper = out
    bad = np.flatnonzero(lower > upper)
    if bad.size:
        i = bad[0]
        raise ValueError(f"lower bound exceeds upper bound at index {i}: {lower[i]} > {upper[i]} "
                         f"({bad.size} such entries)")
    return lower, upper


def _interior(x0, lower, upper, method):
    outside = np.flatnonzero((x0 < lower) | (x0 > upper))
    if outside.size:            # as scipy.optimize.minimize: clip into the bounds, with a warning
        i = outside[0]
        warnings.warn(f"x0 lies outside the bounds at {outside.size} entries (first: index {i}, {x0[i]} not in "
                      f"[{lower[i]}, {upper[i]}]); clipped into the bounds", RuntimeWarning, stacklevel=3)
        x0 = np.clip(x0, lower, upper)
    if method == "trust-reflective":
        fixed = np.flatnonzero(lower == upper)
        if fixed.size:
            raise ValueError(f"trust-reflective needs lower < upper; equal bounds at indices {fixed[:5].tolist()} "
                             "(remove fixed variables from the parameter vector)")
        # strictly feasible start: move points on a bound inside by a relative 1e-10
        step = 1e-10 * np.maximum(1.0, np.abs(x0))
        with np.errstate(invalid="ignore"):
            middle = np.where(np.isfinite(lower) & np.isfinite(upper), 0.5 * (lower + upper), x0)
        x0 = np.where(x0 <= lower, np.minimum(lower + step, middle), x0)
        x0 = np.where(x0 >= upper, np.maximum(upper - step, middle), x0)
    return x0


def minimize(fun, x0, method: str = "trust-exact", bounds=None, options=None, callback=None,
             jac=None, hess=None, hessp=None, checkpoint=None, resume=None) -> OptimizeResult:
    """Minimise ``fun`` (flat float64 tensor -> 0-d tensor) from ``x0``.

    * ``method``: one of ``METHODS`` (trust-exact, trust-ncg, trust-krylov, trust-reflective,
      newton-damped, newton-exact, saddle-free-newton, adam, bfgs (invfem's O(n^2) BFGS),
      scipy-bfgs, l-bfgs-b).
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
    ``success`` (status 0 or 8), ``history``.

    The first call keeps freed memory in the process for reuse (:func:`invfem.runtime.reuse_freed_memory`).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {sorted(METHODS)}")
    reuse_freed_memory()        # the dense per-iteration work otherwise faults its matrices in page by page
    spec = METHODS[method]
    opts = parse_options(method, spec.options, options)
    x0 = torch.as_tensor(x0, dtype=torch.float64).detach()
    if x0.ndim != 1:
        raise ShapeError(f"x0 must be a flat vector, got shape {tuple(x0.shape)}")
    device = x0.device
    x0 = x0.cpu().numpy().copy()
    if not np.all(np.isfinite(x0)):
        raise ValueError(f"x0 contains NaN or inf at indices {np.flatnonzero(~np.isfinite(x0))[:5].tolist()}")
    n = x0.shape[0]
    if bounds is not None:
        if not spec.bounds:
            raise ConfigError(f"method {method!r} does not take bounds; use one of "
                              f"{sorted(k for k, m in METHODS.items() if m.bounds)}")
        lower, upper = _bounds(bounds, n)
        x0 = _interior(x0, lower, upper, method)
        bounds = (lower, upper)
    elif method == "trust-reflective":
        bounds = (np.full(n, -np.inf), np.full(n, np.inf))
    if resume is not None and resume.get("method") != method:
        raise ConfigError(f"cannot resume a {resume.get('method')!r} run with method {method!r}")
    oracle = Oracle(fun, n, jac=jac, hess=hess, hessp=hessp, hessian_chunk=getattr(opts, "hessian_chunk", None),
                    device=device)
    if checkpoint is not None:              # every saved state names its method
        checkpoint = Checkpoint(_untimed(lambda state, save=checkpoint.save: save({**state, "method": method}),
                                         oracle), checkpoint.every, checkpoint.seconds)
    if callback is not None:
        callback = _untimed(callback, oracle)
    # The heavy algebra is torch's; numpy/scipy (OpenBLAS) only do vector work and the scipy
    # baselines' bookkeeping. Two BLAS thread pools spin against each other on a small
    # machine (L-BFGS-B measured 27 ms/iteration instead of 5 on 2 cores), so OpenBLAS gets one.
    with threadpool_limits(limits=spec.host_blas_threads, user_api="blas"):
        x, f, g, status, history = _run(spec, opts, oracle, x0, bounds, callback, checkpoint, resume)
    message = STATUS_MESSAGES.get(status) or _EXTRA_STATUS[status]
    optimality = history[-1]["gnorm"]
    return OptimizeResult(x=torch.as_tensor(x, device=device), fun=float(f), jac=torch.as_tensor(g, device=device),
                          nit=len(history) - 1,
                          nfev=oracle.nfev, njev=oracle.njev, nhev=oracle.nhev, status=status, message=message,
                          success=status in (0, STATUS_ROUNDOFF), optimality=optimality, history=history, method=method)


def _untimed(fn, oracle):
    """``fn`` with its time left out of the run's clock (``oracle.paused``): a callback's
    diagnostics or a checkpoint's write are not the method's cost."""
    def wrapped(*args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            oracle.paused += time.perf_counter() - t0
    return wrapped


def _run(spec, opts, oracle, x0, bounds, callback, checkpoint=None, resume=None):
    """The method's runner (baselines) or the trust-region loop with its model."""
    if spec.runner is not None:
        scipy_bounds = list(zip(*bounds)) if bounds is not None else None
        return spec.runner(oracle, x0, opts, callback, scipy_bounds, checkpoint=checkpoint, resume=resume)
    if spec.newton:
        settings = LoopSettings(math.inf, math.inf, -math.inf, opts.gtol, opts.maxiter, shrink_below=-math.inf)
    else:
        settings = LoopSettings.from_options(opts)
    return trust_region(oracle, x0, lambda x, g, previous: spec.model(oracle, x, g, opts, bounds, previous=previous),
                        settings, callback, checkpoint=checkpoint, resume=resume)
