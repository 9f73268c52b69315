"""Quadratic models built at one iterate; each computes only the step for a given radius.

A model caches f, g (and H or an H-vector product) at x and offers ``optimality`` (the
first-order measure the loop compares with gtol) and ``step(radius) -> Step``.  The loop in
``invfem.optim.trust_region`` turns ``Step.predicted`` and the actual decrease into rho.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg
import torch

from invfem.errors import ConfigError
from invfem.linalg.low_rank import randomized_eigh
from invfem.optim.subproblems import (_to_boundary, eigen_trust_region, eigenvalue_bounds, gltr, model_value,
                                      more_sorensen, steihaug_cg)


@dataclass(frozen=True)
class Step:
    """A proposed step ``p`` (in x) and what the loop needs to judge it."""

    p: np.ndarray
    predicted: float            # m(0) - m(p): the model's predicted decrease
    norm: float                 # the norm the radius bounds (||p||, or ||p_hat|| when scaled)
    hits_boundary: bool
    correction: float = 0.0     # subtracted from the actual decrease (reflective: p_hat.C p_hat / 2)
    inner_iterations: int = 0
    hard_case: bool = False
    negative_curvature: bool = False
    x_new: np.ndarray | None = None   # the trial point, where it is not x + p to round-off (a bound hit exactly)


def _from_solution(H, g, sol) -> Step:
    norm = torch.linalg.norm(sol.p) if torch.is_tensor(sol.p) else np.linalg.norm(sol.p)   # p may be on a GPU
    return Step(sol.p, -model_value(H, g, sol.p), float(norm), sol.hits_boundary,
                inner_iterations=sol.iterations, hard_case=sol.hard_case, negative_curvature=sol.negative_curvature)


class ExactModel:
    """``trust-exact``: Moré–Sorensen on the dense Hessian, with ``torch.linalg`` on the
    Hessian's device (the GPU for a GPU loss)."""

    def __init__(self, oracle, x, g, options, bounds=None, previous=None):
        self.options, self._oracle = options, oracle
        self.last_rho, self.observed = None, None
        self.kind = "exact"
        if getattr(options, "hessian", "exact") == "auto":
            self.kind = previous.next_kind() if isinstance(previous, ExactModel) else "gauss-newton"
        every, refresh = getattr(options, "hessian_every", 1), getattr(options, "hessian_refresh_rho", 0.0)
        lazy = isinstance(previous, ExactModel) and previous.age + 1 < every and previous.kind == self.kind and not (
            refresh > 0 and previous.last_rho is not None and previous.last_rho < refresh)
        if lazy:                           # the last Hessian (and its eigenvalue bounds) again
            self.H, self._bounds, self.age, self.hessian_x = previous.H, previous._bounds, previous.age + 1, \
                previous.hessian_x
        else:
            self._hessian_at(x)
        self.g = torch.as_tensor(g, device=self.H.device)
        self.optimality = float(np.linalg.norm(g))
        self._solved = (np.inf, 0.0)       # (radius, multiplier) of the last solve on this model
        # the Hessian changes little between iterates: start from the last multiplier
        self._guess = previous._solved[1] if isinstance(previous, ExactModel) else None

    def _hessian_at(self, x):
        self.H, self.age, self.hessian_x = self._oracle.hessian(x, self.kind), 0, np.array(x, dtype=np.float64)
        self._bounds = eigenvalue_bounds(self.H)

    def observe(self, rho: float, step=None, f_before=None, f_after=None) -> None:
        """The loop's rho (and step, f before and after) of the step accepted from this model:
        lazy Hessians refresh on a poor rho; ``hessian: auto`` picks the next curvature from it."""
        self.last_rho = rho
        self.observed = (rho, step, f_before, f_after)

    def next_kind(self) -> str:
        """``hessian: auto`` — the structured model of NL2SOL in a simple form: Gauss–Newton, and
        the exact Hessian after an accepted step inside the region (not cut by the radius) that
        either lowered the loss by less than a fifth (Fletcher & Xu 1987: Gauss–Newton converges
        only linearly, the residual is large) or was predicted poorly (rho < 1/2); once exact,
        exact while such steps go on."""
        if self.observed is None:
            return self.kind
        rho, step, f_before, f_after = self.observed
        interior = step is not None and not step.hits_boundary
        slow = f_before is not None and f_before - f_after < 0.2 * f_before
        return "exact" if interior and (slow or rho < 0.5) else "gauss-newton"

    def warm_state(self) -> dict:
        """What the next steps depend on beyond H and g (for checkpoints)."""
        return {"guess": None if self._guess is None else float(self._guess),
                "solved": [float(v) for v in self._solved], "age": int(self.age), "hessian_x": self.hessian_x,
                "last_rho": self.last_rho, "kind": self.kind}

    def restore(self, state: dict) -> None:
        self._guess = state["guess"]
        self._solved = tuple(state["solved"])
        if state.get("age", 0) > 0 or state.get("kind", self.kind) != self.kind:
            self.kind = state.get("kind", self.kind)   # the saved curvature, formed where it was formed
            self._hessian_at(state["hessian_x"])
            self.age = int(state["age"])
        self.last_rho = state.get("last_rho")

    def step(self, radius) -> Step:
        o = self.options
        # the multiplier is non-increasing in the radius: after a rejected step (smaller
        # radius, same model) the last one is a lower bound
        lower = self._solved[1] if radius <= self._solved[0] else 0.0
        sol = more_sorensen(self.H, self.g, radius, o.k_easy, o.k_hard, o.subproblem_maxiter, lam_lower=lower,
                            lam_guess=self._guess, bounds=self._bounds)
        self._solved = (radius, sol.lam)
        step = _from_solution(self.H, self.g, sol)
        return replace(step, p=sol.p.cpu().numpy())


