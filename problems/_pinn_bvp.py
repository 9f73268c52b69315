"""The PINN boundary value problems of reference 002 §4, built once for 1-D and 2-D."""

from __future__ import annotations

import torch
from torch.func import hessian, vmap

from invfem.derivatives import value_and_grad
from invfem.errors import ConfigError
from invfem.expressions import compile_expression
from invfem.pinn import BoxDistance, EllipticResidual, PinnField, PinnLoss, face_points
from invfem.problem import Problem

from ._pinn import relative_error


def exact_solution(formula, variables):
    """``points (n, d) -> (n,)`` from a formula in ``variables``."""
    fn = compile_expression(formula, tuple(variables))
    return lambda points: fn(**{v: points[:, i] for i, v in enumerate(variables)}) + 0 * points[:, 0]


def bvp_problem(name, seed, mlp, lower, upper, solution, variables, points, test, kappa, c, device=None) -> Problem:
    """``-kappa lap u + c u = f`` on the box, ``u = 0`` on its boundary by the distance construction,
    ``f`` from the exact ``solution``; the strong-form loss at ``points``."""
    u_star = exact_solution(solution, variables)
    dims = tuple(range(len(variables)))
    edge, _ = face_points(64 * len(dims), lower, upper, [(i, s) for i in dims for s in (0, 1)], seed=0)
    worst = float(u_star(edge).abs().max())
    if worst > 1e-8:
        raise ConfigError(f"solution {solution!r} must vanish on the boundary (the distance construction imposes "
                          f"u = 0 there); it reaches {worst:.3g}")
    second = vmap(hessian(lambda p: u_star(p[None])[0]))

    def forcing(p):
        return -kappa * torch.diagonal(second(p), dim1=1, dim2=2).sum(1) + c * u_star(p)

    points, test = points.to(device), test.to(device)
    field = PinnField(mlp, BoxDistance(lower, upper))
    term = EllipticResidual(points, kappa=kappa, c=c, f=forcing, dims=dims)
    loss = PinnLoss(field, {"pde": term})
    f_values = term.forcing
    exact_test = u_star(test)
    n_outer = mlp.widths[-2]

    def test_error(theta):
        with torch.no_grad():
            return relative_error(field(theta, test), exact_test)

    def orthogonality(theta):
        """``|<f^, L[psi_k]^>|`` per basis function (unit discrete L2 norms over the points)."""
        with torch.no_grad():
            images = term.operator_on(field.basis(theta, points, dims, dims))            # (n, w)
            f_hat = f_values / f_values.norm()
            norms = images.norm(dim=0).clamp_min(1e-300)
            return (f_hat @ images / norms).abs()

    def gradient_split(theta):
        """``(|g_inner|, |g_outer|)``: the gradient's norm in the hidden layers and in the output weights."""
        g = value_and_grad(loss, theta)[1]
        return float(g[:-n_outer].norm()), float(g[-n_outer:].norm())

    return Problem(name=name, theta0=mlp.init(seed, device=device), loss=loss, residual=loss.residual, structure=loss,
                   kappa=lambda theta, p: field(theta, p), kappa_true=u_star,
                   info={"points": points, "test_points": test, "test_error": test_error, "mlp": mlp, "field": field,
                         "forcing": f_values, "exact": u_star, "orthogonality": orthogonality,
                         "gradient_split": gradient_split, "n_points": points.shape[0], "kappa_input": "x",
                         "traces": {"test_error": test_error, "orthogonality": orthogonality,
                                    "gradient_split": gradient_split},
                         "solution": solution})
