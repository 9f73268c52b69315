"""``minimize(fun, x0, method=...)``: the entry point every study calls.

This first version holds the first-order baselines (``adam``, and scipy's ``l-bfgs-b``
and ``bfgs`` fed with exact torch gradients); the trust-region family plugs in behind the
same signature (see the ``METHODS`` registry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace

import numpy as np
import scipy.optimize
import torch

from invfem.derivatives import value_and_grad
from invfem.errors import ConfigError, ShapeError


class OptimizeResult(scipy.optimize.OptimizeResult):
    """scipy's result object plus ``history``: a list of per-iteration dicts."""


@dataclass(frozen=True)
class AdamOptions:
    """Adam (torch) with a fixed learning rate."""

    lr: float = 1e-3
    maxiter: int = 1000
    gtol: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class ScipyOptions:
    """Options passed to ``scipy.optimize.minimize`` (quasi-Newton baselines)."""

    maxiter: int = 1000
    gtol: float = 1e-8


def _adam(fun, x0, options: AdamOptions, callback, record):
    x = x0.clone()
    opt = torch.optim.Adam([x], lr=options.lr, betas=options.betas)
    status, message = 1, "maximum number of iterations reached"
    for it in range(options.maxiter):
        f, g = value_and_grad(fun, x.detach())
        gnorm = float(torch.linalg.norm(g))
        if record(it, x, f, g, step_norm=float("nan")) or (callback is not None and callback(record.history[-1])):
            status, message = 2, "stopped by callback"
            break
        if gnorm < options.gtol:
            status, message = 0, "gradient norm below gtol"
            break
        if not torch.isfinite(f):
            status, message = 3, "non-finite loss"
            break
        old = x.detach().clone()
        x.grad = g
        opt.step()
        record.history[-1]["step_norm"] = float(torch.linalg.norm(x.detach() - old))
    return x.detach(), status, message


def _scipy(method_name):
    def run(fun, x0, options: ScipyOptions, callback, record):
        it = [0]

        def fg(xn):
            f, g = value_and_grad(fun, torch.as_tensor(xn, dtype=torch.float64))
            return float(f), g.numpy().astype(np.float64)

        def cb(xn):
            x = torch.as_tensor(xn, dtype=torch.float64)
            f, g = value_and_grad(fun, x)
            stop = record(it[0], x, f, g, step_norm=float("nan"))
            it[0] += 1
            if stop or (callback is not None and callback(record.history[-1])):
                raise StopIteration

        try:
            res = scipy.optimize.minimize(fg, x0.numpy(), jac=True, method=method_name, callback=cb,
                                          options={"maxiter": options.maxiter, "gtol": options.gtol})
            return torch.as_tensor(res.x), int(res.status), str(res.message)
        except StopIteration:
            return record.last_x, 2, "stopped by callback"
    return run


METHODS = {
    "adam": (_adam, AdamOptions),
    "l-bfgs-b": (_scipy("L-BFGS-B"), ScipyOptions),
    "bfgs": (_scipy("BFGS"), ScipyOptions),
}


class _Recorder:
    def __init__(self):
        self.history, self.start, self.last_x = [], time.perf_counter(), None
        self.nfev = 0

    def __call__(self, it, x, f, g, **extra):
        self.last_x = x.detach().clone()
        self.history.append({"iter": it, "f": float(f), "gnorm": float(torch.linalg.norm(g)),
                             "time": time.perf_counter() - self.start, **extra})
        return False


def _options(cls, options):
    if options is None:
        return cls()
    if isinstance(options, cls):
        return options
    if not isinstance(options, dict):
        raise ConfigError(f"options must be a dict or {cls.__name__}, got {type(options).__name__}")
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {cls.__name__}; valid: {sorted(valid)}")
    return replace(cls(), **options)


def minimize(fun, x0: torch.Tensor, method: str = "adam", options=None, callback=None) -> OptimizeResult:
    """Minimise ``fun`` (flat float64 tensor -> 0-d tensor) from ``x0``.

    Returns an :class:`OptimizeResult` with ``x, fun, jac, nit, nfev, njev, nhev, status,
    message, success`` and ``history`` (one dict per iteration: ``f``, ``gnorm``,
    ``step_norm``, ``time``). ``callback(state)`` receives that dict and stops the run by
    returning True.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {sorted(METHODS)}")
    x0 = torch.as_tensor(x0, dtype=torch.float64)
    if x0.ndim != 1:
        raise ShapeError(f"x0 must be a flat vector, got shape {tuple(x0.shape)}")
    if not torch.all(torch.isfinite(x0)):
        raise ValueError("x0 contains NaN or inf")
    run, options_cls = METHODS[method]
    record = _Recorder()
    x, status, message = run(fun, x0.detach().clone(), _options(options_cls, options), callback, record)
    f, g = value_and_grad(fun, x)
    return OptimizeResult(x=x, fun=float(f), jac=g, nit=len(record.history), nfev=len(record.history) + 1,
                          njev=len(record.history) + 1, nhev=0, status=status, message=message,
                          success=status == 0, history=record.history)
