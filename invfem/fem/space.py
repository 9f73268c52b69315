"""Triangle meshes and Lagrange function spaces built on scikit-fem.

A :class:`FunctionSpace` wraps a scikit-fem ``Basis`` and exposes, as float64 torch
tensors, what the differentiable path needs: quadrature points and weights, basis values
and gradients at those points, the element-to-dof map and the free / Dirichlet split.
Quadrature values are flattened element-major: point ``e * n_qp + q``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import skfem
import torch

from invfem.errors import ConfigError, ShapeError
from invfem.fem.meshes import unit_square  # noqa: F401  (the docstring example)
from invfem.linalg.pattern import csr_structure, csr_tensor

_ELEMENTS = {1: skfem.ElementTriP1, 2: skfem.ElementTriP2}
_SCATTER_BYTES = 32 * 2 ** 20     # temporary of one batched product in FunctionSpace.scatter_points


@dataclass(eq=False)
class FunctionSpace:
    """P1 or P2 Lagrange space on a triangle mesh with a Dirichlet boundary.

    Parameters
    ----------
    mesh : scikit-fem ``MeshTri``.
    order : 1 or 2.
    intorder : quadrature order (default ``2 * order``, exact for mass matrices).
    dirichlet : ``"boundary"`` (all boundary dofs, default), ``None`` (no Dirichlet dofs),
        names of boundaries of the mesh (gmsh physical groups: ``["left", "top"]``), or an
        array of dof indices.
    device : where its tensors live (``"cpu"`` default, ``"cuda"``); every operator, load
        and solver built on the space follows it.

    Attributes
    ----------
    basis : the scikit-fem ``CellBasis`` (``basis.probes``, ``basis.interpolate``, ...).
    quadrature_points : ``(n_quad, 2)`` coordinates of every quadrature point (element-major:
        point ``e * n_qp + q``) — where a coefficient kappa lives.
    dof_coordinates : ``(n_dofs, 2)`` coordinates of every degree of freedom.
    free_dofs, dirichlet_dofs : numpy index arrays of the free and prescribed dofs;
        ``free_index``, ``dirichlet_index``: the same as tensors; ``free_rows``: dof -> its
        position among the free dofs (Dirichlet dofs -> ``n_free``).
    element_dofs : ``(n_loc, n_elements)`` dofs of every element.
    phi, grad_phi, dx : basis values ``(n_loc, E, n_qp)``, gradients ``(n_loc, 2, E, n_qp)`` and
        quadrature weights times Jacobians ``(E, n_qp)``.

    >>> space = FunctionSpace(unit_square(4), order=2)
    >>> space.n_dofs, space.n_free, space.n_quad
    (81, 49, 192)
    """

    mesh: skfem.MeshTri
    order: int = 1
    intorder: int | None = None
    dirichlet: object = "boundary"
    device: object = None
    basis: skfem.Basis = field(init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.order, bool) or self.order not in _ELEMENTS:
            raise ShapeError(f"order must be one of {sorted(_ELEMENTS)}, got {self.order}")
        self.intorder = 2 * self.order if self.intorder is None else int(self.intorder)
        self.basis = skfem.Basis(self.mesh, _ELEMENTS[self.order](), intorder=self.intorder)
        b = self.basis
        if isinstance(self.dirichlet, str) and self.dirichlet == "boundary":
            dirichlet = b.get_dofs().flatten()
        elif self.dirichlet is None:
            dirichlet = np.zeros(0, dtype=np.int64)
        elif isinstance(self.dirichlet, str) or (isinstance(self.dirichlet, (list, tuple)) and self.dirichlet
                                                  and all(isinstance(d, str) for d in self.dirichlet)):
            names = [self.dirichlet] if isinstance(self.dirichlet, str) else list(self.dirichlet)
            dirichlet = np.concatenate([self.boundary_dofs(name) for name in names])
        else:
            dirichlet = np.asarray(self.dirichlet, dtype=np.int64).ravel()
            if dirichlet.size and (dirichlet.min() < 0 or dirichlet.max() >= b.N):
                raise ShapeError(f"Dirichlet dofs must lie in [0, {b.N}), got [{dirichlet.min()}, {dirichlet.max()}]")
        self.dirichlet_dofs = np.unique(dirichlet).astype(np.int64)
        self.free_dofs = np.setdiff1d(np.arange(b.N), self.dirichlet_dofs).astype(np.int64)
        self.device = torch.device("cpu" if self.device is None else self.device)
        index = lambda a: torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64), device=self.device)
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=self.device)
        self.free_index = index(self.free_dofs)                      # the same, as tensors (hot path)
        self.dirichlet_index = index(self.dirichlet_dofs)
        rows = np.full(b.N, self.free_dofs.size, dtype=np.int64)     # dof -> free row; Dirichlet -> n_free
        rows[self.free_dofs] = np.arange(self.free_dofs.size)
        self.free_rows = index(rows)
        self.element_dofs = index(b.element_dofs)                                         # (n_loc, n_elem)
        self.phi = t(np.stack([np.asarray(bf[0]) for bf in b.basis]))                           # (n_loc, n_elem, n_qp)
        self.grad_phi = t(np.stack([bf[0].grad for bf in b.basis]))                       # (n_loc, 2, n_elem, n_qp)
        self.dx = t(b.dx)                                                                 # (n_elem, n_qp)
        self.quadrature_points = t(np.asarray(b.global_coordinates()).reshape(2, -1).T)         # (n_quad, 2)
        self.dof_coordinates = t(b.doflocs.T)                                             # (n_dofs, 2)

    def boundary_dofs(self, name: str) -> np.ndarray:
        """Dofs on a named boundary of the mesh (gmsh physical group, or ``"boundary"`` for all)."""
        if name == "boundary":
            return self.basis.get_dofs().flatten()
        boundaries = getattr(self.mesh, "boundaries", None) or {}
        if name not in boundaries:
            raise ConfigError(f"unknown boundary {name!r}; the mesh has {sorted(boundaries) or 'no named boundaries'} "
                              "(and 'boundary' for all of it)")
        return self.basis.get_dofs(boundaries[name]).flatten()

    @property
    def n_dofs(self) -> int:
        """Number of degrees of freedom (all, including Dirichlet)."""
        return int(self.basis.N)

    @property
    def n_free(self) -> int:
        """Number of free (non-Dirichlet) degrees of freedom."""
        return int(self.free_dofs.size)

    @property
    def n_elements(self) -> int:
        return int(self.dx.shape[0])

    @property
    def n_qp(self) -> int:
        """Quadrature points per element."""
        return int(self.dx.shape[1])

    @property
    def n_quad(self) -> int:
        """Quadrature points in all (the length of a coefficient vector)."""
        return self.n_elements * self.n_qp

    def interpolate(self, u: torch.Tensor) -> torch.Tensor:
        """Values at the quadrature points ``(n_quad,)`` of the nodal field ``u`` ``(n_dofs,)``."""
        self._check_nodal(u)
        return torch.einsum("ae,aeq->eq", u[self.element_dofs], self.phi).reshape(-1)

    def interpolate_grad(self, u: torch.Tensor) -> torch.Tensor:
        """Gradients at the quadrature points ``(n_quad, 2)`` of the nodal field ``u``."""
        self._check_nodal(u)
        return torch.einsum("ae,adeq->eqd", u[self.element_dofs], self.grad_phi).reshape(-1, 2)

    def scatter_points(self, coef: torch.Tensor, rows: torch.Tensor, out: torch.Tensor | None = None,
                       elements: slice | None = None, dof_rows: torch.Tensor | None = None) -> torch.Tensor:
        """``out[k, dofs[a, e], :] += sum_q coef[e, k * n_loc + a, q] rows[e * n_qp + q, :]``.

        The product ``C^T rows`` of a point-to-dof coupling ``C`` that lives on the elements
        (``coef``: ``(n_elements, k * n_loc, n_qp)``, ``k`` couplings stacked) with a matrix of
        per-point rows ``(n_quad, m)`` — e.g. ``C(u) J`` of the state sensitivity, with
        ``C(u)[:, q] = (dA/dkappa_q) u``. One batched product over the elements and one
        row-wise ``index_add``: ``O(n_quad m)`` work, no sparse-matrix kernel. ``elements``:
        only those elements (``rows`` then holds just their points). Returns ``(k, n_dofs, m)``;
        pass ``out`` (zeroed) to accumulate into a buffer. ``dof_rows`` renumbers the output
        rows (e.g. :attr:`free_rows`: free dofs first, every Dirichlet dof onto row ``n_free``,
        so ``out[:, :n_free]`` is the free block without a copy); ``out`` then has
        ``dof_rows.max() + 1`` rows.
        """
        elements = slice(0, self.n_elements) if elements is None else elements
        n_loc, n_qp = self.element_dofs.shape[0], self.n_qp
        coef = coef[elements]
        n_elem, k, m = coef.shape[0], coef.shape[1] // n_loc, rows.shape[1]
        n_out = self.n_dofs if dof_rows is None else int(dof_rows.max()) + 1
        if out is None:
            out = rows.new_zeros(k, n_out, m)
        rows = rows.reshape(n_elem, n_qp, m)
        dofs = self.element_dofs[:, elements].T                                 # (E, n_loc)
        if dof_rows is not None:
            dofs = dof_rows[dofs]
        group = max(1, _SCATTER_BYTES // (8 * n_elem * n_loc * m))              # couplings per batched product
        for k0 in range(0, k, group):
            k1 = min(k, k0 + group)
            local = self._scratch((n_elem, (k1 - k0) * n_loc, m), rows)
            torch.bmm(coef[:, k0 * n_loc:k1 * n_loc], rows, out=local)           # (E, (k1 - k0) n_loc, m)
            shift = torch.arange(k0, k1, device=rows.device)[:, None] * n_out
            index = (dofs[:, None, :] + shift[None]).reshape(-1)
            out.view(k * n_out, m).index_add_(0, index, local.view(-1, m))
        return out

    def coupling_matrix(self, coef: torch.Tensor, dof_rows: torch.Tensor | None = None,
                        n_rows: int | None = None) -> torch.Tensor:
        """The coupling of :meth:`scatter_points` as one sparse CSR matrix ``(k * n_rows, n_quad)``:
        row ``k' * n_rows + dof_rows[dofs[a, e]]``, column ``e * n_qp + q`` holds
        ``coef[e, k' * n_loc + a, q]``; rows numbered ``>= n_rows`` (the dump row of
        :attr:`free_rows`) are dropped. ``C @ M`` is then ``scatter_points(coef, M)`` restricted
        to the kept rows, by one sparse-times-dense product (no ``(E, k n_loc, m)`` intermediate,
        no ``index_add``: 1.6x faster at 30x30 P1, measured in ``benchmarks/jacobian_cost.py``).
        The sparsity structure is built once per ``(k, dof_rows, n_rows)`` and cached.
        """
        n_elem, n_loc, n_qp = self.n_elements, self.element_dofs.shape[0], self.n_qp
        k = coef.shape[1] // n_loc
        n_rows = (self.n_dofs if dof_rows is None else int(dof_rows.max()) + 1) if n_rows is None else int(n_rows)
        key = (k, None if dof_rows is None else dof_rows.data_ptr(), n_rows)
        cache = self.__dict__.setdefault("_coupling_structures", {})
        if key not in cache:
            dofs = self.element_dofs.T if dof_rows is None else dof_rows[self.element_dofs.T]   # (E, n_loc)
            shift = torch.arange(k, device=dofs.device)[:, None] * n_rows
            row = (dofs[:, None, :] + shift[None]).reshape(n_elem, k * n_loc, 1).expand(n_elem, k * n_loc, n_qp)
            local = dofs[:, None, :].expand(n_elem, k, n_loc).reshape(n_elem, k * n_loc, 1).expand(-1, -1, n_qp)
            col = (torch.arange(n_elem, device=dofs.device)[:, None, None] * n_qp
                   + torch.arange(n_qp, device=dofs.device)).expand(n_elem, k * n_loc, n_qp)
            keep = (local < n_rows).reshape(-1)
            row, col = row.reshape(-1)[keep], col.reshape(-1)[keep]
            flat = torch.arange(keep.numel(), device=dofs.device)[keep]
            crow, col, order = csr_structure(row, col, k * n_rows, self.n_quad)
            cache[key] = (crow, col, flat[order].contiguous(), (k * n_rows, self.n_quad))
        crow, col, take, size = cache[key]
        return csr_tensor(crow, col, coef.reshape(-1)[take], size)

    def _scratch(self, shape, like: torch.Tensor) -> torch.Tensor:
        """A reusable work array (fresh large allocations cost page faults on every call)."""
        size = 1
        for d in shape:
            size *= d
        buf = self.__dict__.get("_scratch_buffer")
        if buf is None or buf.numel() < size or buf.device != like.device or buf.dtype != like.dtype:
            buf = like.new_empty(size)
            self.__dict__["_scratch_buffer"] = buf
        return buf[:size].view(shape)

    def gather_points(self, coef: torch.Tensor, nodal: torch.Tensor, dof_rows: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """The transpose of :meth:`scatter_points` for one coupling: ``out[e * n_qp + q, :] =
        sum_a coef[e, a, q] nodal[dofs[a, e], :]`` (``(n_quad, m)`` from nodal rows ``(n_dofs, m)``,
        or rows numbered by ``dof_rows`` as in :meth:`scatter_points`).

        With ``coef[e, a, q] = phi_a(x_q)`` it interpolates nodal columns to the points.
        """
        dofs = self.element_dofs.T if dof_rows is None else dof_rows[self.element_dofs.T]
        local = nodal[dofs]                                                     # (E, n_loc, m)
        return torch.bmm(coef.transpose(1, 2), local).reshape(self.n_quad, nodal.shape[1])

    def integrate(self, values_q: torch.Tensor) -> torch.Tensor:
        """``sum_q w_q v_q``: the integral of a field given at the quadrature points."""
        return (values_q.reshape(self.dx.shape) * self.dx).sum()

    def expand(self, u_free: torch.Tensor, u_dirichlet: torch.Tensor | None = None) -> torch.Tensor:
        """Full nodal vector from free values and Dirichlet values (zero by default)."""
        full = u_free.new_zeros((self.n_dofs,) + tuple(u_free.shape[1:]))
        full = full.index_copy(0, self.free_index, u_free)
        if u_dirichlet is not None:
            full = full.index_copy(0, self.dirichlet_index, u_dirichlet)
        return full

    def dirichlet_values(self, g) -> torch.Tensor:
        """Values of ``g(x, y)`` (a callable on coordinate tensors) at the Dirichlet dofs."""
        xy = self.dof_coordinates[self.dirichlet_index]
        return torch.as_tensor(g(xy[:, 0], xy[:, 1]), dtype=torch.float64, device=self.device).expand(xy.shape[0])

    def _check_nodal(self, u: torch.Tensor) -> None:
        if u.ndim != 1 or u.shape[0] != self.n_dofs:
            raise ShapeError(f"nodal vector must have shape ({self.n_dofs},), got {tuple(u.shape)}")
