"""Finite-element matrices as differentiable, linear functions of a coefficient field.

A weighted bilinear form ``a(u, v) = sum_q c_q w_q B(u, v)(x_q)`` is linear in the
coefficient ``c`` at the quadrature points, so its CSR values are
``values = sum_q c_q dA/dc_q``. :class:`BilinearMap` precomputes the local tensors
``C[e, a, b, q]`` from scikit-fem once, then applies the map with an ``einsum`` and an
``index_add`` into the pattern slots: cheap, exact, and composable with every
``torch.func`` transform. Stiffness and mass are two instances of this one path.

:class:`DirichletSystem` condenses a full matrix to the free dofs,
``A_ff u_f = F_f - A_fD u_D`` (lifting of prescribed values), again differentiably.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from invfem.errors import ShapeError
from invfem.fem.space import FunctionSpace
from invfem.linalg import SparseSolver, SparsityPattern, sparse_solve


@dataclass(eq=False)
class BilinearMap:
    """Linear map from a coefficient at quadrature points to CSR values of the full matrix.

    ``local[e, a, b, q]`` is the contribution of coefficient ``c[e, q]`` to the entry
    ``(dofs[a, e], dofs[b, e])``. Build with :func:`stiffness_map` or :func:`mass_map`.
    """

    space: FunctionSpace = field(repr=False)
    local: torch.Tensor = field(repr=False)
    pattern: SparsityPattern = field(repr=False)
    slots: torch.Tensor = field(repr=False)

    def __repr__(self) -> str:
        n_elem, n_loc = self.local.shape[:2]
        return (f"BilinearMap({self.pattern.n}x{self.pattern.n}, nnz={self.pattern.nnz}, {n_elem} elements x "
                f"{n_loc} local dofs, {self.space.n_quad} quadrature points)")

    @classmethod
    def from_local(cls, space: FunctionSpace, local: torch.Tensor) -> "BilinearMap":
        dofs = space.element_dofs.cpu().numpy()
        n_loc, n_elem = dofs.shape
        rows = np.broadcast_to(dofs.T[:, :, None], (n_elem, n_loc, n_loc))
        cols = np.broadcast_to(dofs.T[:, None, :], (n_elem, n_loc, n_loc))
        pattern, slots = SparsityPattern.from_coo(rows, cols, space.n_dofs)
        return cls(space, local, pattern.to(space.device), torch.as_tensor(slots, device=space.device))

    def values(self, coefficient: torch.Tensor) -> torch.Tensor:
        """CSR values (``pattern`` order) for a coefficient ``(n_quad,)`` at the quadrature points."""
        if coefficient.ndim != 1 or coefficient.shape[0] != self.space.n_quad:
            raise ShapeError(f"coefficient must have shape ({self.space.n_quad},) (one value per quadrature "
                             f"point), got {tuple(coefficient.shape)}")
        element = torch.einsum("eabq,eq->eab", self.local, coefficient.reshape(self.space.dx.shape))
        return self.assemble(element)

    def coupling(self, v: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """Element form of ``C(v) = d (A(c) v) / dc`` (``(n_dofs, n_quad)``, sparse):
        ``coef[e, a, q] = sum_b local[e, a, b, q] v[dofs[b, e]]`` (``A^T`` with ``transpose``).

        ``v`` may be ``(n_dofs,)`` or a stack ``(k, n_dofs)`` (then ``(n_elements, k * n_loc, n_qp)``);
        feed it to :meth:`FunctionSpace.scatter_points` for ``C(v) M``, or contract it with a
        dof vector ``w`` for ``w^T C(v)`` (the kappa-gradient of ``w^T A(kappa) v``).
        """
        vs = v.reshape(-1, v.shape[-1])
        local = self.local.transpose(1, 2) if transpose else self.local
        coef = torch.einsum("eabq,kbe->ekaq", local, vs[:, self.space.element_dofs])
        return coef.reshape(coef.shape[0], -1, coef.shape[-1])

    def assemble(self, element: torch.Tensor) -> torch.Tensor:
        """CSR values (``pattern`` order) from element matrices ``(n_elements, n_loc, n_loc)``."""
        return element.new_zeros(self.pattern.nnz).index_add(0, self.slots, element.reshape(-1))

    def to_scipy(self, coefficient: torch.Tensor):
        """The assembled matrix as scipy CSR (for checks and plotting)."""
        return self.pattern.to_scipy(self.values(coefficient))


def stiffness_map(space: FunctionSpace) -> BilinearMap:
    """``K(kappa)_ij = sum_q kappa_q w_q grad(phi_i) . grad(phi_j)(x_q)``."""
    local = torch.einsum("adeq,bdeq,eq->eabq", space.grad_phi, space.grad_phi, space.dx)
    return BilinearMap.from_local(space, local.contiguous())


def mass_map(space: FunctionSpace) -> BilinearMap:
    """``M(rho)_ij = sum_q rho_q w_q phi_i phi_j(x_q)``."""
    local = torch.einsum("aeq,beq,eq->eabq", space.phi, space.phi, space.dx)
    return BilinearMap.from_local(space, local.contiguous())


def load_vector(space: FunctionSpace, f) -> torch.Tensor:
    """``F_i = sum_q f_q w_q phi_i(x_q)``; ``f`` is a callable ``f(x, y)`` or values ``(n_quad,)``."""
    if callable(f):
        xq = space.quadrature_points
        fq = torch.as_tensor(f(xq[:, 0], xq[:, 1]), dtype=torch.float64, device=space.device).expand(space.n_quad)
    else:
        fq = f
    if fq.ndim != 1 or fq.shape[0] != space.n_quad:
        raise ShapeError(f"f at quadrature points must have shape ({space.n_quad},), got {tuple(fq.shape)}")
    local = torch.einsum("eq,aeq,eq->ae", fq.reshape(space.dx.shape), space.phi, space.dx)
    return fq.new_zeros(space.n_dofs).index_add(0, space.element_dofs.reshape(-1), local.reshape(-1))


@dataclass(eq=False)
class DirichletSystem:
    """Condensation of ``A u = F`` on a full pattern to the free dofs, and its solver.

    ``values_ff = condense_matrix(values)`` gathers the free-free block;
    ``rhs_f = condense_rhs(values, F, u_D)`` is ``F_f - A_fD u_D``. ``solve`` does both and
    calls :func:`~invfem.linalg.sparse_solve` on the free block (one factorization cache,
    one backend).
    """

    space: FunctionSpace
    pattern: SparsityPattern
    solver: SparseSolver
    ff_index: torch.Tensor
    fd_index: torch.Tensor
    fd_rows: torch.Tensor
    fd_cols: torch.Tensor

    @classmethod
    def build(cls, space: FunctionSpace, full: SparsityPattern, backend="auto", cache_size: int = 4) -> "DirichletSystem":
        """Split ``full`` into free-free and free-Dirichlet blocks; make the free-block solver."""
        free_pos = np.full(space.n_dofs, -1, dtype=np.int64)
        free_pos[space.free_dofs] = np.arange(space.n_free)
        dir_pos = np.full(space.n_dofs, -1, dtype=np.int64)
        dir_pos[space.dirichlet_dofs] = np.arange(space.dirichlet_dofs.size)
        r, c = full.rows, full.cols
        ff = np.flatnonzero((free_pos[r] >= 0) & (free_pos[c] >= 0))
        fd = np.flatnonzero((free_pos[r] >= 0) & (dir_pos[c] >= 0))
        pattern, slot = SparsityPattern.from_coo(free_pos[r[ff]], free_pos[c[ff]], space.n_free)
        pattern = pattern.to(space.device)
        order = np.empty_like(ff)
        order[slot] = ff  # pattern slot -> full index
        as_t = lambda a: torch.as_tensor(a, dtype=torch.int64, device=space.device)
        return cls(space, pattern, SparseSolver(pattern, backend, cache_size), as_t(order), as_t(fd),
                   as_t(free_pos[r[fd]]), as_t(dir_pos[c[fd]]))

    def condense_matrix(self, values: torch.Tensor) -> torch.Tensor:
        """Values of the free-free block in ``self.pattern`` order."""
        return values[self.ff_index]

    def condense_rhs(self, values: torch.Tensor, rhs: torch.Tensor, u_dirichlet: torch.Tensor | None = None) -> torch.Tensor:
        """``F_f - A_fD u_D`` (just ``F_f`` if ``u_dirichlet`` is None)."""
        rhs_f = rhs[self.space.free_index]
        if u_dirichlet is None or self.fd_index.numel() == 0:
            return rhs_f
        lifted = values[self.fd_index] * u_dirichlet[self.fd_cols]
        return rhs_f - torch.zeros_like(rhs_f).index_add(0, self.fd_rows, lifted)

    def solve(self, values: torch.Tensor, rhs: torch.Tensor, u_dirichlet: torch.Tensor | None = None) -> torch.Tensor:
        """Full nodal solution of ``A(values) u = rhs`` with ``u = u_dirichlet`` on the Dirichlet dofs."""
        u_free = sparse_solve(self.condense_matrix(values), self.condense_rhs(values, rhs, u_dirichlet), self.solver)
        return self.space.expand(u_free, u_dirichlet)


def state_sensitivity(a_ff: torch.Tensor, solver: SparseSolver, c_j: torch.Tensor) -> torch.Tensor:
    """``S = du/dtheta = -A^{-1} C(v) J`` on the free dofs, ``(n_free, P)``: the state sensitivity
    of ``A u = F`` to a coefficient ``kappa_theta`` at the quadrature points, by ONE solve with
    ``P`` right-hand sides on the cached factorization of ``A`` (``a_ff``: the free block's
    values; ``c_j``: ``C(v) J`` on the free rows, ``C(v)[:, q] = (dA/dkappa_q) v``, ``J = dkappa/dtheta``,
    e.g. ``space.coupling_matrix(coupling, space.free_rows, space.n_free) @ J``)."""
    return sparse_solve(a_ff, c_j, solver).neg_()
