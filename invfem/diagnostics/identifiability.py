"""Identifiability from the exact Hessian: which changes of kappa the data determine.

At the result theta*, the misfit's exact Hessian ``H = Hess L - 2 alpha I`` measures how the
data respond to a change of theta. A change ``d kappa`` of the law at the evaluation points
(the dofs for kappa(x), the nodal values of u for kappa(u)) is reached by the network through
its Jacobian ``J = d kappa / d theta``: ``d kappa = J v``. Per unit of ``|d kappa|^2`` the data
see it with the curvature

    s(d kappa) = v^T H v / |d kappa|^2,   v = J^+ d kappa  (the smallest such v),

i.e. the Rayleigh quotient of ``M = J^+T H J^+`` on the range of ``J``. ``s`` near zero
against the largest, ``s_max = lambda_max(M)``, means the data do not determine
that change (``s / s_max`` below :data:`CHANGE_TOL`; ``M`` is formed on the directions the
network makes well, singular values of ``J`` above :data:`RCOND` times the largest): reported
for the two changes that defeat a conductivity law most often,

- ``scale``: kappa -> c kappa (``d kappa = kappa``): data that do not involve a flux with a
  known source (Dirichlet data only, no source) see only ratios of kappa;
- ``shift``: kappa -> kappa + c (``d kappa = 1``);
- ``uninformed`` (with a prior, alpha > 0): the points where the data leave kappa to the prior,
  its linearized posterior variance there above :data:`UNINFORMED` of the prior's (a region
  without sensitivity: no data nearby, no flux through it), and where they lie;

with how much of each change the network can make at all (``representable``: the fraction of
``|d kappa|`` in the range of ``J``), and the data-informed directions of theta (eigenvalues
of ``H`` above ``eps lambda_max``) and of kappa (those of ``M`` above ``eps s_max``).
"""

from __future__ import annotations

import torch

from invfem.diagnostics.laplace import _default_points, law_jacobian, linearized_variance, misfit_hessian

#: singular values of J below RCOND times the largest are directions the network barely makes: left out of M
RCOND = 1e-3

#: a change whose curvature is below this fraction of the largest is not determined by the data (measured: an
#: exact invariance, kappa -> c kappa with Dirichlet data only, gives ~5e-7 through the truncation at RCOND; the
#: same change with a source ~0.7)
CHANGE_TOL = 1e-4

#: the changes of kappa checked by name: d kappa as a function of kappa_theta* at the points
CHANGES = {"scale": ("kappa -> c kappa", lambda kappa: kappa),
           "shift": ("kappa -> kappa + c", lambda kappa: torch.ones_like(kappa))}


#: a point where the posterior variance of kappa is above this fraction of its prior variance is uninformed
UNINFORMED = 0.5

#: warn when at least this fraction of the points is uninformed
REGION_FRACTION = 0.05

#: default points beyond this many are thinned to it (evenly through the list): the SVD of the (points, P)
#: law Jacobian costs points^2 P (10^4 dofs and parameters: minutes; 2000 points: seconds)
MAX_POINTS = 2000


def uninformed_region(jacobian: torch.Tensor, vectors: torch.Tensor, lam: torch.Tensor, alpha: float,
                      points: torch.Tensor) -> dict:
    """Per point, the ratio of kappa's linearized posterior variance to its prior variance,
    ``|J_i|^2 / (2 alpha) - sum_k (J v_k)_i^2 (1 / (2 alpha) - 1 / (lambda_k+ + 2 alpha))`` over
    ``|J_i|^2 / (2 alpha)`` (``v_k, lambda_k``: eigenpairs of the misfit Hessian, all of them or its
    dominant ones; ``J = d kappa / d theta`` at the points; 1: the data say nothing there, 0: they
    fix kappa), and the points above :data:`UNINFORMED`: their fraction, count, and where they are
    (a box in x, y for kappa(x); the range of u for kappa(u))."""
    prior = (jacobian * jacobian).sum(1) / (2 * alpha)
    post = linearized_variance(jacobian, vectors, lam, alpha, complete=vectors.shape[1] == jacobian.shape[1])
    ratio = torch.where(prior > 0, post / prior.clamp(min=1e-300), torch.ones_like(prior))
    bad = ratio > UNINFORMED
    out = {"threshold": UNINFORMED, "variance_ratio_max": float(ratio.max()),
           "variance_ratio_median": float(ratio.median()), "n_points": int(bad.sum()),
           "fraction": float(bad.to(torch.float64).mean()), "where": "nowhere"}
    if bool(bad.any()):
        chosen = points[bad]
        if chosen.ndim == 1 or chosen.shape[-1] == 1:
            values = chosen.reshape(-1)
            out["where"] = f"u in [{float(values.min()):.3g}, {float(values.max()):.3g}]"
        else:
            low, high = chosen.min(0).values, chosen.max(0).values
            out["where"] = (f"x in [{float(low[0]):.3g}, {float(high[0]):.3g}], "
                            f"y in [{float(low[1]):.3g}, {float(high[1]):.3g}]")
    return out


