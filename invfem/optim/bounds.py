"""An optimizer's start and bounds: the flat start vector, parsed bounds, a feasible (or strictly feasible) start."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch

from invfem.errors import ConfigError, ShapeError


def flat_start(x0):
    """``(x0 as a float64 numpy copy, its device)`` of a flat, finite start vector; one-line errors otherwise."""
    x0 = torch.as_tensor(x0, dtype=torch.float64).detach()
    if x0.ndim != 1:
        raise ShapeError(f"x0 must be a flat vector, got shape {tuple(x0.shape)}")
    x = x0.cpu().numpy().copy()
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x0 contains NaN or inf at indices {np.flatnonzero(~np.isfinite(x))[:5].tolist()}")
    return x, x0.device


def parse_bounds(bounds, n, strict: bool = False):
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
    bad = np.flatnonzero(lower >= upper if strict else lower > upper)
    if bad.size:
        i = bad[0]
        relation = ">=" if strict else ">"
        raise ValueError(f"lower bound {'is not below' if strict else 'exceeds'} upper bound at index {i}: "
                         f"{lower[i]} {relation} {upper[i]} ({bad.size} such entries)")
    return lower, upper


def interior_start(x0, lower, upper, strictly: bool):
    """x0 clipped into the bounds (with a warning, as scipy.optimize.minimize); ``strictly``: entries
    on a bound moved inside by a relative 1e-10 (interior methods: trust-reflective, trf)."""
    outside = np.flatnonzero((x0 < lower) | (x0 > upper))
    if outside.size:            # as scipy.optimize.minimize: clip into the bounds, with a warning
        i = outside[0]
        warnings.warn(f"x0 lies outside the bounds at {outside.size} entries (first: index {i}, {x0[i]} not in "
                      f"[{lower[i]}, {upper[i]}]); clipped into the bounds", RuntimeWarning, stacklevel=3)
        x0 = np.clip(x0, lower, upper)
    if strictly:
        fixed = np.flatnonzero(lower == upper)
        if fixed.size:
            raise ValueError(f"an interior method needs lower < upper; equal bounds at indices {fixed[:5].tolist()} "
                             "(remove fixed variables from the parameter vector)")
        # strictly feasible start: move points on a bound inside by a relative 1e-10
        step = 1e-10 * np.maximum(1.0, np.abs(x0))
        with np.errstate(invalid="ignore"):
            middle = np.where(np.isfinite(lower) & np.isfinite(upper), 0.5 * (lower + upper), x0)
        x0 = np.where(x0 <= lower, np.minimum(lower + step, middle), x0)
        x0 = np.where(x0 >= upper, np.maximum(upper - step, middle), x0)
    return x0