class KrylovModel:
    """``trust-ncg`` (Steihaug-CG) or ``trust-krylov`` (GLTR) on Hessian-vector products.

    The products of one model are kept in the order the solver asked for them (:class:`Replay`):
    after a rejected step the solver runs again at a smaller radius along the same Krylov
    sequence (it does not depend on the radius), and gets the kept products without computing
    them (GLTR's warm restart, Gould et al. 1999 §5). The predicted decrease uses the ``H p``
    the solver returns: no product for it.
    """

    solver = staticmethod(steihaug_cg)

    preconditioned = True

    def __init__(self, oracle, x, g, options, bounds=None, previous=None):
        self.hessp, self.g, self.options = Replay(oracle.hessp(x)), g, options
        self.optimality = float(np.linalg.norm(g))
        self.eta = forcing_term(options.forcing, self.optimality, previous)
        self.tol = options.cg_tol if options.cg_tol is not None else self.eta * self.optimality
        self.spectrum, self.spectrum_age, self.precondition = None, 0, None
        if options.preconditioner == "low-rank":
            if not self.preconditioned:
                raise ConfigError("option preconditioner applies to trust-ncg (Steihaug-CG); trust-krylov's "
                                  "GLTR runs unpreconditioned")
            kept = getattr(previous, "spectrum", None)
            if kept is not None and previous.spectrum_age + 1 < options.preconditioner_every:
                self.spectrum, self.spectrum_age = kept, previous.spectrum_age + 1
            else:
                self.spectrum = low_rank_spectrum(oracle.hessp_block(x), g.shape[0], options.preconditioner_rank)
            self.precondition = spectral_preconditioner(*self.spectrum)

    def step(self, radius) -> Step:
        self.hessp.restart()
        extra = {} if self.precondition is None else {"precondition": self.precondition}
        sol = self.solver(self.hessp, self.g, radius, self.tol, self.options.cg_maxiter, **extra)
        predicted = -float(self.g @ sol.p + 0.5 * sol.p @ sol.hp)       # both solvers return H p
        norm = sol.norm if sol.norm is not None else float(np.linalg.norm(sol.p))
        return Step(sol.p, predicted, norm, sol.hits_boundary,
                    inner_iterations=sol.iterations, negative_curvature=sol.negative_curvature)


