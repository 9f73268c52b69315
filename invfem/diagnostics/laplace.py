"""Uncertainty of a learned law: the Laplace approximation with the EXACT Hessian.

A loss ``L(theta) = misfit(theta) + alpha ||theta||^2`` whose misfit is the negative
log-likelihood of the data (``(1/2) sum ((B u - d) / sigma)^2`` when sigma is given) is the
negative log-posterior of theta under the prior ``N(0, I / (2 alpha))``. Around the optimum
theta*, the Laplace approximation is ``N(theta*, Sigma)`` with

    Sigma = (H + 2 alpha I)^{-1},   H = Hess misfit(theta*)  (exact, through the PDE solve),

where the negative part of ``H`` (a stationary point that is not a strict minimum, or a
misfit that is not locally convex) is clipped to zero and reported. Two predictives of kappa:

- samples ``theta ~ N(theta*, Sigma)`` pushed through kappa_theta: pointwise mean, standard
  deviation and 95% band (2.5% / 97.5% quantiles);
- the linearized predictive ``kappa_theta* + J (theta - theta*)``, ``J = d kappa / d theta``:
  standard deviation ``sqrt(diag(J Sigma J^T))``, band ``kappa_theta* +- 1.96 std``, no sampling.

They agree when kappa is close to linear over the posterior's spread. A network fitted to
few observations keeps directions the data do not see (prior variance there); moving along
several of them at once changes kappa at second order (an output weight times a hidden
weight) and the pushed-through samples then spread far more than the data allow. The
linearized bands are the ones that stay calibrated there (Immer et al., AISTATS 2021,
"Improving predictions of Bayesian neural nets via local linearization"; laplace-torch's
default ``glm`` predictive): ``docs/user_problems.md`` shows both on the L-shape example,
with how often they contain the true law. Without sigma the misfit is the reference's plain sum of squares,
i.e. the likelihood of noise with variance 1/2: the bands then show the shape of the
uncertainty, not calibrated error bars.

Both bands are formed where the network is linear in its output, before the positivity
transform (softplus, exp, square) of an :class:`~invfem.nn.MLP`: with ``z = N_theta(x)`` and
``kappa = phi(z) + shift``, the linearized predictive ``z* + J_z (theta - theta*)`` is Gaussian,
its 95% band ``z* -+ 1.96 std_z`` is mapped through ``phi`` (monotone: the band of kappa), and
the samples are that predictive's draws pushed through ``phi``. So the bands stay inside
kappa's range (positive under softplus) and always contain kappa_theta* (the image of z*).
``samples_nonlinear`` keeps the draws of theta pushed through the whole network, for
comparison: with directions the data do not see they can spread far from kappa_theta* (the
issue that made them the bands before). At a point that is not a local minimum (the loss's
Hessian has eigenvalues below ``-eps lambda_max``) there is no Laplace posterior:
:class:`NotAMinimumError`. ``effective_dimension`` is ``sum lambda_i / (lambda_i + 2 alpha)``,
the number of directions the data inform.

hIPPYlib builds this posterior for FEM parameter fields, laplace-torch for networks with
Gauss–Newton curvature and no PDE; here H is the exact Hessian of the PDE-coupled loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from invfem.errors import ConfigError, InvfemError


class NotAMinimumError(InvfemError, ValueError):
    """Laplace asked at a point whose Hessian has clearly negative eigenvalues: no posterior there."""


@dataclass(frozen=True, eq=False)
class LaplaceResult:
    """The Laplace posterior at ``theta`` and kappa's statistics at ``points``.

    Attributes
    ----------
    theta : the optimum (the posterior mean of theta).
    covariance : ``(P, P)`` posterior covariance ``(H_+ + 2 alpha I)^{-1}`` (None with a ``rank``).
    eigenvalues : eigenvalues of the misfit Hessian ``H`` (before clipping), ascending.
    n_clipped : how many were negative (set to zero); ``most_negative`` the smallest (0 if none).
    alpha : the prior weight of ``alpha ||theta||^2``.
    points : where kappa was evaluated (``(n, 2)`` points for kappa(x), ``(n,)`` values for kappa(u)).
    kappa_map : kappa at ``theta``; ``samples`` ``(n_samples, n)`` kappa of the theta samples.
    mean, std, lower, upper : pointwise sample mean, standard deviation and 2.5% / 97.5% quantiles
        of the samples (the linearized predictive of the network's output, through its positivity).
    std_linearized : the standard deviation of kappa's linearized predictive ``sqrt(diag(J Sigma J^T))``.
    lower_linearized, upper_linearized : the linearized 95% band, formed before the positivity
        transform and mapped through it (``kappa_map -+ 1.96 std_linearized`` without one).
    effective_dimension : ``sum lambda_i / (lambda_i + 2 alpha)`` over the clipped misfit eigenvalues.
    samples_nonlinear : ``(n_samples, n)`` the theta samples pushed through the whole network.
    low_rank : with ``laplace(..., rank=r)``, the :class:`~invfem.diagnostics.low_rank.LowRankHessian`
        the posterior comes from (``covariance`` is then None; ``eigenvalues`` are its r).
    """

    theta: torch.Tensor
    covariance: torch.Tensor
    eigenvalues: torch.Tensor
    n_clipped: int
    most_negative: float
    alpha: float
    points: torch.Tensor
    kappa_map: torch.Tensor
    samples: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    std_linearized: torch.Tensor
    lower_linearized: torch.Tensor
    upper_linearized: torch.Tensor
    effective_dimension: float
    samples_nonlinear: torch.Tensor
    low_rank: object = None

    def restricted(self, index) -> "LaplaceResult":
        """The statistics at ``points[index]`` only (e.g. one experiment's dofs of a joint problem)."""
        per_point = ("points", "kappa_map", "mean", "std", "lower", "upper", "std_linearized", "lower_linearized",
                     "upper_linearized")
        changes = {name: getattr(self, name)[index] for name in per_point}
        changes.update(samples=self.samples[:, index], samples_nonlinear=self.samples_nonlinear[:, index])
        return replace(self, **changes)

    @property
    def band_width(self) -> torch.Tensor:
        """``upper - lower`` at every point (the width of the sampled 95% band)."""
        return self.upper - self.lower

    @property
    def band_width_linearized(self) -> torch.Tensor:
        """The width of the linearized 95% band (``2 * 1.96 * std_linearized`` without a positivity transform)."""
        return self.upper_linearized - self.lower_linearized

    def coverage(self, kappa_true: torch.Tensor) -> dict:
        """The fraction of the points where each 95% band contains ``kappa_true`` (at the same points)."""
        inside = lambda lo, hi: float(((kappa_true >= lo) & (kappa_true <= hi)).to(torch.float64).mean())
        return {"samples": inside(self.lower, self.upper),
                "linearized": inside(self.lower_linearized, self.upper_linearized)}

    def summary(self, kappa_true: torch.Tensor | None = None) -> dict:
        """Plain numbers for a results file: clipping, prior, band widths (and their coverage of
        ``kappa_true`` at :attr:`points`, when given)."""
        out = {"n_samples": int(self.samples.shape[0]), "alpha": self.alpha, "n_clipped": self.n_clipped,
               "effective_dimension": self.effective_dimension, "n_params": int(self.theta.numel()),
               "contains_kappa_map": bool(((self.lower <= self.kappa_map) & (self.kappa_map <= self.upper)).all()),
               "most_negative": self.most_negative, "lambda_max": float(self.eigenvalues[-1]),
               "band_width_mean": float(self.band_width.mean()), "band_width_max": float(self.band_width.max()),
               "band_width_linearized_mean": float(self.band_width_linearized.mean()),
               "band_width_linearized_max": float(self.band_width_linearized.max()),
               "std_mean": float(self.std.mean()), "std_linearized_mean": float(self.std_linearized.mean())}
        if self.low_rank is not None:
            out.update(rank=int(self.low_rank.eigenvalues.numel()), n_hvp=self.low_rank.n_hvp,
                       eigenvalue_error_max=float(self.low_rank.eigenvalue_errors.max()),
                       norm_error_estimate=self.low_rank.error_estimate)
        if kappa_true is not None:
            out["coverage"] = self.coverage(kappa_true)
        return out


def _default_points(problem, theta: torch.Tensor) -> torch.Tensor:
    """kappa(x): the space's dof coordinates; kappa(u): the nodal values of u_theta (both: one value per dof)."""
    space = problem.info.get("space")
    if problem.info.get("kappa_input", "x") == "u":
        return problem.state_values(theta)
    if space is None:
        raise ConfigError("laplace: the problem has no space in its info; give the points to evaluate kappa at")
    return space.dof_coordinates


def laplace(problem, theta: torch.Tensor, n_samples: int = 200, seed: int = 0, points=None, alpha: float | None = None,
            hessian: torch.Tensor | None = None, eps: float = 1e-6, rank: int | None = None,
            low_rank=None) -> LaplaceResult:
    """The Laplace posterior of ``problem``'s network at ``theta`` and kappa's bands.

    ``alpha`` defaults to the problem's ``regularization`` (``info``); ``hessian`` is the exact
    Hessian of ``problem.loss`` at ``theta`` when already computed (else ``problem.hessian``).
    ``points``: where to evaluate kappa (default: one value per dof — at the dof coordinates for
    kappa(x), at the dof values of u_theta for kappa(u)). A singular misfit Hessian with ``alpha = 0`` has no proper posterior: an error; so
    has a point that is not a local minimum (:class:`NotAMinimumError`: the loss's Hessian has an
    eigenvalue below ``-eps lambda_max``; smaller negative ones, round-off of a minimum, are clipped).

    ``rank``: the posterior from the ``rank`` dominant eigenpairs of the misfit Hessian
    (:func:`invfem.diagnostics.low_rank.low_rank_hessian`, by Hessian-vector products; the P x P
    matrix is never formed) and the prior in the other directions (hIPPYlib's low-rank Laplace):
    ``Sigma = (2 alpha)^-1 (I - V D V^T)``, ``D = lambda / (lambda + 2 alpha)``. It needs a prior;
    ``covariance`` is then None, and ``low_rank`` holds the eigensolver's result (with its error estimate).
    ``low_rank``: those pairs already computed (of the misfit's Hessian, ``low_rank_hessian(..., misfit=True)``).
    """
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ConfigError(f"laplace: n_samples must be an integer >= 2, got {n_samples!r}")
    alpha = float(problem.regularization if alpha is None else alpha)
    if alpha < 0:
        raise ConfigError(f"laplace: alpha must be >= 0, got {alpha}")
    theta = theta.detach()
    n = theta.numel()
    if rank is None and low_rank is None:
        lam, vectors = torch.linalg.eigh(misfit_hessian(problem, theta, hessian, alpha))
    else:
        if alpha == 0:
            raise ConfigError("laplace: rank needs a prior (regularization > 0): the directions beyond the rank "
                              "keep the prior's variance")
        if low_rank is None:          # the misfit's pairs: the prior's flat 2 alpha would hide its small ones
            from invfem.diagnostics.low_rank import low_rank_hessian
            low_rank = low_rank_hessian(problem, theta, rank, seed=seed, misfit=True)
        order = torch.argsort(low_rank.eigenvalues)
        lam, vectors = low_rank.eigenvalues[order], low_rank.vectors[:, order]
    n_clipped = int((lam < 0).sum())
    precision = lam.clamp(min=0) + 2.0 * alpha
    if alpha == 0 and bool(precision.min() <= 1e-12 * precision.max().clamp(min=1e-300)):
        raise ConfigError("laplace: the misfit Hessian is singular and there is no prior (regularization: 0); "
                          "set regularization > 0 for a proper posterior")
    full = lam + 2.0 * alpha                              # the loss's Hessian: misfit and prior
    cut = eps * float(full.abs().max())
    if bool((full < -cut).any()):
        k = int((full < -cut).sum())
        raise NotAMinimumError(f"laplace: theta is not a local minimum: {k} eigenvalue(s) of the Hessian below "
                               f"-{eps:g} lambda_max (most negative {float(full[0]):.3e}, lambda_max "
                               f"{float(full[-1]):.3e}); no posterior there: train further (or to a minimum)")
    scale = precision.rsqrt()
    prior = (2.0 * alpha) ** -0.5 if low_rank is not None else None        # the scale beyond the rank
    covariance = (vectors * scale**2) @ vectors.T if low_rank is None else None
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n_samples, n, generator=gen, dtype=torch.float64).to(theta.device)
    if low_rank is None:
        thetas = theta + (z * scale) @ vectors.T
    else:
        thetas = theta + prior * z + ((z @ vectors) * (scale - prior)) @ vectors.T
    points = _default_points(problem, theta) if points is None else torch.as_tensor(points, dtype=torch.float64,
                                                                                      device=theta.device)
    inputs = points[:, None] if points.ndim == 1 else points
    raw, output, slope = _link(problem.kappa)
    with torch.no_grad():
        kappa_map = problem.kappa(theta, inputs)
        samples_nonlinear = torch.stack([problem.kappa(t, inputs) for t in thetas])
        z_map = raw(theta, inputs)
    jacobian_z = law_jacobian(problem.kappa, theta, inputs, raw=True)                    # (n, P)
    std_z = linearized_variance(jacobian_z, vectors, lam, alpha, complete=low_rank is None).sqrt()
    std_linearized = slope(z_map).abs() * std_z                    # d kappa / d theta = phi'(z) J_z, pointwise
    lower_linearized, upper_linearized = _interval(output, z_map - 1.96 * std_z, z_map + 1.96 * std_z)
    with torch.no_grad():
        samples = output(z_map + (thetas - theta) @ jacobian_z.T)                       # the linearized predictive
    quantiles = torch.quantile(samples, torch.tensor([0.025, 0.975], dtype=samples.dtype, device=samples.device), dim=0)
    effective = float((lam.clamp(min=0) / precision).sum())
    return LaplaceResult(theta=theta, covariance=covariance, eigenvalues=lam, n_clipped=n_clipped,
                         most_negative=float(lam[0].clamp(max=0)), alpha=alpha, points=points, kappa_map=kappa_map,
                         samples=samples, mean=samples.mean(0), std=samples.std(0), lower=quantiles[0],
                         upper=quantiles[1], std_linearized=std_linearized, lower_linearized=lower_linearized,
                         upper_linearized=upper_linearized, effective_dimension=effective,
                         samples_nonlinear=samples_nonlinear, low_rank=low_rank)


def linearized_variance(jacobian: torch.Tensor, vectors: torch.Tensor, lam: torch.Tensor, alpha: float,
                        complete: bool) -> torch.Tensor:
    """Pointwise variance ``diag(J Sigma J^T)`` of a linearized predictive under the Laplace
    posterior ``Sigma = (H_+ + 2 alpha I)^-1``, from eigenpairs ``(lam, vectors)`` of the misfit
    Hessian ``H``: ``sum_k (J v_k)^2 / (lam_k+ + 2 alpha)``, plus, where the pairs are not
    ``complete`` (a low-rank ``H``), the prior's ``1 / (2 alpha)`` on the rest of each row of ``J``."""
    jv = jacobian @ vectors
    inside = (jv * jv / (lam.clamp(min=0) + 2.0 * alpha)).sum(1)
    if complete:
        return inside
    rest = ((jacobian * jacobian).sum(1) - (jv * jv).sum(1)).clamp(min=0)
    return inside + rest / (2.0 * alpha)


def misfit_hessian(problem, theta: torch.Tensor, hessian: torch.Tensor | None = None,
                   alpha: float | None = None) -> torch.Tensor:
    """The exact Hessian of the data misfit at ``theta``: the loss's (``hessian``, else
    ``problem.hessian``), symmetrized, less the prior's ``2 alpha I`` (``alpha`` defaults to the
    problem's ``regularization``)."""
    h = problem.hessian(theta) if hessian is None else hessian
    alpha = float(problem.regularization if alpha is None else alpha)
    return 0.5 * (h + h.T) - 2.0 * alpha * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)