def identifiability(problem, theta: torch.Tensor, hessian: torch.Tensor | None = None, points=None,
                    eps: float = 1e-6, low_rank=None) -> dict:
    """What the data at ``theta`` determine of kappa (see the module docstring).

    Returns ``n_params``, ``n_informed`` (theta directions the data inform), ``kappa_informed``
    (kappa directions at the points), per change in :data:`CHANGES` its ``curvature_ratio``
    ``s / s_max``, ``representable`` and ``determined``; ``warnings`` (one line per change the
    data do not determine) and ``summary`` (a sentence). ``low_rank``: the dominant eigenpairs of
    the misfit's Hessian (:func:`invfem.diagnostics.low_rank.low_rank_hessian` with ``misfit=True``)
    instead of the dense Hessian (no P x P matrix: the counts are then among those pairs, ``rank`` says how many).
    ``points``: where kappa is compared (default: one per dof, thinned to :data:`MAX_POINTS`)."""
    theta = theta.detach()
    n = theta.numel()
    if low_rank is None:
        lam, vectors = torch.linalg.eigh(misfit_hessian(problem, theta, hessian))
    else:
        lam, vectors = low_rank.eigenvalues, low_rank.vectors
    lam_max = float(lam.abs().max())
    n_informed = int((lam > eps * lam_max).sum())
    if points is None:
        points = _default_points(problem, theta)
        if points.shape[0] > MAX_POINTS:
            points = points[torch.linspace(0, points.shape[0] - 1, MAX_POINTS, device=points.device).round().long()]
    else:
        points = torch.as_tensor(points, dtype=torch.float64, device=theta.device)
    inputs = points[:, None] if points.ndim == 1 else points
    with torch.no_grad():
        kappa = problem.kappa(theta, inputs)
    jacobian = law_jacobian(problem.kappa, theta, inputs)                              # (m, P)
    u, s, vh = torch.linalg.svd(jacobian, full_matrices=False)
    keep = s > RCOND * s.max()
    u, s, vh = u[:, keep], s[keep], vh[keep]
    projected = vh @ vectors
    reduced = (projected * lam) @ projected.T / s[:, None] / s[None, :]               # M on range(J), U coordinates
    reduced = 0.5 * (reduced + reduced.T)
    mu = torch.linalg.eigvalsh(reduced)
    s_max = float(mu.abs().max()) if mu.numel() else 0.0
    out = {"n_params": n, "n_informed": n_informed, "eps": eps, "n_points": int(kappa.numel()),
           **({"rank": int(lam.numel())} if low_rank is not None else {}),
           "kappa_rank": int(keep.sum()), "kappa_informed": int((mu > eps * s_max).sum()), "changes": {}}
    warnings = []
    for name, (words, change) in CHANGES.items():
        d = change(kappa)
        c = u.T @ d
        representable = float(c.norm() / d.norm())
        ratio = float(c @ reduced @ c / (c @ c)) / s_max if s_max > 0 and float(c @ c) > 0 else 0.0
        determined = ratio > CHANGE_TOL
        out["changes"][name] = {"change": words, "curvature_ratio": ratio, "representable": representable,
                                "determined": determined}
        if not determined and representable > 0.5:
            warnings.append(f"the data do not determine {words} (curvature {ratio:.1e} of the largest, below "
                            f"{CHANGE_TOL:g}): the learned law is fixed there by the start point and the prior only")
    alpha = problem.regularization
    if alpha > 0:                     # where the data leave kappa to the prior: a region without sensitivity
        region = uninformed_region(jacobian, vectors, lam, alpha, points)
        out["uninformed"] = region
        if region["fraction"] >= REGION_FRACTION:
            warnings.append(f"the data do not inform kappa at {region['fraction']:.0%} of the points "
                            f"({region['where']}): the posterior variance there is over {UNINFORMED:.0%} of the "
                            "prior's; kappa there is the prior's and the start point's")
    out["warnings"] = warnings
    out["summary"] = (f"{n_informed} of {n} parameter directions and {out['kappa_informed']} of {out['kappa_rank']} "
                      f"directions of kappa the network can change are informed by the data" +
                      ("; " + "; ".join(warnings) if warnings else "; scaling and shifts of kappa are determined" +
                       (" and the data inform kappa at every point" if "uninformed" in out else "")))
    return out