def low_rank_spectrum(apply_block, n: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(|lambda|, U)``: the ``rank`` dominant eigenpairs of the Hessian from blocks of its products
    (randomized, no power iteration; ``rank + 10`` directions, two passes)."""
    found = randomized_eigh(lambda block: torch.as_tensor(apply_block(block.numpy())), n, min(rank, n),
                            power_iterations=0, n_probes=0)
    return found.eigenvalues.abs().numpy(), found.vectors.numpy()


def spectral_preconditioner(magnitudes: np.ndarray, vectors: np.ndarray):
    """``r -> M^-1 r`` for ``M = U |Lambda| U^T + sigma (I - U U^T)``, ``sigma`` the smallest ``|lambda|``
    kept (floored at 1e-12 of the largest): the dominant curvature divided out, the rest scaled by 1/sigma."""
    sigma = max(float(magnitudes.min()), 1e-12 * float(magnitudes.max()), np.finfo(float).tiny)
    scale = 1.0 / np.maximum(magnitudes, sigma) - 1.0 / sigma
    return lambda r: r / sigma + vectors @ (scale * (vectors.T @ r))


def forcing_term(kind: str, gnorm: float, previous=None) -> float:
    """``eta_k`` of the inner tolerance ``eta_k ||g_k||`` (:class:`~invfem.optim.options.KrylovOptions`);
    ``previous``: the model of the last accepted iterate (its ``optimality`` and ``eta``)."""
    if kind == "superlinear":
        return min(0.5, float(np.sqrt(gnorm)))
    last = getattr(previous, "eta", None)
    if last is None or not getattr(previous, "optimality", 0.0):
        return 0.5
    eta = 0.9 * (gnorm / previous.optimality) ** 2
    if 0.9 * last**2 > 0.1:
        eta = max(eta, 0.9 * last**2)
    return min(0.5, eta)


class Replay:
    """A Hessian-vector product that keeps one solve's products in call order: the next solve
    (after :meth:`restart`) gets the kept product wherever it asks for the same vector at the same
    position, and computes (and keeps) from the first difference on. At most ``max_bytes`` kept."""

    def __init__(self, hessp, max_bytes: float = 512 * 2**20):
        self.hessp, self.max_bytes = hessp, max_bytes
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []
        self.position = 0
        self.reused = 0

    def restart(self) -> None:
        self.position = 0

    def __call__(self, v):
        i = self.position
        self.position += 1
        if i < len(self.kept) and np.array_equal(self.kept[i][0], v):
            self.reused += 1
            return self.kept[i][1]
        del self.kept[i:]
        hv = self.hessp(v)
        if (i + 1) * 16 * np.size(v) <= self.max_bytes and len(self.kept) == i:
            self.kept.append((np.array(v, dtype=np.float64, copy=True), hv))
        return hv


class LanczosModel(KrylovModel):
    solver = staticmethod(gltr)
    preconditioned = False


class NewtonModel:
    """x <- x - alpha (M + mu I)^-1 g with M = H (``newton-damped``; mu = 0 for
    ``newton-exact``) or M = |H| = Q|Lambda|Q^T (``saddle-free-newton``, Dauphin et al. 2014).

    The direction does not depend on the radius; the radius only caps its length (it is
    infinite until a non-finite trial value shrinks it).
    """

    kind = "damped"

    def __init__(self, oracle, x, g, options, bounds=None, previous=None):
        H = oracle.hessian(x).cpu().numpy()
        self.H, self.g = H, g
        self.optimality = float(np.linalg.norm(g))
        n = g.shape[0]
        mu = getattr(options, "mu", 0.0)
        if self.kind == "saddle-free":
            lam, Q = np.linalg.eigh(H)
            self.negative = bool(lam[0] < 0)
            scale = np.abs(lam) + mu
            with np.errstate(divide="ignore", invalid="ignore"):   # pseudo-inverse on a zero |lambda| + mu
                direction = -Q @ np.where(scale > 0, (Q.T @ g) / scale, 0.0)
        else:
            self.negative = None
            M = H + mu * np.eye(n)
            try:
                # an ill-conditioned M is what (damped) Newton meets near a saddle: its step is the
                # method's, not an error, and a warning at every such iterate would bury the log
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                    direction = -scipy.linalg.solve(M, g, assume_a="sym", check_finite=False)
                if not np.all(np.isfinite(direction)):
                    raise np.linalg.LinAlgError
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                direction = -np.linalg.lstsq(M, g, rcond=None)[0]  # minimum-norm step if singular
        self.direction = options.alpha * direction

    def step(self, radius) -> Step:
        p, norm = self.direction, float(np.linalg.norm(self.direction))
        clipped = norm > radius
        if clipped:
            p, norm = p * (radius / norm), radius
        return Step(p, -model_value(self.H, self.g, p), norm, clipped, inner_iterations=1,
                    negative_curvature=bool(self.negative))


class ExactNewtonModel(NewtonModel):
    kind = "exact"


class SaddleFreeModel(NewtonModel):
    kind = "saddle-free"


# ---------------------------------------------------------------------------------------
# Coleman–Li reflective trust region with bounds (reference 004)
# ---------------------------------------------------------------------------------------

def coleman_li_scaling(x, g, lb, ub):
    """v (distance to the bound the anti-gradient points at, else 1) and dv/dx (in {-1, 0, 1})."""
    v, dv = np.ones_like(x), np.zeros_like(x)
    up = (g < 0) & np.isfinite(ub)
    v[up], dv[up] = ub[up] - x[up], -1.0
    down = (g > 0) & np.isfinite(lb)
    v[down], dv[down] = x[down] - lb[down], 1.0
    return v, dv


def step_to_bound(x, s, lb, ub):
    """Largest t >= 0 with lb <= x + t s <= ub, and the components that reach a bound there."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(s > 0, (ub - x) / s, np.where(s < 0, (lb - x) / s, np.inf))
    t = np.where(np.isnan(t), np.inf, np.maximum(t, 0.0))
    t_min = float(t.min()) if t.size else np.inf
    return t_min, np.isfinite(t) & (t <= t_min * (1 + 1e-12))


def _line_minimum(a, b, s_lo, s_hi):
    """argmin over [s_lo, s_hi] of a s^2 / 2 + b s, and its value."""
    candidates = [s_lo, s_hi]
    if a > 0:
        candidates.append(min(max(-b / a, s_lo), s_hi))
    s = min(candidates, key=lambda t: 0.5 * a * t * t + b * t)
    return s, 0.5 * a * s * s + b * s


class ReflectiveModel:
    """Coleman–Li scaled model in "hat" variables x = D x_hat, D = diag(v^1/2):

    m_hat(p_hat) = g_hat.p_hat + p_hat.B_hat p_hat / 2,  g_hat = D g,  B_hat = D H D + C,
    C = diag(g dv/dx) >= 0, ||p_hat|| <= radius.  The trust-region step (Moré–Sorensen on
    B_hat) is truncated at the first bound and stepped back by theta = min(max_step_back,
    ||v g||); it competes with one reflection of it off that bound and with the Cauchy step
    along -g_hat; the best model value wins.  rho uses the actual decrease minus
    p_hat.C p_hat / 2.  Iterates stay strictly feasible.
    """

    def __init__(self, oracle, x, g, options, bounds, previous=None):
        self.x, self.lb, self.ub, self.options = x, bounds[0], bounds[1], options
        H = oracle.hessian(x).cpu().numpy()
        v, dv = coleman_li_scaling(x, g, self.lb, self.ub)
        self.d = np.sqrt(v)
        self.c = g * dv
        self.g_hat = self.d * g
        self.B_hat = self.d[:, None] * H * self.d[None, :] + np.diag(self.c)
        self.optimality = float(np.linalg.norm(v * g))
        self.theta = min(options.max_step_back, self.optimality)

    def _model(self, p_hat):
        return model_value(self.B_hat, self.g_hat, p_hat)

    def _along(self, start_hat, dir_hat, s_hi):
        """Best point start + s dir for s in [0, s_hi] (1-D quadratic model)."""
        a = float(dir_hat @ (self.B_hat @ dir_hat))
        b = float((self.g_hat + self.B_hat @ start_hat) @ dir_hat)
        s, _ = _line_minimum(a, b, 0.0, s_hi)
        return start_hat + s * dir_hat

    def step(self, radius) -> Step:
        o, d, x = self.options, self.d, self.x
        sol = more_sorensen(self.B_hat, self.g_hat, radius, o.k_easy, o.k_hard, o.subproblem_maxiter)
        p_hat = sol.p
        t_bound, hits = step_to_bound(x, d * p_hat, self.lb, self.ub)
        chosen_tr = True
        if t_bound > 1:
            best = p_hat
        else:
            truncated = (1 - self.theta) * t_bound * p_hat
            candidates = [truncated]
            # one reflection off the bound that stopped the step
            start = t_bound * p_hat
            r_hat = p_hat.copy()
            r_hat[hits] *= -1
            _, s_radius = _to_boundary(start, r_hat, radius)
            s_bound, _ = step_to_bound(x + d * start, d * r_hat, self.lb, self.ub)
            s_hi = min(s_radius, s_bound)
            if s_hi > 0 and np.isfinite(s_hi):
                a = float(r_hat @ (self.B_hat @ r_hat))
                b = float((self.g_hat + self.B_hat @ start) @ r_hat)
                s, _ = _line_minimum(a, b, self.theta * s_hi, (1 - self.theta) * s_hi)
                candidates.append(start + s * r_hat)
            # Cauchy step along -g_hat
            direction = -self.g_hat
            gn = float(np.linalg.norm(direction))
            if gn > 0:
                s_bound, _ = step_to_bound(x, d * direction, self.lb, self.ub)
                candidates.append(self._along(np.zeros_like(x), direction,
                                              min(radius / gn, (1 - self.theta) * s_bound)))
            values = [self._model(c) for c in candidates]
            best = candidates[int(np.argmin(values))]
            chosen_tr = False
        p = np.clip(x + d * best, self.lb, self.ub) - x
        m = self._model(best)
        norm = float(np.linalg.norm(best))
        return Step(p, -m, norm, bool(chosen_tr and sol.hits_boundary or norm >= 0.95 * radius),
                    correction=0.5 * float(best @ (self.c * best)), inner_iterations=sol.iterations,
                    hard_case=sol.hard_case and chosen_tr, negative_curvature=sol.negative_curvature)


__all__ = ["Step", "ExactModel", "KrylovModel", "LanczosModel", "NewtonModel", "ExactNewtonModel",
           "SaddleFreeModel", "ReflectiveModel", "coleman_li_scaling", "step_to_bound", "eigen_trust_region"]
