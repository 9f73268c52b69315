"""``least_squares(fun, x0, jac=None, bounds=..., method="trf")``: scipy's signature on torch residuals.

Minimise ``F(x) = (1/2) sum_i f_scale^2 rho((r_i(x) / f_scale)^2)`` (rho the identity for
``loss="linear"``) over ``lower <= x <= upper`` with ``r`` a torch function of a flat float64
tensor. The methods are models of the ONE trust-region loop of
:mod:`invfem.optim.trust_region` (:mod:`invfem.optim.lsq_steps`): ``trf`` (trust region
reflective, reference 004), ``dogbox`` (rectangular trust region, dogleg) and ``lm``
(Levenberg–Marquardt in trust-region form, Moré 1978; also for fewer residuals than
variables). History, checkpoints and resume are the loop's, as for :func:`invfem.optim.minimize`.

Robust losses (scipy's definitions, ``z = (r / f_scale)^2``): ``soft_l1`` rho = 2 ((1 + z)^1/2 - 1),
``huber`` rho = z (z <= 1), 2 z^1/2 - 1 (z > 1), ``cauchy`` rho = ln(1 + z), ``arctan``
rho = arctan z. As in scipy (and Triggs et al. 2000) the residuals and the Jacobian are
rescaled so that the Gauss–Newton model of ``F`` keeps rho's first and second derivative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator

from invfem.errors import ConfigError, InvalidTrialPoint, NonFiniteError, ShapeError
from invfem.linalg.jacobian import JacobianOperator, as_dense
from invfem.optim.bounds import flat_start, parse_bounds
from invfem.optim.checkpoint import run_hooks
from invfem.optim.lsq_steps import LSMR_DEFAULTS, MODELS, strictly_feasible
from invfem.optim.oracle import CountedOracle
from invfem.optim.options import _count, _positive, _tolerance
from invfem.optim.result import OptimizeResult
from invfem.optim.trust_region import LoopSettings, all_finite, status_message, trust_region
from invfem.runtime import reuse_freed_memory

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
TR_SOLVERS = ("exact", "lsmr")
#: the loop's status -> scipy's (0 max_nfev, 1 gtol, 2 ftol, 3 xtol, 4 ftol and xtol, -2 callback)
SCIPY_STATUS = {0: 1, 1: 0, 2: -2, 3: 3, 8: 2, 9: 2, 10: 3, 11: 4, 12: 0, 13: -3, 14: -4}


@dataclass(frozen=True)
class LeastSquaresOptions:
    """Options of ``trf``, ``dogbox`` and ``lm`` (scipy's names and defaults).

    ``ftol``/``xtol``/``gtol``: stop when an accepted step lowers the cost by less than
    ``ftol * cost`` (rho > 1/4), when a step is shorter than ``xtol (xtol + ||x||)``, when the
    optimality measure (``||v g||_inf`` for trf, the projected ``||g||_inf`` for dogbox,
    ``||g||_inf`` for lm) is below ``gtol``; 0 turns a test off. ``x_scale``: a number, one per
    variable, or ``"jac"`` (the running maximum of J's column norms). ``max_nfev``: residual
    evaluations (None: 100 n). ``maxiter``: loop iterations (trials) (None: unlimited).
    ``tr_solver``: ``"exact"`` (SVD) or ``"lsmr"`` (trf only: a 2-D subspace with an LSMR
    Gauss–Newton step, for large n). ``tr_options``: for ``lsmr``, the keys ``atol``, ``btol``
    (default 1e-6 each, scipy's) and ``maxiter`` (default min(m, n)) of
    ``scipy.sparse.linalg.lsmr``. ``max_step_back``: trf's step back from a bound,
    theta = min(max_step_back, ||v g||) (reference 004). ``modified_rho``: trf's rho subtracts
    ``p_hat.C p_hat / 2`` from the actual reduction (reference 004, Coleman & Li); False: the
    plain ratio, as scipy 1.17's trf.
    """

    ftol: float = 1e-8
    xtol: float = 1e-8
    gtol: float = 1e-8
    x_scale: object = 1.0
    loss: str = "linear"
    f_scale: float = 1.0
    max_nfev: int | None = None
    maxiter: int | None = None
    tr_solver: str | None = None
    tr_options: dict | None = None
    max_step_back: float = 0.05
    modified_rho: bool = True

    def __post_init__(self):
        for name in ("ftol", "xtol", "gtol"):
            _tolerance(name, getattr(self, name))
        if isinstance(self.x_scale, str):
            if self.x_scale != "jac":
                raise ConfigError(f"option x_scale must be 'jac', a positive number or one per variable, "
                                  f"got {self.x_scale!r}")
        else:
            scale = np.asarray(self.x_scale, dtype=np.float64)
            if not np.all(np.isfinite(scale) & (scale > 0)):
                raise ConfigError(f"option x_scale must be positive and finite, got {self.x_scale!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"option loss must be one of {list(LOSSES)}, got {self.loss!r}")
        _positive("f_scale", self.f_scale)
        _count("max_nfev", self.max_nfev, allow_none=True)
        _count("maxiter", self.maxiter, allow_none=True)
        if self.tr_solver is not None and self.tr_solver not in TR_SOLVERS:
            raise ConfigError(f"option tr_solver must be one of {list(TR_SOLVERS)} or None, got {self.tr_solver!r}")
        if self.tr_options is not None:
            if not isinstance(self.tr_options, dict):
                raise ConfigError(f"option tr_options must be a mapping (atol, btol, maxiter), got {self.tr_options!r}")
            unknown = sorted(set(self.tr_options) - set(LSMR_DEFAULTS))
            if unknown:
                raise ConfigError(f"unknown key {unknown[0]!r} in option tr_options; valid: {list(LSMR_DEFAULTS)}")
            for key in ("atol", "btol"):
                if key in self.tr_options:
                    _tolerance(f"tr_options.{key}", self.tr_options[key])
            _count("tr_options.maxiter", self.tr_options.get("maxiter"), allow_none=True)
        if not 0 < self.max_step_back < 1:
            raise ConfigError(f"option max_step_back must lie in (0, 1), got {self.max_step_back!r}")
        if not isinstance(self.modified_rho, bool):
            raise ConfigError(f"option modified_rho must be true or false, got {self.modified_rho!r}")


def robust_loss(name: str, z: np.ndarray):
    """``(rho, rho', rho'')`` of scipy's robust loss ``name`` at ``z = (r / f_scale)^2``."""
    if name == "linear":
        return z, np.ones_like(z), np.zeros_like(z)
    if name == "soft_l1":
        t = 1 + z
        return 2 * (t ** 0.5 - 1), t ** -0.5, -0.5 * t ** -1.5
    if name == "huber":
        big = z > 1
        root = np.sqrt(np.where(big, z, 1.0))
        return (np.where(big, 2 * root - 1, z), np.where(big, 1 / root, 1.0), np.where(big, -0.5 / root ** 3, 0.0))
    if name == "cauchy":
        t = 1 + z
        return np.log1p(z), 1 / t, -1 / t ** 2
    if name == "arctan":
        t = 1 + z * z
        return np.arctan(z), 1 / t, -2 * z / t ** 2
    raise ConfigError(f"unknown loss {name!r}; valid: {list(LOSSES)}")


@dataclass(frozen=True)
class Linearization:
    """Residual and Jacobian at one x: raw (``r_raw``, ``jac_raw``, tensors) and scaled for the
    robust loss (``r``, ``jac``, host arrays: the Gauss–Newton model of the cost)."""

    r: np.ndarray
    jac: np.ndarray
    r_raw: torch.Tensor
    jac_raw: torch.Tensor


class ResidualOracle(CountedOracle):
    """Counted residuals and Jacobians of ``fun`` for the trust-region loop.

    The loop's ``f`` is ``value_scale * cost`` (1: scipy's cost; 2: ``||r||^2``, the loss of
    :func:`invfem.optim.minimize`), its ``g`` the gradient of that. The residual at the last
    trial point and the linearization at the last iterate are kept (keyed by x), so an
    accepted trial costs one Jacobian and no second residual. ``nfev`` counts residuals,
    ``njev`` Jacobians.
    """

    def __init__(self, fun, n, jac=None, loss="linear", f_scale=1.0, value_scale=1.0, device=None,
                 operators: bool = False):
        for name, value in (("fun", fun), ("jac", jac)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}")
        super().__init__(n, device)
        self.fun, self.jac_fn, self.loss, self.f_scale = fun, jac, loss, float(f_scale)
        # keep a JacobianOperator from jac as an operator (a matrix-free model); else form it
        self.operators = bool(operators) and loss == "linear"
        self.value_scale = float(value_scale)
        self.m = None
        self._residual = (None, None)
        self._linear = (None, None)

    def _evaluate(self, x) -> torch.Tensor:
        key = np.asarray(x, dtype=np.float64).tobytes()
        if self._residual[0] == key:
            return self._residual[1]
        self.nfev += 1
        with torch.no_grad():
            r = self.fun(self.tensor(x))
        if not isinstance(r, torch.Tensor) or r.ndim != 1:
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ShapeError(f"fun must return a 1-d tensor of residuals, got {shape}")
        if self.m is None:
            self.m = r.shape[0]
        elif r.shape[0] != self.m:
            raise ShapeError(f"fun returned {r.shape[0]} residuals, expected {self.m} (as at x0)")
        r = r.detach() if r.dtype == torch.float64 else r.detach().to(torch.float64)
        self._residual = (key, r)
        return r

    def cost(self, r: np.ndarray) -> float:
        """``(1/2) sum f_scale^2 rho((r / f_scale)^2)``."""
        if self.loss == "linear":
            return 0.5 * float(r @ r)
        return 0.5 * self.f_scale ** 2 * float(robust_loss(self.loss, (r / self.f_scale) ** 2)[0].sum())

    def value(self, x) -> float:
        """``value_scale * cost`` at a trial point; inf where fun is not finite or raises InvalidTrialPoint."""
        try:
            r = self._evaluate(x)
        except InvalidTrialPoint:
            self.ninvalid += 1
            return math.inf
        cost = self.cost(r.cpu().numpy())
        if not math.isfinite(cost):                 # NaN/inf residuals: an invalid trial
            self.ninvalid += 1
            return math.inf
        return self.value_scale * cost

    def linearization(self, x) -> Linearization:
        key = np.asarray(x, dtype=np.float64).tobytes()
        if self._linear[0] == key:
            return self._linear[1]
        r = self._evaluate(x)
        self.njev += 1
        t = self.tensor(x)
        j = self.jac_fn(t) if self.jac_fn is not None else _auto_jacobian(self.fun, t, r.shape[0])
        if isinstance(j, JacobianOperator):
            if j.shape != (r.shape[0], self.n):
                raise ShapeError(f"jac returned an operator of shape {j.shape}, expected {(r.shape[0], self.n)} "
                                 "(residuals, variables)")
            if self.operators:
                if not j.is_finite():
                    raise NonFiniteError("the Jacobian contains NaN or inf at an accepted iterate")
                lin = Linearization(r.cpu().numpy(), HostOperator(j), r, j)
                self._linear = (key, lin)
                return lin
            j = j.dense()
        if not isinstance(j, torch.Tensor):
            j = torch.as_tensor(np.asarray(j, dtype=np.float64))
        if j.shape != (r.shape[0], self.n):
            raise ShapeError(f"jac returned shape {tuple(j.shape)}, expected {(r.shape[0], self.n)} (residuals, variables)")
        j = j.detach() if j.dtype == torch.float64 else j.detach().to(torch.float64)
        r_host, j_host = r.cpu().numpy(), j.cpu().numpy()
        if not all_finite(j_host):
            raise NonFiniteError("the Jacobian contains NaN or inf at an accepted iterate")
        if self.loss != "linear":
            z = (r_host / self.f_scale) ** 2
            _, d1, d2 = robust_loss(self.loss, z)
            j_scale = np.sqrt(np.maximum(d1 + 2 * d2 * z, np.finfo(np.float64).eps))
            r_host, j_host = r_host * d1 / j_scale, j_host * j_scale[:, None]
        lin = Linearization(r_host, j_host, r, j)
        self._linear = (key, lin)
        return lin

    def value_and_grad(self, x):
        r = self._evaluate(x).cpu().numpy()
        lin = self.linearization(x)
        return self.value_scale * self.cost(r), self.value_scale * (lin.jac.T @ lin.r)


class HostOperator(LinearOperator):
    """A :class:`~invfem.linalg.jacobian.JacobianOperator` as a scipy ``LinearOperator`` on host
    arrays (``J @ v``, ``J.T @ w``, ``J @ V``), for trf's matrix-free LSMR step."""

    def __init__(self, jac: JacobianOperator):
        super().__init__(np.float64, jac.shape)
        self.torch_operator = jac

    def _to(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(self.torch_operator.device)

    def _matvec(self, v):
        return self.torch_operator.matvec(self._to(v).reshape(-1)).cpu().numpy()

    def _rmatvec(self, w):
        return self.torch_operator.rmatvec(self._to(w).reshape(-1)).cpu().numpy()

    def _matmat(self, v):
        return self.torch_operator.matvec(self._to(v)).cpu().numpy()

    def _rmatmat(self, w):
        return self.torch_operator.rmatvec(self._to(w)).cpu().numpy()


def _auto_jacobian(fun, x: torch.Tensor, m: int) -> torch.Tensor:
    """``torch.func.jacrev`` (m VJPs) when m <= n, else ``jacfwd`` (n JVPs)."""
    from torch.func import jacfwd, jacrev
    return (jacrev if m <= x.shape[0] else jacfwd)(fun)(x)


def settings_for(method: str, opts: LeastSquaresOptions, n: int, radius: float) -> LoopSettings:
    """The loop's settings for a least-squares method: scipy's radius rules and tests."""
    max_nfev = opts.max_nfev if opts.max_nfev is not None else 100 * n
    return LoopSettings(initial_radius=radius, max_radius=math.inf, eta=0.0, gtol=opts.gtol,
                        maxiter=opts.maxiter if opts.maxiter is not None else 2 ** 62, xtol=1e-300,
                        ftol=opts.ftol, step_xtol=opts.xtol, max_nfev=max_nfev, shrink_from_step=True,
                        accept_decrease=True)


def initial_radius(method: str, model, x0: np.ndarray) -> float:
    """scipy's / MINPACK's first radius: ||x0 / (D scale)|| (trf), ||x0 / scale||_inf (dogbox),
    100 ||x0 / scale|| (lm, Moré's factor); 1 (100 for lm) when that is 0."""
    if method == "dogbox":
        radius = float(np.max(np.abs(x0 * model.scale_inv), initial=0.0))
    elif method == "lm":
        radius = 100 * float(np.linalg.norm(x0 * model.scale_inv))
        return radius if radius > 0 else 100.0
    else:
        radius = float(np.linalg.norm(x0 / model.d))
    return radius if radius > 0 else 1.0


def run_least_squares(oracle: ResidualOracle, x0: np.ndarray, method: str, opts: LeastSquaresOptions, bounds,
                      callback=None, checkpoint=None, resume=None):
    """The loop with the method's model: (x, f, g, status, history) as :func:`trust_region` returns."""
    model_cls = MODELS[method]
    n = x0.shape[0]
    if resume is None:
        lin = oracle.linearization(x0)
        if not np.all(np.isfinite(lin.r_raw.cpu().numpy())):
            bad = np.flatnonzero(~np.isfinite(lin.r_raw.cpu().numpy()))
            raise NonFiniteError(f"residuals are not finite at x0 ({bad.size} entries, first at index {bad[0]})")
        radius = initial_radius(method, model_cls(oracle, x0, None, opts, bounds), x0)
    else:
        # the model at the saved x was paid for before the checkpoint: linearize now, and the
        # loop's restore sets the counters back to the state's
        oracle.linearization(np.asarray(resume["x"], dtype=np.float64))
        radius = 1.0                    # the state's radius is restored by the loop
    settings = settings_for(method, opts, n, radius)
    return trust_region(oracle, x0, lambda x, g, previous: model_cls(oracle, x, g, opts, bounds, previous=previous),
                        settings, callback, checkpoint=checkpoint, resume=resume)


def matrix_free(method: str, opts: LeastSquaresOptions) -> bool:
    """Whether the model runs on products with J only (trf's LSMR subspace step with a numeric
    x_scale and the linear loss): a :class:`~invfem.linalg.jacobian.JacobianOperator` returned
    by ``jac`` is then kept as an operator, never multiplied out."""
    return method == "trf" and opts.tr_solver == "lsmr" and opts.loss == "linear" and not isinstance(opts.x_scale, str)


def check_method(method: str, opts: LeastSquaresOptions, bounded: bool) -> None:
    """One-line errors for combinations scipy refuses too."""
    if method not in MODELS:
        raise ConfigError(f"unknown least-squares method {method!r}; valid: {sorted(MODELS)}")
    if method == "lm" and bounded:
        raise ConfigError("method 'lm' does not take bounds; use 'trf' or 'dogbox'")
    if opts.tr_solver == "lsmr" and method != "trf":
        raise ConfigError(f"tr_solver 'lsmr' is available for method 'trf' only, not {method!r}")
    if opts.tr_options and opts.tr_solver != "lsmr":
        raise ConfigError("option tr_options applies to tr_solver 'lsmr' only")


def active_constraints(x, lower, upper, rtol):
    """-1 / 1 where x is within rtol max(1, |bound|) of its lower / upper bound, else 0 (scipy's active_mask)."""
    active = np.zeros(x.shape[0], dtype=int)
    lo, hi = x - lower, upper - x
    active[np.isfinite(lower) & (lo <= np.minimum(hi, rtol * np.maximum(1, np.abs(lower))))] = -1
    active[np.isfinite(upper) & (hi <= np.minimum(lo, rtol * np.maximum(1, np.abs(upper))))] = 1
    return active


def least_squares(fun, x0, jac=None, bounds=(-np.inf, np.inf), method: str = "trf", ftol=1e-8, xtol=1e-8,
                  gtol=1e-8, x_scale=1.0, loss: str = "linear", f_scale: float = 1.0, max_nfev=None,
                  tr_solver=None, tr_options=None, max_step_back: float = 0.05, modified_rho: bool = True,
                  maxiter=None, callback=None, checkpoint=None, resume=None) -> OptimizeResult:
    """Solve a nonlinear least-squares problem with bounds (scipy's ``least_squares``, torch in and out).

    ``fun(x) -> (m,)`` residuals of a flat float64 tensor; ``jac(x) -> (m, n)`` (None: by
    ``torch.func``, reverse mode when m <= n, else forward mode); ``bounds`` a pair of
    scalars/arrays/tensors or ``scipy.optimize.Bounds``, lower < upper, x0 inside; methods
    ``trf`` (default), ``dogbox``, ``lm`` (no bounds; also m < n). Options as
    :class:`LeastSquaresOptions`; ``callback(state)`` (a history entry plus ``x``; True
    stops), ``checkpoint``/``resume`` as for :func:`invfem.optim.minimize` (exact resume).

    Returns an :class:`~invfem.optim.result.OptimizeResult` with scipy's fields ``x``,
    ``cost``, ``fun`` (residuals), ``jac`` (at x, unscaled), ``grad``, ``optimality``,
    ``active_mask``, ``nfev``, ``njev``, ``status`` (scipy's codes: 0 max_nfev, 1 gtol,
    2 ftol, 3 xtol, 4 ftol and xtol, -2 callback, -3 every trial since the last accepted
    iterate not finite, -4 no step with the gradient above gtol), ``message``, ``success`` (status > 0),
    plus ``history`` (one entry per trial: ``cost``, ``optimality``, ``radius``, ``step_norm``,
    ``rho``, ``accepted``, counters, ``time``) and ``method``. Time in callbacks and
    checkpoints is left out of the history's clock.
    """
    opts = LeastSquaresOptions(ftol=ftol, xtol=xtol, gtol=gtol, x_scale=x_scale, loss=loss, f_scale=f_scale,
                               max_nfev=max_nfev, maxiter=maxiter, tr_solver=tr_solver, tr_options=tr_options,
                               max_step_back=max_step_back,
                               modified_rho=modified_rho)
    return solve(fun, x0, jac, bounds, method, opts, callback=callback, checkpoint=checkpoint, resume=resume)


def solve(fun, x0, jac, bounds, method: str, opts: LeastSquaresOptions, value_scale: float = 1.0, callback=None,
          checkpoint=None, resume=None, label: str | None = None) -> OptimizeResult:
    """:func:`least_squares` with parsed options; ``value_scale = 2`` reports ``||r||^2`` as f
    (how :func:`invfem.optim.minimize` runs these methods on a loss ``||r||^2``)."""
    reuse_freed_memory()
    x, device = flat_start(x0)
    n = x.shape[0]
    lower, upper = parse_bounds((-np.inf, np.inf) if bounds is None else bounds, n, strict=True)
    bounded = bool(np.any(np.isfinite(lower)) or np.any(np.isfinite(upper)))
    check_method(method, opts, bounded)
    outside = np.flatnonzero((x < lower) | (x > upper))
    if outside.size:
        i = outside[0]
        raise ValueError(f"x0 is infeasible at {outside.size} entries (first: index {i}, {x[i]} not in "
                         f"[{lower[i]}, {upper[i]}])")
    if method == "trf" and bounded:
        x = strictly_feasible(x, lower, upper)
    label = label or method
    if resume is not None and resume.get("method") != label:
        raise ConfigError(f"cannot resume a {resume.get('method')!r} run with method {label!r}")
    oracle = ResidualOracle(fun, n, jac=jac, loss=opts.loss, f_scale=opts.f_scale, value_scale=value_scale,
                            device=device, operators=matrix_free(method, opts))
    callback, checkpoint = run_hooks(callback, checkpoint, oracle, label)
    x, f, g, status, history = run_least_squares(oracle, x, method, opts, (lower, upper), callback, checkpoint,
                                                 resume)
    lin = oracle.linearization(x)
    for entry in history:
        entry["cost"] = entry["f"] / value_scale
        entry["optimality"] = entry["gnorm"]
    r = lin.r_raw                         # the residual at x (the last accepted point was linearized)
    scipy_status = SCIPY_STATUS[status]
    return OptimizeResult(x=torch.as_tensor(x, device=device), cost=f / value_scale, fun=r, jac=as_dense(lin.jac_raw),
                          grad=torch.as_tensor(g / value_scale, device=device),
                          optimality=history[-1]["gnorm"] / value_scale,
                          active_mask=active_constraints(x, lower, upper, opts.xtol), nfev=oracle.nfev,
                          njev=oracle.njev, nhev=0, nit=len(history) - 1, status=scipy_status,
                          message=status_message(status, history[-1]["gnorm"] / value_scale, opts), success=scipy_status > 0, history=history, method=label)


__all__ = ["LeastSquaresOptions", "ResidualOracle", "least_squares", "robust_loss", "solve"]
