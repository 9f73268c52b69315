"""How far a learned law is from the true one, and the network-only loss of reference 000."""

from __future__ import annotations

import torch


def kappa_error(problem, theta: torch.Tensor) -> float | None:
    """Relative L2 error ``||kappa_theta - kappa_true|| / ||kappa_true||`` (None when the true law is unknown).

    kappa(x): the L2 norm over the domain (the space's quadrature); kappa(u): the discrete
    norm over 201 values spanning the range of u_theta (where the data say something about kappa).
    """
    if problem.kappa_true is None or not has_law_points(problem):
        return None
    s, weights = law_points(problem, theta)
    with torch.no_grad():
        learned, true = problem.kappa(theta, s), problem.kappa_true(s)
    return float(torch.sqrt((weights * (learned - true) ** 2).sum() / (weights * true**2).sum()))


def has_law_points(problem) -> bool:
    """Whether :func:`law_points` knows where to compare ``problem``'s law."""
    return "law_points" in problem.info or "space" in problem.info


def law_points(problem, theta: torch.Tensor):
    """Where laws are compared, with weights: ``problem.info["law_points"]`` when the problem
    names them (e.g. a regression's test grid); else the quadrature points (and their weights)
    for kappa(x), and 201 values spanning the range of u_theta (or the observed u) for kappa(u)."""
    if "law_points" in problem.info:
        return problem.info["law_points"]
    space = problem.info["space"]
    if problem.info.get("kappa_input", "x") == "u":
        u = problem.state_values(theta)
        s = torch.linspace(float(u.min()), float(u.max()), 201, dtype=torch.float64, device=theta.device)[:, None]
        return s, torch.ones(s.shape[0], dtype=torch.float64, device=theta.device)
    return space.quadrature_points, space.dx.reshape(-1)


def network_loss(problem, theta: torch.Tensor):
    """Reference 000's network-only loss l(theta') = sum_q (kappa_theta'(x_q) - kappa_true(x_q))^2 over
    the points of :func:`law_points` (fixed at ``theta``), as a structured loss (exact Hessian in
    closed form); None when the true law is unknown or the law is not an invfem MLP with one
    output (e.g. a network behind fixed input features)."""
    from invfem.nn.hessian import supports_fast_hessian
    from invfem.structured import CoefficientLoss

    if problem.kappa_true is None or not has_law_points(problem) or not supports_fast_hessian(problem.kappa):
        return None
    s, _ = law_points(problem, theta)
    target = problem.kappa_true(s).detach()
    return CoefficientLoss(problem.kappa, s, lambda kappa: ((kappa - target) ** 2).sum())
