"""Observation operators and data misfits, with their Hessians in closed form.

Observations are a linear operator: ``d ~ B u`` with ``B`` sparse and constant in every
derivative — point values of a FE field (:func:`invfem.fem.observations.point_observation`,
from scikit-fem's ``Basis.probes``), a selection of entries (nodal full fields, observed
time steps of a trajectory), or any combination on the flattened state. The misfit is

    m(u) = sum_i w_i ((B u)_i - d_i)^2,      w_i = 1 / (2 sigma_i^2) for ``sigma``,

so ``Hess m = 2 B^T W B`` needs no autograd.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import grad, jvp, vmap

from invfem.errors import ShapeError
from invfem.linalg.pattern import csr_structure, csr_tensor


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
class LinearObservation:
    """``u -> B u`` with ``B`` sparse: entry ``k`` adds ``vals[k] * u_flat[cols[k]]`` to observation ``rows[k]``.

    ``u`` may have any shape (a nodal vector, a trajectory ``(n_steps + 1, n_dofs)``); ``cols``
    index its flattened form. Differentiable and ``torch.func``-safe (a gather and an
    ``index_add``).
    """

    rows: torch.Tensor
    cols: torch.Tensor
    vals: torch.Tensor
    n: int

    @classmethod
    def entries(cls, index: torch.Tensor) -> "LinearObservation":
        """Observation ``i`` is entry ``index[i]`` of the flattened state."""
        index = torch.as_tensor(index).reshape(-1)
        return cls(torch.arange(index.numel(), device=index.device), index,
                   torch.ones(index.numel(), dtype=torch.float64, device=index.device), index.numel())

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return u.new_zeros(self.n).index_add(0, self.rows, self.vals * u.reshape(-1)[self.cols])

    def shifted(self, offset: int) -> "LinearObservation":
        """The same observation of entries ``offset`` further on (e.g. time step k of a trajectory)."""
        return LinearObservation(self.rows, self.cols + offset, self.vals, self.n)

    @staticmethod
    def stack(parts: list["LinearObservation"]) -> "LinearObservation":
        """All observations of ``parts``, one after the other."""
        starts = torch.cumsum(torch.tensor([0] + [p.n for p in parts[:-1]]), 0).tolist()
        return LinearObservation(torch.cat([p.rows + s for p, s in zip(parts, starts)]),
                                 torch.cat([p.cols for p in parts]), torch.cat([p.vals for p in parts]),
                                 sum(p.n for p in parts))


@dataclass(eq=False)
class ObservationMisfit:
    """``m(u) = sum_i w_i ((B u)_i - d_i)^2`` (module docstring); ``weight`` a number or one per
    observation — :meth:`gaussian` sets it from standard deviations."""

    observation: LinearObservation
    data: torch.Tensor
    weight: torch.Tensor | float = 1.0

    def __post_init__(self):
        if self.data.shape != (self.observation.n,):
            raise ShapeError(f"data must have one value per observation ({self.observation.n}), "
                             f"got shape {tuple(self.data.shape)}")

    @classmethod
    def gaussian(cls, observation: LinearObservation, data: torch.Tensor, sigma) -> "ObservationMisfit":
        """``(1/2) sum ((B u - d) / sigma)^2``: the negative log-likelihood of Gaussian noise (up to a constant)."""
        sigma = torch.as_tensor(np.asarray(sigma, dtype=np.float64), device=data.device).expand(data.shape)
        return cls(observation, data, 0.5 / sigma**2)

    @property
    def index(self) -> torch.Tensor:
        """The observed flat entries (for entry observations)."""
        return self.observation.cols

    def residual(self, u: torch.Tensor) -> torch.Tensor:
        """``B u - d``."""
        return self.observation(u) - self.data

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return (self.weight * self.residual(u) ** 2).sum()

    def weighted_residual(self, u: torch.Tensor) -> torch.Tensor:
        """``w^1/2 (B u - d)``: the misfit is its squared norm (``(B u - d) / (sqrt(2) sigma)`` for :meth:`gaussian`)."""
        return torch.sqrt(torch.as_tensor(self.weight, dtype=torch.float64, device=self.data.device)) * self.residual(u)

    def residual_jacobian(self, sens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``w^1/2 B S`` ``(n_obs, P)`` for a state sensitivity ``S`` stored on a subset of rows
        (``rows[i]``: the row of ``sens`` holding flat state entry ``i``; ``>= len(sens)``: none, a
        Dirichlet dof or data, whose sensitivity is zero), as :meth:`add_hessian_product`.
        ``w^1/2 B`` on those rows is one sparse CSR matrix (built once per ``rows``): one
        sparse-times-dense product, not a gather, a scaling and an ``index_add`` of ``(n_obs, P)``."""
        weight = self.weight
        key = (rows.data_ptr(), rows.numel(), sens.shape[0],
               weight.data_ptr() if isinstance(weight, torch.Tensor) else float(weight))
        cached = self.__dict__.get("_weighted_b")
        if cached is None or cached[0] != key:
            obs = self.observation
            r, o, v = self._kept(rows, sens.shape[0])
            v = v * torch.sqrt(torch.as_tensor(weight, dtype=sens.dtype, device=sens.device).expand(obs.n)[o])
            crow, col, order = csr_structure(o, r, obs.n, sens.shape[0])
            matrix = csr_tensor(crow, col, v[order].to(sens.dtype), (obs.n, sens.shape[0]))
            self.__dict__["_weighted_b"] = cached = (key, matrix)
        return cached[1] @ sens

    def _observe(self, directions: torch.Tensor, rows: torch.Tensor):
        """``(B D, r, o, v)``: the observations of directions ``D`` stored on a subset of rows (as
        :meth:`add_hessian_product`), and the kept entries of B (state row, observation, value)."""
        r, o, v = self._kept(rows, directions.shape[0])
        v = v[:, None]
        return directions.new_zeros(self.observation.n, directions.shape[1]).index_add_(0, o, v * directions[r]), r, o, v

    def _kept(self, rows: torch.Tensor, n_rows: int):
        """The entries of B on a subset of rows: (row, observation, value) of those whose state
        entry has a row ``< n_rows`` (the others, Dirichlet dofs or data, have no sensitivity)."""
        obs = self.observation
        r = rows[obs.cols]
        keep = r < n_rows
        return r[keep], obs.rows[keep], obs.vals[keep]

    def _row_weight(self, like: torch.Tensor) -> torch.Tensor:
        """The weight as a tensor that broadcasts over rows ``(n_obs, k)``."""
        weight = torch.as_tensor(self.weight, dtype=like.dtype, device=like.device)
        return weight[:, None] if weight.ndim else weight

    def add_hessian_product(self, out: torch.Tensor, directions: torch.Tensor, rows: torch.Tensor,
                            alpha: float = 1.0) -> torch.Tensor:
        """``out += alpha (Hess m) directions`` where the state lives on a subset of rows:
        ``rows[i]`` is the row of ``out`` / ``directions`` holding flat state entry ``i``
        (``>= len(out)``: not represented, e.g. a Dirichlet dof, whose direction is zero)."""
        bd, r, o, v = self._observe(directions, rows)                                                 # B D
        bd.mul_(2.0 * alpha * self._row_weight(bd))
        return out.index_add_(0, r, v * bd[o])                                                        # B^T (2 W B D)

    def hessian_apply(self, u: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """``Hess m`` applied to ``directions`` of shape ``u.shape + (k,)`` (same shape back)."""
        flat = directions.reshape(u.numel(), -1)
        out = torch.zeros_like(flat)
        every = torch.arange(u.numel(), device=flat.device)
        return self.add_hessian_product(out, flat, every).view(directions.shape)


def QuadraticMisfit(index, data: torch.Tensor, weight=1.0) -> ObservationMisfit:  # noqa: N802 (a constructor)
    """``sum_i w_i (u_flat[index_i] - data_i)^2``: observed entries of a state (nodal full fields,
    observed time steps of a trajectory)."""
    return ObservationMisfit(LinearObservation.entries(index), data, weight)
