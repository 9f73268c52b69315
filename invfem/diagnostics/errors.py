"""How far a learned law is from the true one."""

from __future__ import annotations

import torch


def kappa_error(problem, theta: torch.Tensor) -> float | None:
    """Relative L2 error ``||kappa_theta - kappa_true|| / ||kappa_true||`` (None when the true law is unknown).

    kappa(x): the L2 norm over the domain (the space's quadrature); kappa(u): the discrete
    norm over 201 values spanning the range of u_theta (where the data say something about kappa).
    """
    if problem.kappa_true is None or "space" not in problem.info:
        return None
    space = problem.info["space"]
    with torch.no_grad():
        if problem.info.get("kappa_input", "x") == "u":
            fields = problem.fields(theta)
            u = fields.get("u_theta", fields.get("u_obs"))
            s = torch.linspace(float(u.min()), float(u.max()), 201, dtype=torch.float64, device=theta.device)[:, None]
            weights = torch.ones(s.shape[0], dtype=torch.float64, device=theta.device)
        else:
            s = space.quadrature_points
            weights = space.dx.reshape(-1)
        learned, true = problem.kappa(theta, s), problem.kappa_true(s)
    return float(torch.sqrt((weights * (learned - true) ** 2).sum() / (weights * true**2).sum()))
