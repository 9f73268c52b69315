"""BFGS with an O(n^2) inverse-Hessian update (Nocedal & Wright, Algorithm 6.1).

scipy's ``BFGS`` updates its inverse Hessian as ``(I - rho s y^T) H (I - rho y s^T) + rho s s^T``
with two dense ``n x n x n`` products per iteration (about 3 GFLOP at n = 921). The same
matrix, expanded,

    H+ = H - rho (s (Hy)^T + (Hy) s^T) + (rho^2 y^T H y + rho) s s^T,

is a rank-two correction: one product ``H y`` and ONE pass over ``H`` (a ``k = 2`` GEMM in
place). ``H`` is a torch tensor on the oracle's device, so its products run on the same
thread pool as the loss and its gradient (a second BLAS pool — numpy's OpenBLAS — would
spin against torch's on a small machine and make both several times slower). The line search is scipy's (``line_search_wolfe1``, MINPACK's ``dcsrch``, with
``line_search_wolfe2`` as fallback, strong Wolfe ``c1 = 1e-4``, ``c2 = 0.9``), the initial
step guess and ``H0 = I`` are scipy's, so the iterates equal scipy's to round-off.

A trial point where the loss is NaN/inf (or undefined: InvalidTrialPoint) is a rejected
step, as in the trust-region loop:
the step length shrinks (x 0.25) until the loss is finite and decreases (Armijo); the
inverse Hessian is then updated only if the curvature ``y^T s`` is positive.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from invfem.errors import NonFiniteError
from invfem.optim.checkpoint import common_state, restore_common
from invfem.optim.trust_region import history_entry

STATUS_LINE_SEARCH = 6      # see invfem.optim.api: "line search found no acceptable step"


class _NonFiniteTrial(Exception):
    """Raised inside the line search when the loss is NaN/inf at a trial point."""


class _Cached:
    """f and g at the last point (the line search asks for them separately); non-finite f raises."""

    def __init__(self, oracle):
        self.oracle, self.x, self.f, self.g = oracle, None, None, None

    def _at(self, x):
        if self.x is None or not np.array_equal(x, self.x):
            self.f, self.g = self.oracle.trial_value_and_grad(x)
            self.x = np.array(x)
        if not math.isfinite(self.f):
            raise _NonFiniteTrial
        return self.f, self.g

    def fun(self, x):
        return self._at(x)[0]

    def grad(self, x):
        return self._at(x)[1]


def _line_search(cache, x, p, f, g, old_f, options):
    """scipy's wolfe1 -> wolfe2 sequence; returns (alpha, f_new, f_old, g_new, evaluations) or None."""
    import scipy.optimize    # here, not at import: `invfem run` with other methods never loads scipy.optimize (0.25 s)
    try:   # scipy's own line-search pair (private module, stable since scipy 1.0); public wolfe2 otherwise
        from scipy.optimize._linesearch import LineSearchWarning
        from scipy.optimize._linesearch import line_search_wolfe1 as _wolfe1
    except ImportError:  # pragma: no cover
        _wolfe1, LineSearchWarning = None, RuntimeWarning
    kwargs = dict(c1=options.c1, c2=options.c2)
    before = cache.oracle.njev
    ret = (None,)
    if _wolfe1 is not None:
        ret = _wolfe1(cache.fun, cache.grad, x, p, g, f, old_f, amin=1e-100, amax=1e100, **kwargs)
    if ret[0] is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LineSearchWarning)
            ret = scipy.optimize.line_search(cache.fun, cache.grad, x, p, g, f, old_f, amax=1e100, **kwargs)
    if ret[0] is None:
        return None
    alpha, _, _, f_new, f_old, g_new = ret
    if g_new is None:
        g_new = cache.grad(x + alpha * p)
    return alpha, f_new, f_old, np.asarray(g_new), cache.oracle.njev - before, True


def _backtrack(cache, x, p, f, g, alpha):
    """After a non-finite trial at step ``alpha``: shrink by 4 until finite and Armijo (or give up)."""
    slope = float(g @ p)
    before = cache.oracle.njev
    while alpha > 1e-20:
        alpha *= 0.25
        try:
            f_new, g_new = cache._at(x + alpha * p)
        except _NonFiniteTrial:
            continue
        if f_new <= f + 1e-4 * alpha * slope:
            return alpha, f_new, f, g_new, cache.oracle.njev - before, False
    return None


