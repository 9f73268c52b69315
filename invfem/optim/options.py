"""Frozen, validated option dataclasses for every ``minimize`` method, and named presets.

Defaults follow established practice (scipy's ``_minimize_trust_region``; Nocedal & Wright,
chapter 4): initial radius 1, maximum radius 1e3, acceptance threshold eta = 0.15, radius
x 0.25 when rho < 0.25 and x 2 when rho > 0.75 with the step on the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from invfem.errors import ConfigError


def _positive(name, value, allow_inf=False):
    if not (value > 0) or (math.isinf(value) and not allow_inf) or math.isnan(value):
        raise ConfigError(f"option {name} must be a positive{' ' if allow_inf else ' finite '}number, got {value!r}")


def _tolerance(name, value):
    """A stopping tolerance: finite and >= 0 (0: never stop on it, e.g. reference 000's gtol: 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ConfigError(f"option {name} must be a finite number >= 0 (0: never stop on it), got {value!r}")


def _count(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"option {name} must be a positive integer, got {value!r}")


#: the curvature a trust-region method may use on a least-squares loss
CURVATURES = ("exact", "gauss-newton", "auto")


@dataclass(frozen=True)
class TrustRegionOptions:
    """Outer-loop settings shared by every trust-region method.

    ``eta``: a step is accepted when rho > eta (0 <= eta < 0.25).  ``gtol``: stop when the
    first-order optimality measure (||g||, or ||v g|| with bounds) is below it.  ``xtol``:
    stop when the radius falls below ``xtol * (1 + ||x||)`` (no further progress is
    representable).  ``hessian_chunk``: directions per vmapped HVP when the dense Hessian
    is built by ``torch.func``.  ``hessian``: the curvature of a least-squares loss
    ``||r||^2`` — ``"exact"`` (the problem's Hessian), ``"gauss-newton"`` (``2 J^T J`` from
    the residual Jacobian) or ``"auto"`` (trust-exact only: Gauss–Newton, and the exact
    Hessian after an interior step that lowered the loss by less than a fifth — Fletcher & Xu
    1987, the large-residual regime — or had rho < 1/2; see ``ExactModel.next_kind``); the
    last two need ``minimize(..., residual=...)``.
    """

    initial_radius: float = 1.0
    max_radius: float = 1e3
    eta: float = 0.15
    gtol: float = 1e-8
    maxiter: int = 1000
    xtol: float = 1e-15
    shrink: float = 0.25
    expand: float = 2.0
    shrink_below: float = 0.25
    expand_above: float = 0.75
    hessian_chunk: int | None = None
    hessian: str = "exact"

    def __post_init__(self):
        if self.hessian not in CURVATURES:
            raise ConfigError(f"option hessian must be one of {list(CURVATURES)}, got {self.hessian!r}")
        _positive("initial_radius", self.initial_radius)
        _positive("max_radius", self.max_radius)
        if self.initial_radius > self.max_radius:
            raise ConfigError(f"initial_radius {self.initial_radius} exceeds max_radius {self.max_radius}")
        if not 0 <= self.eta < 0.25:
            raise ConfigError(f"option eta must lie in [0, 0.25), got {self.eta!r}")
        _tolerance("gtol", self.gtol)
        _positive("xtol", self.xtol)
        _count("maxiter", self.maxiter)
        if not 0 < self.shrink < 1:
            raise ConfigError(f"option shrink must lie in (0, 1), got {self.shrink!r}")
        if not self.expand > 1:
            raise ConfigError(f"option expand must exceed 1, got {self.expand!r}")
        if not self.eta <= self.shrink_below < self.expand_above:
            raise ConfigError("options must satisfy eta <= shrink_below < expand_above, got "
                              f"{self.eta}, {self.shrink_below}, {self.expand_above}")
        _count("hessian_chunk", self.hessian_chunk, allow_none=True)


@dataclass(frozen=True)
class TrustExactOptions(TrustRegionOptions):
    """``trust-exact``: Moré–Sorensen on the dense Hessian.

    Subproblem stops when | ||p|| - radius | <= k_easy * radius, or (hard case) when the
    boundary step is within a factor k_hard of the optimal model value; at most
    ``subproblem_maxiter`` factorizations per subproblem.

    Lazy Hessians (Doikov, Chayti & Jaggi 2023): ``hessian_every = m`` keeps the Hessian of
    an iterate for the next ``m - 1`` accepted steps (the gradient is always fresh; rejected
    steps never recompute it), and ``hessian_refresh_rho`` > 0 recomputes it early after an
    accepted step whose rho fell below that value (the model predicts poorly).
    """

    k_easy: float = 0.1
    k_hard: float = 0.2
    subproblem_maxiter: int = 50
    hessian_every: int = 1
    hessian_refresh_rho: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.k_easy < 1 or not 0 < self.k_hard < 1:
            raise ConfigError(f"options k_easy, k_hard must lie in (0, 1), got {self.k_easy}, {self.k_hard}")
        _count("subproblem_maxiter", self.subproblem_maxiter)
        _count("hessian_every", self.hessian_every)
        if not 0 <= self.hessian_refresh_rho < 1:
            raise ConfigError(f"option hessian_refresh_rho must lie in [0, 1), got {self.hessian_refresh_rho!r}")


#: the inner tolerances of the Krylov trust regions (KrylovOptions.forcing)
FORCING = ("superlinear", "eisenstat-walker")

#: the preconditioners of trust-ncg (KrylovOptions.preconditioner)
PRECONDITIONERS = ("none", "low-rank")


@dataclass(frozen=True)
class KrylovOptions(TrustRegionOptions):
    """``trust-ncg`` (Steihaug-CG) and ``trust-krylov`` (GLTR) on Hessian-vector products.

    The inner iteration stops when the residual is below ``cg_tol`` or, when ``cg_tol`` is
    None, below ``eta_k ||g_k||`` with the forcing term ``forcing``: ``"superlinear"``,
    ``eta_k = min(0.5, sqrt(||g_k||))`` (Nocedal & Wright, Alg. 7.1), or ``"eisenstat-walker"``,
    ``eta_k = min(0.5, 0.9 (||g_k|| / ||g_{k-1}||)^2)`` safeguarded by ``0.9 eta_{k-1}^2`` where that
    exceeds 0.1 (Eisenstat & Walker 1996, choice 2: loose far from a solution, tight as the
    gradient falls fast); at most ``cg_maxiter`` products (None: 2 n).

    ``preconditioner`` (trust-ncg): ``"none"`` or ``"low-rank"``, the spectral preconditioner
    ``M = U |Lambda| U^T + sigma (I - U U^T)`` from the ``preconditioner_rank`` dominant eigenpairs of
    the Hessian (:func:`invfem.linalg.low_rank.randomized_eigh` on blocks of Hessian-vector
    products, no power iteration; ``sigma`` = the smallest kept ``|lambda|``), refreshed every
    ``preconditioner_every`` iterations; the trust region is then ``||p||_M <= radius``.
    """

    cg_tol: float | None = None
    cg_maxiter: int | None = None
    forcing: str = "superlinear"
    preconditioner: str = "none"
    preconditioner_rank: int = 20
    preconditioner_every: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.cg_tol is not None:
            _positive("cg_tol", self.cg_tol)
        _count("cg_maxiter", self.cg_maxiter, allow_none=True)
        if self.forcing not in FORCING:
            raise ConfigError(f"option forcing must be one of {list(FORCING)}, got {self.forcing!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ConfigError(f"option preconditioner must be one of {list(PRECONDITIONERS)}, "
                              f"got {self.preconditioner!r}")
        _count("preconditioner_rank", self.preconditioner_rank)
        _count("preconditioner_every", self.preconditioner_every)


@dataclass(frozen=True)
class ReflectiveOptions(TrustExactOptions):
    """``trust-reflective``: Coleman–Li scaled trust region with bounds (reference 004).

    ``max_step_back``: the step stops at most this fraction short of a bound
    (theta = min(max_step_back, ||v g||)).
    """

    max_step_back: float = 0.05

    def __post_init__(self):
        super().__post_init__()
        if self.hessian_every != 1 or self.hessian_refresh_rho != 0:
            raise ConfigError("options hessian_every and hessian_refresh_rho apply to trust-exact only")
        if not 0 < self.max_step_back < 1:
            raise ConfigError(f"option max_step_back must lie in (0, 1), got {self.max_step_back!r}")


@dataclass(frozen=True)
class NewtonOptions:
    """``newton-damped``, ``saddle-free-newton``: x <- x - alpha (M + mu I)^-1 g.

    M is H (damped/exact) or |H| (saddle-free).  Every finite trial is taken (reference 002:
    no acceptance test), which is what lets exact Newton converge to saddles; a NaN/inf
    trial is rejected and the step length is capped at a quarter of the failed step.
    """

    alpha: float = 1.0
    mu: float = 1e-3
    gtol: float = 1e-8
    maxiter: int = 200
    hessian_chunk: int | None = None

    def __post_init__(self):
        _positive("alpha", self.alpha)
        if not (self.mu >= 0) or math.isinf(self.mu):
            raise ConfigError(f"option mu must be a finite number >= 0, got {self.mu!r}")
        _tolerance("gtol", self.gtol)
        _count("maxiter", self.maxiter)
        _count("hessian_chunk", self.hessian_chunk, allow_none=True)


@dataclass(frozen=True)
class ExactNewtonOptions:
    """``newton-exact``: x <- x - alpha H^-1 g (minimum-norm step if H is singular), every
    finite trial taken — the method of reference 002 that converges to saddle points."""

    alpha: float = 1.0
    gtol: float = 1e-8
    maxiter: int = 200
    hessian_chunk: int | None = None

    def __post_init__(self):
        _positive("alpha", self.alpha)
        _tolerance("gtol", self.gtol)
        _count("maxiter", self.maxiter)
        _count("hessian_chunk", self.hessian_chunk, allow_none=True)


@dataclass(frozen=True)
class AdamOptions:
    """Adam (torch) with a fixed learning rate."""

    lr: float = 1e-3
    maxiter: int = 1000
    gtol: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self):
        _positive("lr", self.lr)
        _count("maxiter", self.maxiter)
        _tolerance("gtol", self.gtol)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"option betas must be two numbers in [0, 1), got {self.betas!r}")


