"""Trust-region subproblem solvers: min_p m(p) = g.p + p.H p / 2 subject to ||p|| <= radius.

Each solver computes only the step; the outer loop (``invfem.optim.trust_region``) owns
acceptance and the radius.  They work on numpy float64 arrays; :func:`more_sorensen` also
on torch tensors, on their device.

* :func:`more_sorensen` — dense H, Cholesky-based Moré–Sorensen iteration including the
  hard case (Conn, Gould & Toint, *Trust-Region Methods*, Alg. 7.3.6; Nocedal & Wright,
  Alg. 4.3), with a hard cap on the number of factorizations.
* :func:`steihaug_cg` — truncated CG on H-vector products (Nocedal & Wright, Alg. 7.2).
* :func:`gltr` — generalized Lanczos trust region (Gould, Lucidi, Roma & Toint 1999):
  keeps iterating on the boundary after negative curvature, solving the tridiagonal
  subproblem exactly at each Lanczos step.
* :func:`eigen_trust_region` — the exact global minimiser from an eigendecomposition (the
  ground truth for tests, and the tridiagonal solve inside GLTR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.linalg
import torch


@dataclass(frozen=True)
class SubproblemSolution:
    """A step and what the solver met on the way."""

    p: np.ndarray
    lam: float              # multiplier of the norm constraint (0 for an interior step)
    hits_boundary: bool
    iterations: int         # factorizations (dense) or H-vector products (Krylov)
    hard_case: bool = False
    negative_curvature: bool = False
    converged: bool = True
    hp: np.ndarray | None = None    # H p where a Krylov solver has it without another product
    norm: float | None = None       # the norm the radius bounds, where it is not ||p|| (a preconditioner's)


def model_value(H, g, p) -> float:
    """m(p) = g.p + p.H p / 2 for a dense H."""
    return float(g @ p + 0.5 * p @ (H @ p))


def _to_boundary(p, d, radius):
    """Both tau with ||p + tau d|| = radius (tau_minus <= 0 <= tau_plus when ||p|| <= radius)."""
    return _quadratic_roots(float(d @ d), 2.0 * float(p @ d), float(p @ p) - radius**2)


def _quadratic_roots(a, b, c):
    """Both real roots of ``a t^2 + b t + c`` (``a > 0``, ``c <= 0``), smaller first, numerically stable."""
    disc = np.sqrt(max(b * b - 4 * a * c, 0.0))
    # numerically stable roots
    q = -0.5 * (b + np.copysign(disc, b)) if b != 0 else -0.5 * disc
    if q == 0:
        return 0.0, 0.0
    r1, r2 = q / a, c / q
    return min(r1, r2), max(r1, r2)


# ---------------------------------------------------------------------------------------
# dense: Moré–Sorensen
# ---------------------------------------------------------------------------------------

def eigenvalue_bounds(H) -> tuple[float, float, float]:
    """``(upper, minus_lower, min_diag, ritz_min)``: Gershgorin/norm bounds on the extreme
    eigenvalues of a symmetric H (lambda_max <= upper, -lambda_min <= minus_lower), its smallest
    diagonal entry and its smallest Lanczos Ritz value (>= lambda_min, usually close). They
    depend on H only: a model solving several subproblems computes them once."""
    H = torch.as_tensor(H, dtype=torch.float64)
    diag = H.diagonal()
    absolute = H.abs().sum(1)
    off = absolute - diag.abs()
    fro, inf = float(torch.linalg.norm(H)), float(absolute.max())
    return (min(float((diag + off).max()), fro, inf), min(float((off - diag).max()), fro, inf), float(diag.min()),
            lowest_ritz_value(H))


def lowest_ritz_value(H, steps: int = 20) -> float:
    """The smallest Ritz value of ``steps`` Lanczos steps on symmetric H (re-orthogonalised):
    an upper bound on lambda_min(H) that is usually close to it, so ``-value`` is a tight
    lower bound on the trust-region multiplier when H is indefinite."""
    H = torch.as_tensor(H, dtype=torch.float64)
    n = H.shape[0]
    m = min(steps, n)
    basis = H.new_zeros(m, n)
    q = H.new_tensor(np.random.default_rng(2024).standard_normal(n))
    q /= torch.linalg.norm(q)
    alphas, betas = [], []
    for k in range(m):
        basis[k] = q
        w = H @ q
        alphas.append(float(q @ w))
        for _ in range(2):                                  # full re-orthogonalisation, twice
            w -= basis[:k + 1].T @ (basis[:k + 1] @ w)
        beta = float(torch.linalg.norm(w))
        if beta <= 1e-12 * max(abs(a) for a in alphas) or k == m - 1:
            break
        betas.append(beta)
        q = w / beta
    t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    return float(np.linalg.eigvalsh(t)[0])


def _lambda_bounds(bounds, gnorm, radius):
    """Initial bracket [lo, hi] for the multiplier (Conn, Gould & Toint, section 7.3.8)."""
    upper_eig, minus_lower_eig, min_diag = bounds[:3]
    lo = max(0.0, -min_diag, gnorm / radius - upper_eig, -bounds[3] if len(bounds) > 3 else 0.0)
    hi = max(0.0, gnorm / radius + minus_lower_eig)
    return lo, hi


class _Cholesky:
    """Factorizations of ``H + lam I`` with ``torch.linalg`` on the device of ``H``, into one
    reused work array. (On the host, torch's own BLAS only: interleaving it with numpy's
    OpenBLAS thread pool makes both spin.)"""

    def __init__(self, H: torch.Tensor):
        self.H = H
        self.shifted = torch.empty_like(H)
        self.chol = None

    def factor(self, lam: float) -> bool:
        self.shifted.copy_(self.H).diagonal().add_(lam)
        self.chol, info = torch.linalg.cholesky_ex(self.shifted)
        return int(info) == 0

    def lower_solve(self, b):
        return torch.linalg.solve_triangular(self.chol, b[:, None], upper=False)[:, 0]

    def solve(self, b):
        y = torch.linalg.solve_triangular(self.chol, b[:, None], upper=False)
        return torch.linalg.solve_triangular(self.chol.mT, y, upper=True)[:, 0]

    def lowest_eigenpair(self):
        w, v = torch.linalg.eigh(self.H)
        return float(w[0]), v[:, 0]

    def random(self):
        return self.H.new_tensor(np.random.default_rng(12345).standard_normal(self.H.shape[0]))


def more_sorensen(H, g, radius, k_easy=0.1, k_hard=0.2, maxiter=50, lam_lower: float = 0.0,
                  lam_guess: float | None = None, bounds: tuple | None = None) -> SubproblemSolution:
    """Nearly exact solution of the dense trust-region subproblem, hard case included.

    Finds lam >= 0 with (H + lam I) positive semidefinite, (H + lam I) p = -g and
    lam (||p|| - radius) = 0.  Newton's method on 1/||p(lam)|| - 1/radius inside a
    safeguarded bracket; one Cholesky factorization per iteration.  Stops when
    | ||p|| - radius | <= k_easy radius, or, in the hard case, with p + tau z on the
    boundary (z an approximate eigenvector of the smallest eigenvalue, found by inverse
    iteration) once tau^2 z.(H+lam I)z <= k_hard (p.(H+lam I)p + lam radius^2).  After
    ``maxiter`` factorizations it returns the best feasible step met (the Cauchy step if
    none), flagged ``converged=False`` — it never loops forever (cf. scipy issue 12513).

    As scipy's ``trust-exact``, it starts at lam = 0 (the Newton step) only when the bracket
    allows it (H has no negative diagonal entry). ``lam_lower``: a known lower bound on the
    multiplier (the multiplier of the same model at a larger radius, after a rejected step);
    ``lam_guess``: a starting multiplier inside the bracket (the previous iterate's) — both
    save factorizations; ``bounds``: :func:`eigenvalue_bounds` of H if already known.

    ``H`` and ``g`` are numpy arrays or torch tensors; the work is done with ``torch.linalg``
    on the device of ``H`` (the GPU for a GPU Hessian), and ``p`` comes back in the type
    (and device) of ``g``.
    """
    h = torch.as_tensor(H, dtype=torch.float64)
    sol = _more_sorensen(_Cholesky(h), torch.as_tensor(g, dtype=torch.float64, device=h.device), radius, k_easy,
                         k_hard, maxiter, float(lam_lower), lam_guess, bounds or eigenvalue_bounds(h))
    if not torch.is_tensor(g):
        sol = replace(sol, p=sol.p.cpu().numpy())
    elif sol.p.device != g.device:
        sol = replace(sol, p=sol.p.to(g.device))
    return sol


def _norm(v) -> float:
    return float(v @ v) ** 0.5


def _more_sorensen(ops, g, radius, k_easy, k_hard, maxiter, lam_lower, lam_guess, bounds) -> SubproblemSolution:
    H = ops.H
    gnorm = _norm(g)
    lo, hi = _lambda_bounds(bounds, gnorm, radius)
    lo = max(lo, lam_lower)
    hi = max(hi, lo)
    if gnorm == 0:
        # stationary point of the model: p = 0 unless H has negative curvature
        w, v = ops.lowest_eigenpair()
        if w >= 0:
            return SubproblemSolution(g * 0.0, 0.0, False, 1)
        return SubproblemSolution(radius * v, -w, True, 1, hard_case=True, negative_curvature=True)
    # the Newton step first where the bracket allows it: an interior Newton step ends the search
    # (H indefinite: lo >= -lambda_min from the Ritz value, usually close to it; the multiplier
    # is near lo in the hard or nearly hard case, and Newton from its left converges monotonically)
    lam = 0.0 if lo == 0 else min(max(math.sqrt(lo * hi), lo + 0.01 * (hi - lo)), 1.1 * lo)
    if lam_lower > 0 and lam_lower >= lo:
        # same model, smaller radius: the multiplier grows from the last one; Newton from the
        # left of the root converges monotonically (the secular function is concave)
        lam = lam_lower * (1 + 1e-3)
    elif lam_guess is not None and lo < lam_guess < hi:
        lam = lam_guess
    best_p, best_m = None, math.inf
    negative = bounds[2] < 0

    def keep(p):
        nonlocal best_p, best_m
        m = model_value(H, g, p)
        if _norm(p) <= radius * (1 + 1e-12) and m < best_m:
            best_p, best_m = p, m

    for it in range(1, maxiter + 1):
        if not ops.factor(lam):
            # H + lam I is indefinite, so lam < -lambda_min <= lam*
            negative = negative or lam == 0
            lo = max(lo, lam)
            if lo >= hi:
                hi = max(2.0 * hi, 1.01 * lo + 1e-12)
            lam = max(math.sqrt(lo * hi), lo + 0.01 * (hi - lo))
            continue
        p = -ops.solve(g)
        pnorm = _norm(p)
        if pnorm <= radius:
            if lam == 0:
                return SubproblemSolution(p, 0.0, False, it)
            keep(p)
            hi = min(hi, lam)
            # hard-case test: move along an approximate eigenvector of lambda_min to the boundary
            z = ops.random()
            for _ in range(4):              # inverse iteration with the Cholesky factor
                z = ops.solve(z)
                z = z / _norm(z)
            zhz = float(z @ (H @ z)) + lam
            t_minus, t_plus = _to_boundary(p, z, radius)
            tau = min((t_minus, t_plus), key=lambda t: model_value(H, g, p + t * z))
            keep(p + tau * z)
            if tau**2 * zhz <= k_hard * (float(p @ (H @ p)) + lam * pnorm**2 + lam * radius**2):
                return SubproblemSolution(p + tau * z, lam, True, it, hard_case=True, negative_curvature=negative)
            lo = max(lo, lam - zhz)
        else:
            lo = max(lo, lam)
        if abs(pnorm - radius) <= k_easy * radius:
            return SubproblemSolution(p, lam, True, it, negative_curvature=negative)
        # Newton step on the secular equation 1/||p(lam)|| = 1/radius
        q = ops.lower_solve(p)
        lam_new = lam + (pnorm / _norm(q)) ** 2 * (pnorm - radius) / radius
        lam = lam_new if lo < lam_new < hi else max(math.sqrt(lo * hi), lo + 0.01 * (hi - lo))
    if best_p is None:
        best_p = _cauchy_step(H @ g, g, radius)
    return SubproblemSolution(best_p, lam, bool(_norm(best_p) >= radius * (1 - k_easy)),
                              maxiter, negative_curvature=negative, converged=False)


def _cauchy_step(hg, g, radius):
    """Minimiser of the model along -g inside the ball (Nocedal & Wright, eq. 4.12)."""
    gnorm = float((g @ g) ** 0.5)
    if gnorm == 0:
        return g * 0.0
    ghg = float(g @ hg)
    tau = 1.0 if ghg <= 0 else min(gnorm**3 / (radius * ghg), 1.0)
    return -tau * radius / gnorm * g


# ---------------------------------------------------------------------------------------
# exact reference through the eigendecomposition
# ---------------------------------------------------------------------------------------

def diagonal_trust_region(theta, c, radius, hard_tol=1e-12):
    """Global minimiser of sum(c y + theta y^2 / 2) over ||y|| <= radius (theta sorted ascending).

    Returns (y, lam, hard_case).  The multiplier solves ||y(lam)|| = radius with
    y(lam) = -c / (theta + lam) by Brent's method on the (monotone) secular function; the
    hard case (c vanishing on the eigenspace of theta_min and the pseudo-inverse step
    inside the ball) adds the eigenvector to reach the boundary.
    """
    theta, c = np.asarray(theta, dtype=np.float64), np.asarray(c, dtype=np.float64)
    tmin = float(theta[0])
    cnorm = float(np.linalg.norm(c))
    if tmin > 0:
        y = -c / theta
        if np.linalg.norm(y) <= radius:
            return y, 0.0, False
    lam_lo = max(0.0, -tmin)
    scale = max(abs(tmin), float(np.abs(theta).max()), 1e-300)
    null = np.abs(theta - tmin) <= 1e-14 * scale if tmin <= 0 else np.zeros_like(theta, dtype=bool)
    if tmin <= 0 and np.linalg.norm(c[null]) <= hard_tol * max(cnorm, 1e-300):
        y = np.where(null, 0.0, -c / np.where(null, 1.0, theta + lam_lo))
        ynorm = float(np.linalg.norm(y))
        if ynorm <= radius:
            y[np.flatnonzero(null)[0]] += np.sqrt(max(radius**2 - ynorm**2, 0.0))
            return y, lam_lo, True

    def phi(lam):
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(c == 0, 0.0, -c / (theta + lam))
        return 1.0 / np.linalg.norm(y) - 1.0 / radius

    lam_hi = lam_lo + cnorm / radius + 1.0
    while phi(lam_hi) < 0:
        lam_hi *= 2
    # phi(lam_lo) < 0 here: either ||y(lam_lo)|| is infinite or the step at lam_lo leaves the ball
    import scipy.optimize     # lazily: trust-exact never needs it

    lam = scipy.optimize.brentq(phi, lam_lo, lam_hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    y = np.where(c == 0, 0.0, -c / (theta + lam))
    return y, float(lam), False


def eigen_trust_region(H, g, radius) -> SubproblemSolution:
    """Exact global minimiser from ``numpy.linalg.eigh`` (reference solution, O(n^3))."""
    theta, Q = np.linalg.eigh(0.5 * (H + H.T))
    y, lam, hard = diagonal_trust_region(theta, Q.T @ g, radius)
    return SubproblemSolution(Q @ y, lam, lam > 0, 1, hard_case=hard, negative_curvature=bool(theta[0] < 0))


# ---------------------------------------------------------------------------------------
# Krylov: Steihaug-CG and GLTR
# ---------------------------------------------------------------------------------------

def _forcing_tol(gnorm, tol):
    return min(0.5, np.sqrt(gnorm)) * gnorm if tol is None else tol


def steihaug_cg(hessp, g, radius, tol=None, maxiter=None, precondition=None) -> SubproblemSolution:
    """Truncated conjugate gradients (Steihaug; Nocedal & Wright Alg. 7.2).

    Stops at the boundary when an iterate leaves the ball or negative curvature d.Hd <= 0
    is met (then it moves to the boundary point of lower model value along d), or when the
    residual ||H p + g|| falls below ``tol`` (default: the forcing term
    min(0.5, sqrt(||g||)) ||g||).  At most ``maxiter`` products (default 2 n).

    ``precondition(r) = M^-1 r`` (M symmetric positive definite): preconditioned CG in the trust
    region ``||p||_M <= radius`` (Steihaug–Toint; Conn, Gould & Toint 2000, Alg. 7.5.1), the
    M-norms of the iterates by the recurrences ``p'Md <- beta (p'Md + alpha d'Md)``,
    ``d'Md <- r'z + beta^2 d'Md`` (no product with M); the solution's ``norm`` is ``||p||_M``.
    """
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    maxiter = 2 * n if maxiter is None else maxiter
    gnorm = float(np.linalg.norm(g))
    tol = _forcing_tol(gnorm, tol)
    if gnorm <= tol:
        return SubproblemSolution(np.zeros(n), 0.0, False, 0, hp=np.zeros(n), norm=0.0)
    p, r = np.zeros(n), g.copy()
    z = r.copy() if precondition is None else np.asarray(precondition(r), dtype=np.float64)
    d = -z
    rz = float(r @ z)
    pmp = pmd = 0.0                  # ||p||_M^2 and p'M d
    dmd = rz                         # ||d||_M^2

    def boundary():                  # both roots of ||p + tau d||_M = radius (Euclidean: from p and d themselves)
        if precondition is None:
            return _to_boundary(p, d, radius)
        return _quadratic_roots(dmd, 2.0 * pmd, pmp - radius**2)

    for it in range(1, maxiter + 1):
        hd = hessp(d)
        dhd = float(d @ hd)
        hp = r - g                                          # H p (the residual is H p + g)
        if dhd <= 0:
            t_minus, t_plus = boundary()
            # model along d: m(p + t d) - m(p) = t (r.d) + t^2 dhd / 2
            ma = t_minus * (r @ d) + 0.5 * t_minus**2 * dhd
            mb = t_plus * (r @ d) + 0.5 * t_plus**2 * dhd
            t = t_minus if ma < mb else t_plus
            return SubproblemSolution(p + t * d, np.nan, True, it, negative_curvature=True, hp=hp + t * hd,
                                      norm=float(radius))
        alpha = rz / dhd
        outside = (np.linalg.norm(p + alpha * d) >= radius if precondition is None
                   else pmp + 2 * alpha * pmd + alpha**2 * dmd >= radius**2)
        if outside:
            t = boundary()[1]
            return SubproblemSolution(p + t * d, np.nan, True, it, hp=hp + t * hd, norm=float(radius))
        p = p + alpha * d
        pmp = pmp + 2 * alpha * pmd + alpha**2 * dmd
        r = r + alpha * hd
        if float(np.linalg.norm(r)) < tol:
            return SubproblemSolution(p, 0.0, False, it, hp=r - g, norm=float(np.sqrt(max(pmp, 0.0))))
        z = r.copy() if precondition is None else np.asarray(precondition(r), dtype=np.float64)
        rz_next = float(r @ z)
        beta = rz_next / rz
        d = -z + beta * d
        pmd = beta * (pmd + alpha * dmd)
        dmd = rz_next + beta * beta * dmd
        rz = rz_next
    return SubproblemSolution(p, 0.0, False, maxiter, converged=False, hp=r - g, norm=float(np.sqrt(max(pmp, 0.0))))


def gltr(hessp, g, radius, tol=None, maxiter=None) -> SubproblemSolution:
    """Generalized Lanczos trust region (Gould, Lucidi, Roma & Toint, SIAM J. Optim. 1999).

    Builds the Lanczos basis Q_k of the Krylov space of (H, g), with H Q_k = Q_k T_k + ...,
    and solves min ||g|| e1.h + h.T_k h / 2, ||h|| <= radius exactly at every step; the step
    is p = Q_k h.  Unlike Steihaug-CG it does not stop at negative curvature or at the
    boundary: it continues until the residual ||(H + lam I) p + g|| = beta_k |h_k| falls
    below ``tol`` (default: the forcing term), at most ``maxiter`` products (default 2 n).
    The Lanczos vectors are re-orthogonalised, so the step is reliable for k up to n.
    """
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    maxiter = min(2 * n if maxiter is None else maxiter, n)
    gnorm = float(np.linalg.norm(g))
    tol = _forcing_tol(gnorm, tol)
    if gnorm <= tol or gnorm == 0:
        return SubproblemSolution(np.zeros(n), 0.0, False, 0, hp=np.zeros(n))
    basis = [g / gnorm]
    alphas, betas = [], []
    negative = False
    h, lam, theta = None, 0.0, None
    for k in range(1, maxiter + 1):
        q = basis[-1]
        w = hessp(q)
        alpha = float(q @ w)
        w = w - alpha * q - (betas[-1] * basis[-2] if betas else 0.0)
        Q = np.stack(basis, axis=1)
        w -= Q @ (Q.T @ w)  # full re-orthogonalisation
        beta = float(np.linalg.norm(w))
        alphas.append(alpha)
        theta, S = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas))
        negative = negative or theta[0] <= 0
        y, lam, _ = diagonal_trust_region(theta, gnorm * S[0, :], radius)
        h = S @ y
        residual = beta * abs(h[-1])
        if residual <= tol or beta <= 1e-14 * max(abs(theta).max(), 1.0) or k == maxiter:
            p = Q @ h
            # H Q_k = Q_k T_k + w e_k^T (w: the next Lanczos vector before normalisation)
            a, b = np.array(alphas), np.array(betas)
            th = a * h
            if k > 1:
                th[:-1] += b * h[1:]
                th[1:] += b * h[:-1]
            return SubproblemSolution(p, lam, lam > 0, k, negative_curvature=negative,
                                      converged=residual <= tol or beta <= 1e-14 * max(abs(theta).max(), 1.0),
                                      hp=Q @ th + w * h[-1])
        betas.append(beta)
        basis.append(w / beta)
    raise AssertionError("unreachable")