def bfgs(oracle, x0, options, callback=None, bounds=None, checkpoint=None, resume=None):
    """Run BFGS from ``x0``; returns (x, f, g, status, history) like every invfem runner.

    Stops when ``||g|| <= gtol`` (status 0), after ``maxiter`` iterations (1), when the
    callback returns True (2), or when no step satisfies the line search (6). Checkpoints
    keep the inverse Hessian and the line search's previous value: resumes are exact.
    """
    cache = _Cached(oracle)
    if resume is None:
        start, k0 = time.perf_counter(), 0
        x = np.array(x0, dtype=np.float64)
        f, g = oracle.value_and_grad(x)          # an undefined x0 raises here, with its own message
        if not math.isfinite(f):
            raise NonFiniteError(f"fun is not finite at x0 (f = {f})")
        if not np.all(np.isfinite(g)):
            raise NonFiniteError("the gradient is not finite at x0")
        inv_h = torch.eye(x.shape[0], dtype=torch.float64, device=oracle.device)
        old_f = f + np.linalg.norm(g) / 2          # scipy's initial step guess: |dx| ~ 1
        history = [history_entry(0, f, np.linalg.norm(g), oracle, start)]
    else:
        start, history, k0, x, f, g = restore_common(oracle, resume, "bfgs")
        inv_h = torch.as_tensor(resume["inverse_hessian"], dtype=torch.float64).to(oracle.device).clone()
        old_f = float(resume["old_f"])
    cache.x, cache.f, cache.g = np.array(x), f, g

    def state():
        return common_state("bfgs", len(history) - 1, x, f, g, history, oracle, start,
                            inverse_hessian=inv_h.detach().cpu().clone(), old_f=float(old_f))

    status = 1
    for k in range(k0 + 1, options.maxiter + 1):
        if checkpoint is not None:
            checkpoint.maybe(k - 1, state)
        if np.linalg.norm(g) <= options.gtol:
            status = 0
            break
        p = -(inv_h @ oracle.tensor(g)).cpu().numpy()
        try:
            found = _line_search(cache, x, p, f, g, old_f, options)
        except _NonFiniteTrial:      # cache.x is the trial where the loss was NaN/inf
            failed = float(np.linalg.norm(cache.x - x) / max(np.linalg.norm(p), 1e-300))
            found = _backtrack(cache, x, p, f, g, alpha=failed)
        if found is None:
            status = STATUS_LINE_SEARCH
            break
        alpha, f_new, old_f, g_new, evaluations, wolfe = found
        if not np.all(np.isfinite(g_new)):
            raise NonFiniteError(f"the gradient is not finite at iteration {k} (f = {f_new})")
        s = alpha * p
        x = x + s
        y = g_new - g
        f, g = f_new, g_new
        _update(inv_h, oracle.tensor(s), oracle.tensor(y), require_curvature=not wolfe)
        history.append(history_entry(k, f, np.linalg.norm(g), oracle, start, step_norm=float(np.linalg.norm(s)),
                                     accepted=True, inner_iterations=int(evaluations)))
        if callback is not None and callback({**history[-1], "x": oracle.tensor(x.copy())}):
            status = 2
            break
        if np.linalg.norm(g) <= options.gtol:
            status = 0
            break
        if alpha * np.linalg.norm(p) <= options.xrtol * (options.xrtol + np.linalg.norm(x)):
            status = 0
            break
    return x, f, g, status, history


def _update(inv_h: torch.Tensor, s: torch.Tensor, y: torch.Tensor, require_curvature: bool = False) -> None:
    """``H <- H - rho (s (Hy)^T + (Hy) s^T) + (rho^2 y^T H y + rho) s s^T`` in place, O(n^2).

    ``rho = 1 / y^T s`` (scipy's ``rho = 1000`` when ``y^T s == 0``).
    """
    ys = float(y @ s)
    if require_curvature and not ys > 0:
        return
    rho = 1000.0 if ys == 0.0 else 1.0 / ys
    hy = inv_h @ y
    a = rho * rho * float(y @ hy) + rho
    u = torch.stack([s, hy], dim=1)                           # (n, 2)
    v = torch.stack([a * s - rho * hy, -rho * s], dim=1)       # U M with M = [[a, -rho], [-rho, 0]]
    inv_h.addmm_(u, v.T)