#: points per batch of the generic (``jacrev``) law Jacobian: its intermediates hold batch x points values
JACREV_CHUNK = 64


def law_jacobian(kappa, theta: torch.Tensor, inputs: torch.Tensor, raw: bool = False) -> torch.Tensor:
    """``d kappa(theta, x_i) / d theta`` ``(n, P)`` at the points ``inputs`` (``raw=True``: of the network's
    output before its positivity transform, :func:`_link`): the closed form of an invfem MLP with one
    output (:func:`~invfem.nn.hessian.network_terms`, ``O(n P)``), else ``torch.func.jacrev`` in
    batches of :data:`JACREV_CHUNK` outputs (its memory is batch x n x width, not n^2 x width)."""
    from invfem.nn.hessian import network_terms, supports_fast_hessian

    theta = theta.detach()
    if supports_fast_hessian(kappa):
        mlp = replace(kappa, positivity=None, shift=0.0) if raw else kappa
        return network_terms(mlp, theta, inputs).jac
    function = _link(kappa)[0] if raw else kappa
    return torch.func.jacrev(lambda t: function(t, inputs), chunk_size=JACREV_CHUNK)(theta)


def _link(kappa):
    """``(raw, output, slope)`` with ``kappa(theta, x) == output(raw(theta, x))`` and ``slope`` the
    derivative of ``output``: an MLP's output before its positivity transform, the transform and
    its derivative; the identity for any other law."""
    if hasattr(kappa, "raw") and hasattr(kappa, "output"):
        return kappa.raw, kappa.output, lambda z: kappa.phi.derivatives(z)[0]
    return kappa, lambda z: z, torch.ones_like


def _interval(output, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image of ``[low, high]`` under ``output``: its ends for a monotone map; for one that
    is not (``square``), the minimum over an interval holding its turning point is taken there."""
    a, b = output(low), output(high)
    lower, upper = torch.minimum(a, b), torch.maximum(a, b)
    turning = output(torch.zeros_like(low))
    straddles = (low < 0) & (high > 0)
    return torch.where(straddles, torch.minimum(lower, turning), lower), upper
