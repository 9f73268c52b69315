"""Least-squares models for the one trust-region loop: trf, dogbox and Levenberg–Marquardt.

Each model linearizes the residual at x (``r``, ``J``, already scaled for a robust loss) and
computes only the step for a radius; :func:`invfem.optim.trust_region.trust_region` owns rho,
the radius and acceptance. The quadratic model of the cost ``F = ||r||^2 / 2`` is
``m(p) = g.p + ||J p||^2 / 2`` with ``g = J^T r`` (Gauss–Newton: ``J^T J`` in place of the
Hessian, as reference 004 says).

* :class:`TrfModel` — trust region reflective (Coleman & Li 1994/1996; reference 004's eight
  steps): scaling ``D = diag(v^1/2)``, the subproblem in hat variables ``x = D x_hat``,
  truncation at the first bound and a step back by theta, one reflection, the ``-g_hat``
  step, the best of the three, rho with ``p_hat.C p_hat / 2`` subtracted. Exact subproblem
  through the SVD of ``[J_hat; C^1/2]`` (Moré's secular equation), or ``tr_solver="lsmr"``:
  the two-dimensional subspace of ``g_hat`` and an LSMR Gauss–Newton step.
* :class:`DogboxModel` — a rectangular trust region (infinity norm) intersected with the
  bounds, a dogleg between the Cauchy and the Gauss–Newton step of the free variables
  (Voglis & Lagaris 2004); variables on a bound with the gradient pointing out are fixed.
* :class:`LmModel` — Levenberg–Marquardt in trust-region form (Moré 1978): ``min ||J p + r||``
  subject to ``||D p|| <= radius``, the multiplier by Moré's Newton iteration on the SVD.
  ``m < n`` (underdetermined) is solved in the m-dimensional form: the minimum-norm
  Gauss–Newton step ``-J^T (J J^T)^+ r`` when it lies in the region.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from invfem.optim.steps import Step, coleman_li_scaling, step_to_bound
from invfem.optim.subproblems import _to_boundary, eigen_trust_region

EPS = np.finfo(np.float64).eps


def _norm(v) -> float:
    """``||v||`` of a 1-d array (np.linalg.norm's dispatch costs more than the sum on these sizes)."""
    return math.sqrt(float(np.dot(v, v)))

#: ``tr_options`` of the LSMR subspace step and their defaults (scipy's lsmr; maxiter None: min(m, n))
LSMR_DEFAULTS = {"atol": 1e-6, "btol": 1e-6, "maxiter": None}


# ---------------------------------------------------------------------------------------
# the exact subproblem min ||J p + r||, ||p|| <= radius, on an SVD of J
# ---------------------------------------------------------------------------------------

def lsq_subproblem(u_r, s, vt, radius, alpha=0.0, rtol=0.01, maxiter=10):
    """``(p, alpha)``: the minimiser of ``||J p + r||`` with ``||p|| <= radius`` from ``J = U S V^T``
    (``u_r = U^T r``, ``s`` descending, ``vt = V^T``); ``alpha`` the Levenberg–Marquardt
    parameter, ``p = -V (s u_r / (s^2 + alpha))`` (Moré 1978).

    The Gauss–Newton step (minimum norm where J is rank deficient or ``m < n``) is returned
    when it fits; otherwise Moré's safeguarded Newton iteration on ``phi(alpha) = ||p(alpha)||
    - radius`` (``alpha`` warm starts it), stopped at ``|phi| < rtol radius``, and ``p`` is
    scaled onto the boundary.
    """
    s_uf = s * u_r
    rank = int(np.count_nonzero(s > EPS * max(vt.shape[1], u_r.shape[0]) * (s[0] if s.size else 0.0)))
    p = -(vt[:rank].T @ (u_r[:rank] / s[:rank])) if rank else np.zeros(vt.shape[1])
    if _norm(p) <= radius:
        return p, 0.0
    full_rank = rank == vt.shape[1]

    def phi(a):
        denom = s * s + a
        q = s_uf / denom
        norm = _norm(q)
        return norm - radius, -float((s_uf * s_uf / denom ** 3).sum()) / norm

    upper = _norm(s_uf) / radius
    lower = 0.0
    if full_rank:
        value, slope = phi(0.0)
        lower = -value / slope
    if not alpha or not lower <= alpha <= upper:
        alpha = max(1e-3 * upper, math.sqrt(lower * upper))
    for _ in range(maxiter):
        if not lower <= alpha <= upper:
            alpha = max(1e-3 * upper, math.sqrt(lower * upper))
        value, slope = phi(alpha)
        if value < 0:
            upper = alpha
        ratio = value / slope
        lower = max(lower, alpha - ratio)
        alpha -= (value + radius) * ratio / radius
        if abs(value) < rtol * radius:
            break
    p = -(vt.T @ (s_uf / (s * s + alpha)))
    return p * (radius / _norm(p)), alpha


def _quadratic(jac, g, p, diag=None) -> float:
    """``g.p + ||J p||^2 / 2 (+ p.diag p / 2)``."""
    jp = jac @ p
    value = float(g @ p + 0.5 * jp @ jp)
    return value if diag is None else value + 0.5 * float(p @ (diag * p))


def _line(jac, g, direction, start=None, diag=None):
    """``(a, b, c)`` of the model along ``start + t direction``: ``a t^2 / 2 + b t + c``."""
    jd = jac @ direction
    a = float(jd @ jd) + (0.0 if diag is None else float(direction @ (diag * direction)))
    b = float(g @ direction)
    c = 0.0
    if start is not None:
        b += float((jac @ start) @ jd) + (0.0 if diag is None else float(start @ (diag * direction)))
        c = _quadratic(jac, g, start, diag)
    return a, b, c


def _line_min(a, b, c, lo, hi):
    """argmin over [lo, hi] of a t^2 / 2 + b t + c, and its value."""
    candidates = [lo, hi]
    if a > 0 and lo < -b / a < hi:
        candidates.append(-b / a)
    t = min(candidates, key=lambda t: 0.5 * a * t * t + b * t)
    return t, 0.5 * a * t * t + b * t + c


def _column_scale(jac, options, previous):
    """``scale_inv``: 1 / x_scale, or (``x_scale="jac"``) the running maximum of J's column norms."""
    if isinstance(options.x_scale, str):
        norms = np.linalg.norm(jac, axis=0)
        norms[norms == 0] = 1.0
        if previous is not None:
            norms = np.maximum(norms, previous.scale_inv)
        return norms
    if previous is not None and previous.scale_inv.shape == (jac.shape[1],):
        return previous.scale_inv                     # a fixed x_scale: the same every iteration
    return 1.0 / np.broadcast_to(np.asarray(options.x_scale, dtype=np.float64), (jac.shape[1],))


def scale_columns(jac, d):
    """``J diag(d)``: the scaled array, or for an operator (a matrix-free model's J) the
    product operator, never formed."""
    if isinstance(jac, np.ndarray):
        return jac * d
    from scipy.sparse import diags
    from scipy.sparse.linalg import aslinearoperator
    return jac @ aslinearoperator(diags(d))


def strictly_feasible(x, lb, ub):
    """x with entries on (or beyond) a bound moved one floating-point number inside."""
    x = x.copy()
    low, high = x <= lb, x >= ub
    x[low] = np.nextafter(lb[low], ub[low])
    x[high] = np.nextafter(ub[high], lb[high])
    tight = (x < lb) | (x > ub)
    x[tight] = 0.5 * (lb[tight] + ub[tight])
    return x


class _Linearized:
    """What every least-squares model holds: x, r, J (host arrays, robust-scaled), g = J^T r."""

    def __init__(self, oracle, x, options, bounds, previous):
        lin = oracle.linearization(x)
        self.x, self.r, self.jac, self.options = x, lin.r, lin.jac, options
        self.g = self.jac.T @ self.r                     # the cost's gradient
        self.value_scale = oracle.value_scale           # the loop's f is value_scale * cost
        self.lb, self.ub = bounds
        self.bounded = previous.bounded if previous is not None else bool(
            np.isfinite(self.lb).any() or np.isfinite(self.ub).any())
        self.scale_inv = _column_scale(self.jac, options, previous)

    def warm_state(self) -> dict:
        return {"scale_inv": np.array(self.scale_inv), "alpha": float(getattr(self, "alpha", 0.0))}

    def restore(self, state: dict) -> None:
        self.scale_inv = np.array(state["scale_inv"], dtype=np.float64)
        self.alpha = float(state["alpha"])
        self._setup()

    def _setup(self):
        pass

    def _step(self, predicted, norm, hits, x_new, correction=0.0, inner=0) -> Step:
        k = self.value_scale
        return Step(x_new - self.x, k * predicted, float(norm), bool(hits), correction=k * correction,
                    inner_iterations=inner, x_new=x_new)


class TrfModel(_Linearized):
    """Trust region reflective (module docstring; reference 004)."""

    def __init__(self, oracle, x, g, options, bounds, previous=None):
        super().__init__(oracle, x, options, bounds, previous)
        # Moré's multiplier scales as 1 / radius: the last one, rescaled at the first step to this
        # model's radius (the radius may have grown with the accepted step)
        warm = isinstance(previous, TrfModel)
        self.alpha = previous.alpha if warm else 0.0
        self._radius = previous._radius if warm else None
        self._setup()

    def _setup(self):
        if self.bounded:
            v, dv = coleman_li_scaling(self.x, self.g, self.lb, self.ub)
        else:                                            # no bound: v = 1, dv = 0 (D = 1 / x_scale)
            v, dv = np.ones_like(self.x), np.zeros_like(self.x)
        self.optimality = self.value_scale * float(np.max(np.abs(v * self.g), initial=0.0))
        moving = dv != 0
        v[moving] *= self.scale_inv[moving]
        scale = 1.0 / self.scale_inv
        self.d = np.sqrt(v) * scale
        self.diag_h = self.g * dv * scale                # C in hat variables (>= 0)
        self.g_h = self.d * self.g
        self.j_h = scale_columns(self.jac, self.d)
        # step back from a bound by min(max_step_back, ||v g||) of the step (reference 004, step 3)
        self.theta = 1.0 - min(self.options.max_step_back, self.optimality / self.value_scale)
        self._svd = None

    def _factor(self):
        if self._svd is None:
            bounded = self.diag_h > 0
            if bounded.any():       # [J_hat; C^1/2] for the rows with a bound in play
                aug = np.vstack([self.j_h, np.diag(np.sqrt(self.diag_h))[bounded]])
                rhs = np.concatenate([self.r, np.zeros(int(bounded.sum()))])
            else:
                aug, rhs = self.j_h, self.r
            u, s, vt = scipy.linalg.svd(aug, full_matrices=False, lapack_driver="gesdd", check_finite=False)
            self._svd = (u.T @ rhs, s, vt)
        return self._svd

    def _trust_step(self, radius):
        if self.options.tr_solver == "lsmr":
            return self._subspace_step(radius)
        p_h, self.alpha = lsq_subproblem(*self._factor(), radius, self.alpha)
        return p_h

    def _subspace_step(self, radius):
        """Reference 004's large-scale variant: the exact step in span{g_hat, LSMR Gauss–Newton step}.

        LSMR runs on ``[J_hat; (C + reg)^1/2]`` as an operator (products with ``J_hat`` only,
        never a stacked copy of it), to ``tr_options``' tolerances (scipy's defaults)."""
        from scipy.sparse.linalg import LinearOperator, lsmr
        j, g, diag = self.j_h, self.g_h, self.diag_h
        m, n = j.shape
        gn = _norm(g)
        a, b, _ = _line(j, g, -g, diag=diag)
        reg = -_line_min(a, b, 0.0, 0.0, radius / gn)[1] / radius ** 2 if gn > 0 else 0.0   # rank-deficient J
        root = np.sqrt(diag + reg)
        aug = LinearOperator((m + n, n), dtype=np.float64, matvec=lambda v: np.concatenate([j @ v, root * v]),
                             rmatvec=lambda w: j.T @ w[:m] + root * w[m:])
        opts = {**LSMR_DEFAULTS, **(self.options.tr_options or {})}
        newton = lsmr(aug, -np.concatenate([self.r, np.zeros(n)]), **opts)[0]
        basis, _ = np.linalg.qr(np.stack([g, newton], 1))
        js = j @ basis
        b2 = js.T @ js + (basis.T * diag) @ basis
        return basis @ eigen_trust_region(b2, basis.T @ g, radius).p

    def step(self, radius) -> Step:
        if self._radius is not None and radius != self._radius:
            self.alpha *= self._radius / radius           # Moré: the multiplier scales as 1 / radius
        self._radius = radius
        x, d, lb, ub = self.x, self.d, self.lb, self.ub
        p_h = self._trust_step(radius)
        if self.bounded:
            best_h = self._select(p_h, radius)
            x_new = strictly_feasible(x + d * best_h, lb, ub)
            correction = 0.5 * float(best_h @ (self.diag_h * best_h)) if self.options.modified_rho else 0.0
        else:                  # no bound: the trust-region step itself (C = 0, nothing to step back from)
            best_h, x_new, correction = p_h, x + d * p_h, 0.0
        predicted = -_quadratic(self.j_h, self.g_h, best_h, self.diag_h if self.bounded else None)
        norm = _norm(best_h)
        return self._step(predicted, norm, norm > 0.95 * radius, x_new, correction=correction)

    def _select(self, p_h, radius):
        """Reference 004, steps 3-6: the trust-region step truncated at the first bound and
        stepped back, one reflection of it, the ``-g_hat`` step; the lowest model value wins."""
        x, d, lb, ub, j, g, diag, theta = self.x, self.d, self.lb, self.ub, self.j_h, self.g_h, self.diag_h, self.theta
        p = d * p_h
        if np.all((x + p >= lb) & (x + p <= ub)):
            return p_h
        stride, hits = step_to_bound(x, p, lb, ub)
        r_h = p_h.copy()
        r_h[hits] *= -1
        p_h = stride * p_h
        candidates = []
        # the reflection, from the point on the bound, stays inside the region and the box
        _, to_region = _to_boundary(p_h, r_h, radius)
        to_bound, _ = step_to_bound(x + d * p_h, d * r_h, lb, ub)
        r_stride = min(to_bound, to_region)
        if r_stride > 0:
            lo = (1 - theta) * stride / r_stride
            hi = theta * to_bound if r_stride == to_bound else to_region
            if lo <= hi:
                t, value = _line_min(*_line(j, g, r_h, start=p_h, diag=diag), lo, hi)
                candidates.append((value, p_h + t * r_h))
        p_h = theta * p_h
        candidates.append((_quadratic(j, g, p_h, diag), p_h))
        gn = _norm(g)
        if gn > 0:
            to_region = radius / gn
            to_bound, _ = step_to_bound(x, -d * g, lb, ub)
            hi = theta * to_bound if to_bound < to_region else to_region
            a, b, _ = _line(j, g, -g, diag=diag)
            t, value = _line_min(a, b, 0.0, 0.0, hi)
            candidates.append((value, -t * g))
        return min(candidates, key=lambda c: c[0])[1]


class LmModel(TrfModel):
    """Levenberg–Marquardt in trust-region form (Moré 1978): trf's exact subproblem without
    bounds; for m >= n its optimality measure is MINPACK's scale-invariant cosine
    ``max_j |J_j.r| / (||J_j|| ||r||)`` (0 at r = 0), so a zero-residual fit with a singular
    Jacobian at the solution (Powell's) runs on to its ftol/xtol test. For m < n the cosine
    stays O(1) as r -> 0 (J^T r != 0 for a full-row-rank J): there it is ||g||_inf, as trf's."""

    def _setup(self):
        super()._setup()
        if self.jac.shape[0] < self.jac.shape[1]:
            return
        norms = np.linalg.norm(self.jac, axis=0) * float(np.linalg.norm(self.r))
        with np.errstate(divide="ignore", invalid="ignore"):
            cosine = np.where(norms > 0, np.abs(self.g) / norms, 0.0)
        self.optimality = float(np.max(cosine, initial=0.0))


class DogboxModel(_Linearized):
    """Dogleg in a rectangular trust region intersected with the bounds (module docstring)."""

    def __init__(self, oracle, x, g, options, bounds, previous=None):
        super().__init__(oracle, x, options, bounds, previous)
        self._setup()

    def _setup(self):
        x, g, lb, ub = self.x, self.g, self.lb, self.ub
        on_bound = np.where(x <= lb, -1, np.where(x >= ub, 1, 0))
        self.free = ~(on_bound * g < 0)
        g_free = np.where(self.free, g, 0.0)
        self.optimality = self.value_scale * float(np.max(np.abs(g_free), initial=0.0))
        self.j_free = self.jac[:, self.free]
        self.g_free = g[self.free]
        self._newton = None
        self.a, self.b, _ = _line(self.j_free, self.g_free, -self.g_free)

    @property
    def newton(self):
        """The minimum-norm Gauss–Newton step of the free variables (singular values cut at machine
        precision, numpy's rcond=-1), formed at the first step only."""
        if self._newton is None:
            self._newton = np.linalg.lstsq(self.j_free, -self.r, rcond=-1)[0]
        return self._newton

    def step(self, radius) -> Step:
        x, free = self.x, self.free
        scale_free = 1.0 / self.scale_inv[free]
        lo_c, hi_c = self.lb[free] - x[free], self.ub[free] - x[free]
        tr = radius * scale_free
        lo, hi = np.maximum(lo_c, -tr), np.minimum(hi_c, tr)
        newton = self.newton
        if np.all((newton >= lo) & (newton <= hi)):
            step_free, tr_hit, at_lo, at_hi = newton, False, np.zeros_like(newton, bool), np.zeros_like(newton, bool)
        else:
            g = self.g_free
            to_box, _ = step_to_bound(np.zeros_like(g), -g, lo, hi)
            cauchy = -_line_min(self.a, self.b, 0.0, 0.0, to_box)[0] * g
            diff = newton - cauchy
            t, hits = step_to_bound(cauchy, diff, lo, hi)
            step_free = cauchy + t * diff
            at_lo, at_hi = hits & (diff < 0), hits & (diff > 0)
            tr_hit = bool(np.any(at_lo & (lo == -tr) | at_hi & (hi == tr)))
            at_lo, at_hi = at_lo & (lo == lo_c), at_hi & (hi == hi_c)
        predicted = -_quadratic(self.j_free, self.g_free, step_free)
        x_new = x.copy()
        x_new[free] = np.clip(x[free] + step_free, self.lb[free], self.ub[free])
        idx = np.flatnonzero(free)
        x_new[idx[at_lo]] = self.lb[idx[at_lo]]           # a bound reached is held exactly
        x_new[idx[at_hi]] = self.ub[idx[at_hi]]
        norm = float(np.max(np.abs((x_new - x) * self.scale_inv), initial=0.0))
        return self._step(predicted, norm, tr_hit, x_new)


MODELS = {"trf": TrfModel, "dogbox": DogboxModel, "lm": LmModel}
