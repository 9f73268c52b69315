"""Data misfits with their Hessians in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad, jvp, vmap


def apply_hessian(misfit, state: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``Hess misfit (state)`` on a batch of directions ``state.shape + (k,)`` (same shape back):
    the misfit's closed form (``hessian_apply``) where it has one, else batched HVPs."""
    if hasattr(misfit, "hessian_apply"):
        return misfit.hessian_apply(state, directions)
    return vmap(lambda d: jvp(grad(misfit), (state,), (d,))[1], in_dims=-1, out_dims=-1)(directions)



def add_hessian_on_free_rows(misfit, space, out: torch.Tensor, state: torch.Tensor, directions: torch.Tensor,
                             alpha: float = 1.0) -> None:
    """``out += alpha Hess misfit (state) D`` for a nodal state whose directions ``D`` (and ``out``)
    live on the free dofs of ``space`` (rows in ``space.free_index`` order; Dirichlet entries 0)."""
    if hasattr(misfit, "add_hessian_product"):
        misfit.add_hessian_product(out, directions, space.free_rows, alpha=alpha)
        return
    out.add_(apply_hessian(misfit, state, space.expand(directions))[space.free_index], alpha=alpha)


@dataclass(eq=False)
class QuadraticMisfit:
    """``m(u) = sum_i w_i (u_flat[index_i] - data_i)^2``: observations of entries of a state.

    ``u`` may have any shape (a nodal vector, or a trajectory ``(n_steps + 1, n_dofs)``);
    ``index`` are positions in its flattened form. ``weight`` is a number or one per
    observation (``1 / (2 sigma^2)`` gives the usual ``(1/2) sum ((u - d) / sigma)^2``).
    :meth:`hessian_apply` is ``Hess m`` on a batch of directions without autograd.
    """

    index: torch.Tensor
    data: torch.Tensor
    weight: torch.Tensor | float = 1.0

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return (self.weight * (u.reshape(-1)[self.index] - self.data) ** 2).sum()

    def add_hessian_product(self, out: torch.Tensor, directions: torch.Tensor, rows: torch.Tensor,
                            alpha: float = 1.0) -> torch.Tensor:
        """``out += alpha (Hess m) directions`` where the state lives on a subset of rows:
        ``rows[i]`` is the row of ``out`` / ``directions`` holding flat state entry ``i``
        (``>= len(out)``: not represented, e.g. a Dirichlet dof, whose direction is zero)."""
        r = rows[self.index]
        keep = r < out.shape[0]
        r = r[keep]
        weight = self.weight if not torch.is_tensor(self.weight) else self.weight[keep][:, None]
        return out.index_add_(0, r, directions[r] * (2.0 * alpha * weight))

    def hessian_apply(self, u: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """``Hess m`` applied to ``directions`` of shape ``u.shape + (k,)`` (same shape back)."""
        flat = directions.reshape(u.numel(), -1)
        out = torch.zeros_like(flat)
        weight = self.weight if not torch.is_tensor(self.weight) else self.weight[:, None]
        out[self.index] = 2 * weight * flat[self.index]
        return out.view(directions.shape)
