"""A residual Jacobian kept as a product: ``J = [L R; ridge I]`` with a sparse ``L`` and a dense ``R``.

For a residual that is affine in a coefficient at the quadrature points (residual
minimisation: ``r = L kappa(theta) - b``), ``J = L J_kappa`` with the sparse ``L = d r / d kappa``
``(m, Q)`` and the network's ``J_kappa`` ``(Q, P)``. Where ``m`` is larger than ``Q`` (the heat
problem: 1620 residuals, 600 points) the product is larger than its factors: forming it costs
a sparse-times-dense product per iteration, and every product with it reads ``m P`` numbers
where the factors hold ``Q P + nnz(L)``. A matrix-free solver (trf's LSMR subspace step) only
needs ``J v`` and ``J^T w``: :class:`JacobianOperator` gives them from the factors, and
:meth:`~JacobianOperator.dense` the matrix for everything else. ``ridge`` appends
``ridge * I`` (the prior ``alpha ||theta||^2`` as rows ``sqrt(alpha) theta``).
"""

from __future__ import annotations

import warnings
import weakref

import torch

from invfem.linalg.backends import all_finite

#: ``id(left) -> (weak reference to left, left^T)`` for the sparse factors seen (a residual-
#: minimisation L is one constant tensor for the whole fit: transposed once, not per iteration)
_TRANSPOSES: dict[int, tuple[weakref.ref, torch.Tensor]] = {}


class JacobianOperator:
    """``J = [left @ right; ridge I]`` ``(m, P)`` (module docstring); ``left`` sparse CSR ``(m0, Q)``,
    ``right`` dense ``(Q, P)``; ``m = m0 (+ P with a ridge)``."""

    def __init__(self, left: torch.Tensor, right: torch.Tensor, ridge: float = 0.0):
        if left.layout != torch.sparse_csr or left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[0]:
            raise ValueError(f"JacobianOperator needs a sparse CSR left (m, Q) and a dense right (Q, P), got "
                             f"{left.layout} {tuple(left.shape)} and {tuple(right.shape)}")
        self.left, self.right, self.ridge = left, right, float(ridge)
        self._left_t = None
        rows = left.shape[0] + (right.shape[1] if self.ridge else 0)
        self.shape = (rows, right.shape[1])
        self.dtype, self.device = right.dtype, right.device

    def with_ridge(self, ridge: float) -> "JacobianOperator":
        """The same product with ``ridge * I`` appended (ridges do not stack: one prior)."""
        if self.ridge:
            raise ValueError("this Jacobian already has a ridge")
        return JacobianOperator(self.left, self.right, ridge)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` for ``v`` ``(P,)`` or ``(P, k)``."""
        out = self.left @ (self.right @ v)
        return torch.cat([out, self.ridge * v]) if self.ridge else out

    def rmatvec(self, w: torch.Tensor) -> torch.Tensor:
        """``J^T w`` for ``w`` ``(m,)`` or ``(m, k)``."""
        m0 = self.left.shape[0]
        out = self.right.T @ (self.left_t @ w[:m0])
        return out + self.ridge * w[m0:] if self.ridge else out

    @property
    def left_t(self) -> torch.Tensor:
        """``left^T`` as CSR (formed once per ``left`` tensor)."""
        if self._left_t is None:
            known = _TRANSPOSES.get(id(self.left))
            if known is not None and known[0]() is self.left:
                self._left_t = known[1]
            else:
                with warnings.catch_warnings():          # torch's one-time "sparse CSR is in beta" notice
                    warnings.simplefilter("ignore", UserWarning)
                    self._left_t = self.left.to_sparse_coo().t().coalesce().to_sparse_csr()
                for key in [k for k, (ref, _) in _TRANSPOSES.items() if ref() is None]:
                    del _TRANSPOSES[key]                 # factors no longer alive
                _TRANSPOSES[id(self.left)] = (weakref.ref(self.left), self._left_t)
        return self._left_t

    def is_finite(self) -> bool:
        """Whether both factors are finite (one reduction each, the exact check only on doubt)."""
        return all_finite(self.right) and all_finite(self.left.values())

    def dense(self) -> torch.Tensor:
        """The ``(m, P)`` matrix."""
        out = self.left @ self.right
        if self.ridge:
            eye = torch.eye(self.shape[1], dtype=out.dtype, device=out.device).mul_(self.ridge)
            out = torch.cat([out, eye])
        return out

    def __repr__(self) -> str:
        return (f"JacobianOperator({self.shape[0]}x{self.shape[1]}: sparse {tuple(self.left.shape)} with "
                f"{self.left.values().numel()} entries times dense {tuple(self.right.shape)}"
                f"{f', ridge {self.ridge:g}' if self.ridge else ''})")


def as_dense(jac):
    """``jac`` as a dense tensor: a :class:`JacobianOperator` is formed, anything else passes."""
    return jac.dense() if isinstance(jac, JacobianOperator) else jac
