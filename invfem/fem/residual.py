"""Least-squares residuals that are affine in the coefficient: residual-minimisation training.

    outer(kappa) = sum_k || [A(kappa) v_k]_rows - b_k ||^2

with fixed nodal vectors ``v_k`` (observed states) and targets ``b_k``: the weak form of
``-div(kappa grad u) = f`` at an observed ``u`` (one ``k``), or the time-stepping residual
of observed snapshots (one ``k`` per step; :meth:`invfem.fem.heat.HeatStepper.residual_loss`).
No solve: ``Hess outer = 2 R^T R`` with ``R = d r / d kappa`` constant, so

    J^T (Hess outer) J = 2 sum_k (C(v_k) J)_rows^T (C(v_k) J)_rows,

with ``C(v)[:, q] = (dA/dkappa_q) v`` applied element by element — dense products with the
residual rows as inner dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invfem.errors import ShapeError
from invfem.fem.operators import BilinearMap
from invfem.structured import Linearization


@dataclass(eq=False)
class LinearResidualLoss:
    """``kappa -> sum_k || [A(kappa) v_k]_rows - targets_k ||^2`` (module docstring).

    ``vectors``: ``(K, n_dofs)`` (or one ``(n_dofs,)``); ``targets``: ``(K, len(rows))``;
    ``rows``: the residual rows (the free dofs, say).
    """

    operator: BilinearMap
    vectors: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor

    def __post_init__(self):
        self.vectors = self.vectors.reshape(-1, self.vectors.shape[-1])
        self.targets = self.targets.reshape(self.vectors.shape[0], -1)
        if self.targets.shape[1] != self.rows.numel():
            raise ShapeError(f"targets must have one row of {self.rows.numel()} values per vector, "
                             f"got {tuple(self.targets.shape)}")
        self._coef = None

    def residuals(self, kappa: torch.Tensor) -> torch.Tensor:
        """``(K, len(rows))`` residuals (differentiable in kappa)."""
        values = self.operator.values(kappa)
        pattern = self.operator.pattern
        products = pattern.matvec(values, self.vectors.T).T              # (K, n_dofs): A v_k
        return products[:, self.rows] - self.targets

    def __call__(self, kappa: torch.Tensor) -> torch.Tensor:
        return (self.residuals(kappa) ** 2).sum()

    has_residual = True

    def residual_vector(self, kappa: torch.Tensor) -> torch.Tensor:
        """All residuals, flat ``(K len(rows),)``: the loss is their squared norm."""
        return self.residuals(kappa).reshape(-1)

    def residual_jacobian(self, kappa: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        """``(C(v_k) J)_rows`` stacked over k: the residual is affine in kappa (no solve)."""
        return self.jacobian_coupling(kappa)[0] @ jac

    def jacobian_coupling(self, kappa: torch.Tensor):
        """``(R, None)``: ``R = d residual / d kappa``, the stacked ``C(v_k)`` on the rows as one
        sparse CSR matrix — constant (the vectors are fixed), built once; None: no map after it
        (the residual Jacobian is ``R J``)."""
        if "_coupling_matrix" not in self.__dict__:
            space = self.operator.space
            self.__dict__["_coupling_matrix"] = space.coupling_matrix(self.coupling(), self._row_map(space),
                                                                      self.rows.numel())
        return self.__dict__["_coupling_matrix"], None

    def _row_map(self, space) -> torch.Tensor:
        if "_rows_of_dofs" not in self.__dict__:
            row_map = torch.full((space.n_dofs,), self.rows.numel(), dtype=torch.int64, device=self.rows.device)
            row_map[self.rows] = torch.arange(self.rows.numel(), device=self.rows.device)
            self.__dict__["_rows_of_dofs"] = row_map
        return self.__dict__["_rows_of_dofs"]

    def coupling(self) -> torch.Tensor:
        """``C(v_k)`` of every vector, element form ``(n_elements, K * n_loc, n_qp)`` (built once)."""
        if self._coef is None:
            self._coef = self.operator.coupling(self.vectors)
        return self._coef

    def linearize(self, kappa: torch.Tensor) -> Linearization:
        """Gradient ``2 sum_k C(v_k)^T r_k`` and ``J -> 2 sum_k (C(v_k) J)^T (C(v_k) J)``."""
        space = self.operator.space
        with torch.no_grad():
            r = self.residuals(kappa)
        full = r.new_zeros(r.shape[0], space.n_dofs)
        full[:, self.rows] = r
        coef = self.coupling()
        n_loc, n_vec = space.element_dofs.shape[0], r.shape[0]
        local_r = full[:, space.element_dofs]                                  # (K, n_loc, E)
        gradient = 2 * torch.einsum("kae,ekaq->eq", local_r, coef.view(coef.shape[0], n_vec, n_loc, -1)).reshape(-1)
        acc: dict[str, torch.Tensor] = {}
        n_rows = self.rows.numel()
        row_map = self._row_map(space)          # residual rows first, every other dof onto a dump row

        def on_chunk(sl, jac_rows, _mixed):
            if not acc:
                acc["products"] = jac_rows.new_zeros(n_vec, n_rows + 1, jac_rows.shape[1])
            space.scatter_points(coef, jac_rows, out=acc["products"], dof_rows=row_map,
                                 elements=slice(sl.start // space.n_qp, sl.stop // space.n_qp))

        def curvature(_jac) -> torch.Tensor:
            products = acc.pop("products")
            products[:, n_rows] = 0.0
            rj = products.view(-1, products.shape[-1])                 # (C(v_k) J) on the rows, stacked
            return 2 * (rj.T @ rj)

        return Linearization(gradient=gradient, curvature=curvature, on_chunk=on_chunk, chunk_multiple=space.n_qp)