@dataclass(frozen=True)
class ScipyOptions:
    """Options passed to ``scipy.optimize.minimize`` (quasi-Newton baselines, exact gradients)."""

    maxiter: int = 1000
    gtol: float = 1e-8

    def __post_init__(self):
        _count("maxiter", self.maxiter)
        _tolerance("gtol", self.gtol)


@dataclass(frozen=True)
class BfgsOptions:
    """``bfgs``: invfem's O(n^2) BFGS (strong Wolfe line search ``c1``, ``c2`` as scipy's).

    Stops when ||g|| <= ``gtol`` (0: never on the gradient), after ``maxiter`` iterations, or
    when a step is shorter than ``xrtol (xrtol + ||x||)``.
    """

    maxiter: int = 1000
    gtol: float = 1e-8
    c1: float = 1e-4
    c2: float = 0.9
    xrtol: float = 0.0

    def __post_init__(self):
        _count("maxiter", self.maxiter)
        _tolerance("gtol", self.gtol)
        if not 0 < self.c1 < self.c2 < 1:
            raise ConfigError(f"options must satisfy 0 < c1 < c2 < 1, got c1={self.c1!r}, c2={self.c2!r}")
        if not self.xrtol >= 0:
            raise ConfigError(f"option xrtol must be >= 0, got {self.xrtol!r}")


