"""Reference 002's view of a regression network: the output is a linear combination of basis functions.

With no output bias, ``f_theta(x) = sum_k c_k phi_k(x; theta_inner)``: the last hidden
layer's activations ``phi_k`` are the basis, the output weights ``c`` its coefficients. A
*trivial* stationary point fits zero (``f = 0``) on a basis orthogonal to the target: the
error ``-y`` is then orthogonal to every tangent, yet the loss is as large as it can be
at f = 0, and the Hessian has negative eigenvalues — a saddle. These functions measure that:

- :func:`basis_functions`: ``phi_k`` on points, ``(K, n)``;
- :func:`orthogonality`: ``|<phi_k_hat, y_hat>|`` per basis function, each normalised to unit
  (discrete) L2 norm — 0: orthogonal to the target;
- :func:`gradient_split`: ``||dL/d theta_inner||`` and ``||dL/d c||``;
- :func:`output_coefficients`: ``c`` (the output layer's weights);
- :func:`trivial_verdict`: stationary, output ~ 0 relative to the target, lambda_min < 0.
"""

from __future__ import annotations

import torch

from invfem.derivatives import value_and_grad
from invfem.diagnostics.network import hidden_activations
from invfem.nn import MLP


def basis_functions(mlp: MLP, theta: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's activations at ``points``: ``(K, n)``, one row per basis function."""
    if len(mlp.widths) < 3:
        raise ValueError("a network without hidden layers has no learned basis")
    return hidden_activations(mlp, theta, points)[-1].T


def orthogonality(basis: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``|<phi_k, y>| / (||phi_k|| ||y||)`` for each row ``phi_k`` of ``basis`` (``(K, n)``) with the
    discrete inner product ``sum_i w_i a_i b_i`` (``weights`` default 1); a basis function
    that is identically zero counts as orthogonal (0)."""
    w = torch.ones_like(target) if weights is None else weights
    inner = basis @ (w * target)
    norms = torch.sqrt((basis * basis) @ w) * torch.sqrt((w * target * target).sum())
    return torch.where(norms > 0, inner.abs() / torch.where(norms > 0, norms, torch.ones_like(norms)),
                       torch.zeros_like(norms))


def _outer_slice(mlp: MLP) -> slice:
    """Where the output layer (weights, and its bias if any) sits in the flat theta: the end."""
    size = mlp.widths[-2] * mlp.widths[-1] + (mlp.widths[-1] if mlp.output_bias else 0)
    return slice(mlp.n_params - size, mlp.n_params)


def output_coefficients(mlp: MLP, theta: torch.Tensor) -> torch.Tensor:
    """The output layer's weights ``c`` (``(widths[-1], K)``): the coefficients of the basis."""
    return mlp.layers(theta)[-1][0].detach()


def gradient_split(loss, mlp: MLP, theta: torch.Tensor) -> dict:
    """``{"inner": ||dL/d theta_inner||, "outer": ||dL/d theta_outer||}`` (outer: the output layer)."""
    g = value_and_grad(loss, theta)[1]
    outer = _outer_slice(mlp)
    inner_part = g[: outer.start]
    return {"inner": float(torch.linalg.norm(inner_part)), "outer": float(torch.linalg.norm(g[outer]))}


def trivial_verdict(loss, mlp, theta: torch.Tensor, points: torch.Tensor, target: torch.Tensor,
                    hessian: torch.Tensor, gtol: float = 1e-6, output_tol: float = 1e-3, eps: float = 1e-6) -> dict:
    """Whether ``theta`` is reference 002's trivial solution (``mlp``: the network, or any
    ``(theta, points) -> output`` callable): ``stationary`` (||g|| <= gtol),
    the output ~ 0 (``||f|| / ||y|| <= output_tol`` on ``points``) and ``saddle`` (lambda_min
    < -eps lambda_max of ``hessian``). Returns those, the numbers behind them and ``trivial``
    (all three)."""
    _, g = value_and_grad(loss, theta)
    with torch.no_grad():
        output = mlp(theta, points)
    ratio = float(torch.linalg.norm(output) / torch.linalg.norm(target))
    lam = torch.linalg.eigvalsh(hessian)
    lam_min, lam_max = float(lam[0]), float(lam[-1])
    gnorm = float(torch.linalg.norm(g))
    out = {"gnorm": gnorm, "stationary": gnorm <= gtol, "output_ratio": ratio, "output_zero": ratio <= output_tol,
           "lambda_min": lam_min, "lambda_max": lam_max, "saddle": lam_min < -eps * abs(lam_max)}
    out["trivial"] = out["stationary"] and out["output_zero"] and out["saddle"]
    return out
