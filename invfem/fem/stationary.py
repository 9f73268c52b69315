"""A loss of the solution of a stationary linear PDE whose operator is linear in the coefficient.

    outer(kappa) = misfit(u),   A(kappa) u = F  (Dirichlet data condensed),

e.g. the FEM-coupled Poisson problem of reference 000. Calling :class:`LinearStateLoss`
evaluates it differentiably (through :func:`~invfem.linalg.sparse_solve`);
:meth:`LinearStateLoss.linearize` gives what the structured Hessian needs, in parameter
space (hIPPYlib's reduced Hessian with incremental forward solves):

* state ``u``, adjoint ``A^T lambda = dm/du``, gradient ``g_q = -lambda^T (dA/dkappa_q) u``;
* ``S = du/dtheta = -A^{-1} C(u) J`` by ONE solve with ``P`` right-hand sides on the
  cached factorization (``Q`` of them and ``S = U J`` when ``Q < P``), with
  ``C(v)[:, q] = (dA/dkappa_q) v`` applied element by element;
* ``J^T W J = S^T Y + Y^T S`` with ``Y = (1/2) (Hess m) S - C(lambda)^T J``: one dense
  product with the free dofs as inner dimension (``2 n P^2`` flops instead of ``2 Q P^2``).

A is linear in kappa, so the Lagrangian has no kappa-kappa term; the only second-order
coupling is ``lambda^T (dA/dkappa) u``, bilinear in (state, coefficient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from invfem.derivatives import value_and_grad
from invfem.fem.operators import BilinearMap, DirichletSystem, state_sensitivity
from invfem.linalg import sparse_solve
from invfem.linalg.dense import symmetric_product
from invfem.misfit import ObservationMisfit, add_hessian_on_free_rows
from invfem.structured import Linearization


@dataclass(eq=False)
class LinearStateLoss:
    """``kappa -> misfit(u)`` with ``A(kappa) u = load`` on the free dofs, ``u = u_dirichlet`` on the rest.

    ``operator`` maps kappa at the quadrature points to the full matrix (a
    :class:`~invfem.fem.operators.BilinearMap`, e.g. :func:`~invfem.fem.stiffness_map`);
    ``misfit`` is a function of the full nodal state (``torch.func``-safe).
    """

    system: DirichletSystem
    operator: BilinearMap
    load: torch.Tensor
    misfit: Callable[[torch.Tensor], torch.Tensor]
    u_dirichlet: torch.Tensor | None = None

    def solve(self, kappa: torch.Tensor) -> torch.Tensor:
        """Full nodal state for a coefficient at the quadrature points (differentiable)."""
        return self.system.solve(self.operator.values(kappa), self.load, self.u_dirichlet)

    def __call__(self, kappa: torch.Tensor) -> torch.Tensor:
        return self.misfit(self.solve(kappa))

    @property
    def has_residual(self) -> bool:
        """Whether the misfit is a sum of squares of observations (an ObservationMisfit)."""
        return isinstance(self.misfit, ObservationMisfit)

    def residual_vector(self, kappa: torch.Tensor) -> torch.Tensor:
        """``w^1/2 (B u - d)``: the loss is its squared norm."""
        return self.misfit.weighted_residual(self.solve(kappa))

    def residual_jacobian(self, kappa: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        """``d residual / d theta = w^1/2 B S`` with ``S = -A^{-1} C(u) J`` (one P-column solve)."""
        coupling, finish = self.jacobian_coupling(kappa)
        return finish(coupling @ jac)

    def jacobian_coupling(self, kappa: torch.Tensor):
        """``(C, finish)``: the sparse ``C(u)`` on the free rows ``(n_free, n_quad)`` and the map
        ``C(u) J -> w^1/2 B (-A^{-1} C(u) J)`` (the solve on the cached factorization), so that
        ``residual_jacobian = finish(C @ J)`` for any way of forming ``C @ J`` (``finish`` None:
        the identity, see :class:`~invfem.fem.residual.LinearResidualLoss`)."""
        system, space = self.system, self.system.space
        with torch.no_grad():
            values = self.operator.values(kappa)
            u = self.solve(kappa)
        a_ff = system.condense_matrix(values)
        coupling = space.coupling_matrix(self.operator.coupling(u), space.free_rows, space.n_free)
        return coupling, lambda c_j: self.misfit.residual_jacobian(state_sensitivity(a_ff, system.solver, c_j),
                                                                   space.free_rows)

    def linearize(self, kappa: torch.Tensor) -> Linearization:
        """State, adjoint and gradient at ``kappa``, and ``J -> J^T (Hess outer) J`` (module docstring).

        ``J`` is consumed chunk by chunk (whole elements) while the network pass has it in
        cache: only the ``(n_dofs, P)`` products ``C(u) J`` and ``C(lambda)^T J`` are kept.
        """
        system, space = self.system, self.system.space
        free, solver = space.free_index, system.solver
        with torch.no_grad():
            values = self.operator.values(kappa)
            a_ff = system.condense_matrix(values)
            u = self.solve(kappa)
        m_u = value_and_grad(self.misfit, u)[1]
        lam = space.expand(sparse_solve(a_ff, m_u[free], solver, transpose=True))
        coef_u = self.operator.coupling(u)                         # C(u):        (dA/dk_q) u
        coef_lam = self.operator.coupling(lam, transpose=True)     # C^T(lambda): (dA/dk_q)^T lambda
        gradient = -torch.einsum("ae,eaq->eq", lam[space.element_dofs], coef_u).reshape(-1)
        n_qp, n_points = space.n_qp, kappa.shape[0]
        acc: dict[str, torch.Tensor] = {}

        rows = space.free_rows            # free dofs first; Dirichlet dofs onto a dump row
        n_free = space.n_free

        def on_chunk(sl, jac_rows, _mixed):
            if not acc:
                n_params = jac_rows.shape[1]
                acc["products"] = jac_rows.new_zeros(2, n_free + 1, n_params)
                if n_points < n_params:    # Q < P: U = du/dkappa by Q solves, then S = U J chunk by chunk
                    eye = torch.eye(n_points, dtype=u.dtype, device=u.device)
                    c_u = space.scatter_points(coef_u, eye, dof_rows=rows)[0, :n_free]
                    acc["u_kappa"] = sparse_solve(a_ff, c_u, solver).neg_()
                    acc["sens"] = jac_rows.new_zeros(n_free, n_params)
            elements = slice(sl.start // n_qp, sl.stop // n_qp)
            coef = coef_lam if "u_kappa" in acc else torch.cat([coef_u, coef_lam], 1)
            space.scatter_points(coef, jac_rows, out=acc["products"][1:] if "u_kappa" in acc else acc["products"],
                                 elements=elements, dof_rows=rows)
            if "u_kappa" in acc:
                acc["sens"].addmm_(acc["u_kappa"][:, sl], jac_rows)

        def curvature(_jac) -> torch.Tensor:
            products = acc.pop("products")
            sens = acc.pop("sens", None)
            if sens is None:
                sens = sparse_solve(a_ff, products[0, :n_free], solver).neg_()
            acc.clear()
            y = products[1, :n_free].neg_()                                  # Y = (1/2) (Hess m) S - C(lambda)^T J
            add_hessian_on_free_rows(self.misfit, space, y, u, sens, alpha=0.5)
            return symmetric_product(sens, y)

        return Linearization(gradient=gradient, curvature=curvature, on_chunk=on_chunk, chunk_multiple=n_qp)