#: Named presets: ``options="reference-001"`` (or ``{"preset": "reference-001", ...}``).
PRESETS = {
    "trust-ncg": {
        # Reference 001 (TR Newton-CG report): Delta0 = 2, Delta_max = 10, eta = 1e-3,
        # CG-Steihaug tolerance 1e-8, at most 500 CG iterations.
        "reference-001": {"initial_radius": 2.0, "max_radius": 10.0, "eta": 1e-3, "cg_tol": 1e-8, "cg_maxiter": 500},
    },
}


def parse_options(method: str, cls, options):
    """Options for ``method``: None, a ``cls`` instance, a dict (unknown keys rejected), or a preset name."""
    if options is None:
        return cls()
    if isinstance(options, cls):
        return options
    presets = PRESETS.get(method, {})
    if isinstance(options, str):
        options = {"preset": options}
    if not isinstance(options, dict):
        raise ConfigError(f"options for {method!r} must be a dict, a preset name or {cls.__name__}, "
                          f"got {type(options).__name__}")
    options = dict(options)
    preset = options.pop("preset", None)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r} for {method!r}; valid: {sorted(presets)}")
        options = {**presets[preset], **options}
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {method!r} ({cls.__name__}); valid: {sorted(valid)}")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return replace(cls(), **options)
