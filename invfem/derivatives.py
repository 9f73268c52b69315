"""Gradients, Hessian-vector products, full Hessians and their verification.

All functions take a scalar loss ``f(theta) -> 0-d tensor`` built from torch ops and
invfem Functions and use ``torch.func``:

* gradient: reverse mode (``torch.autograd`` on plain tensors, ``grad_and_value`` inside
  another transform);
* Hessian-vector product: forward-over-reverse ``jvp(grad(f))`` (one extra forward
  tangent pass and one extra adjoint, on the cached factorization);
* full Hessian: ``vmap`` of that product over the unit vectors, so every sparse solve
  sees a block of right-hand sides and runs ONE multi-RHS solve per block.

:func:`taylor_test` is the verification we trust (as in pyadjoint / hIPPYlib): the Taylor
remainders of orders 0, 1, 2 along a direction must decay at rates 1, 2, 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
from torch.func import grad, grad_and_value, jvp, vmap

from invfem.errors import ShapeError

Loss = Callable[[torch.Tensor], torch.Tensor]


def value_and_grad(f: Loss, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(theta), grad f(theta))`` by reverse mode (detached).

    On plain tensors it runs ``torch.autograd`` directly; inside a ``torch.func`` transform
    (where ``theta`` is a wrapped tensor) it is ``torch.func.grad_and_value``, so it composes.
    """
    if retrieve_all_functorch_interpreters():
        g, value = grad_and_value(f)(theta)
        return value, g
    x = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        value = f(x)
        (g,) = torch.autograd.grad(value, x)
    return value.detach(), g


def hvp(f: Loss, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hessian-vector product ``H(theta) v``.

    On plain tensors it differentiates ``grad f . v`` once more with ``torch.autograd``
    (reverse-over-reverse): no ``torch.func`` wrappers on every operation, which for losses
    built of many small operations (the RK4 steps of a neural ODE) is several times faster.
    Inside a ``torch.func`` transform (the batched Hessian) it is forward-over-reverse,
    ``jvp(grad(f))``, so it composes. Both are exact.
    """
    if v.shape != theta.shape:
        raise ShapeError(f"direction shape {tuple(v.shape)} differs from theta shape {tuple(theta.shape)}")
    if v.dtype != theta.dtype:
        raise ShapeError(f"direction dtype {v.dtype} differs from theta dtype {theta.dtype}")
    forward_over_reverse = lambda: jvp(grad(f), (theta,), (v,))[1]
    if retrieve_all_functorch_interpreters() or v.requires_grad or theta.requires_grad:
        return forward_over_reverse()
    x = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        hv = torch.autograd.grad(g, x, grad_outputs=v, allow_unused=True)[0] if g.requires_grad else None
    if hv is None:
        # the gradient carries no graph: f is linear in theta, or a custom autograd Function's
        # backward is not itself differentiable (numpy inside). Only forward-over-reverse can
        # tell the two apart — it gives the zero Hessian, or raises for the Function without
        # a forward-mode rule — so never return zeros on a guess.
        try:
            return forward_over_reverse()
        except RuntimeError as exc:
            raise RuntimeError("hvp: the gradient of the loss is not differentiable by autograd (a custom "
                               "autograd Function whose backward leaves torch?) and forward mode failed too: "
                               f"{str(exc).splitlines()[0][:200]}") from exc
    return hv.detach()


def hessian(f: Loss, theta: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Dense Hessian ``(n, n)``: the columns ``H e_i`` from one batched HVP over the unit vectors.

    Under the batch every sparse solve sees a block of right-hand sides and runs one
    multi-RHS solve on the cached factorization. ``chunk_size`` caps how many columns are
    formed at once (memory); default all. The result is returned as computed, not
    symmetrised: :func:`symmetry_error` measures how close to symmetric it is.
    """
    if theta.ndim != 1:
        raise ShapeError(f"theta must be a flat vector, got shape {tuple(theta.shape)}")
    eye = torch.eye(theta.shape[0], dtype=theta.dtype, device=theta.device)
    return vmap(lambda v: hvp(f, theta, v), chunk_size=chunk_size)(eye)


def symmetry_error(h: torch.Tensor) -> float:
    """Relative asymmetry ``||H - H^T||_F / ||H||_F`` (0 for a zero matrix)."""
    norm = torch.linalg.norm(h)
    return 0.0 if norm == 0 else float(torch.linalg.norm(h - h.T) / norm)


@dataclass(frozen=True)
class TaylorResult:
    """Remainders ``r_k(h)`` for orders k = 0, 1, 2 and their observed rates.

    ``r0 = |f(x + h d) - f(x)|``, ``r1 = |r0-term - h g.d|``, ``r2 = |r1-term - h^2/2 d.H d|``;
    with exact derivatives they decay like ``h``, ``h^2``, ``h^3``.
    """

    steps: np.ndarray
    remainders: np.ndarray  # (3, n_steps)
    rates: np.ndarray  # (3, n_steps - 1)

    @property
    def min_rates(self) -> tuple[float, float, float]:
        """Smallest observed rate of each order."""
        return tuple(float(r) for r in self.rates.min(axis=1))

    def passed(self, tol: float = 0.05) -> bool:
        """Whether every rate reaches its ideal value (1, 2, 3) minus ``tol``."""
        return all(m >= k + 1 - tol for k, m in enumerate(self.min_rates))


def taylor_test(f: Loss, theta: torch.Tensor, direction: torch.Tensor, h0: float = 1e-2,
                n_steps: int = 5, factor: float = 0.5, hessp: Callable | None = None) -> TaylorResult:
    """Taylor test of ``f`` at ``theta`` along ``direction`` with steps ``h0 * factor**k``.

    The gradient and Hessian-vector product come from :func:`value_and_grad` and :func:`hvp`
    (``hessp(theta, v)`` instead, to verify another product: a problem's structured one,
    :attr:`invfem.structured.HessianPath.hessp`), so the test verifies exactly the derivatives
    the optimizers use. Pick ``h0`` so that
    the smallest third-order remainder stays well above round-off (``~1e-13 |f|``).
    """
    if direction.shape != theta.shape:
        raise ShapeError(f"direction shape {tuple(direction.shape)} differs from theta shape {tuple(theta.shape)}")
    f0, g = value_and_grad(f, theta)
    dg = float(g @ direction)
    dhd = float(direction @ (hvp(f, theta, direction) if hessp is None else hessp(theta, direction)))
    steps = h0 * factor ** np.arange(n_steps)
    rem = np.empty((3, n_steps))
    for i, h in enumerate(steps):
        diff = float(f(theta + h * direction) - f0)
        rem[:, i] = [abs(diff), abs(diff - h * dg), abs(diff - h * dg - 0.5 * h * h * dhd)]
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.log(rem[:, 1:] / rem[:, :-1]) / np.log(factor)
    return TaylorResult(steps=steps, remainders=rem, rates=rates)
