"""A fixed sparsity pattern: the structure of a sparse matrix without its values.

In a differentiable path a sparse matrix is a :class:`SparsityPattern` plus a dense
1-D float64 tensor of values in the pattern's CSR order. ``torch.sparse`` tensors
are not used there because they do not work under ``torch.func`` transforms.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch

from invfem.errors import PatternMismatchError, ShapeError


def csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size) -> torch.Tensor:
    """A ``torch.sparse_csr`` matrix from a valid CSR triple (no invariant checks, no beta notice).
    For the closed-form, non-differentiated products (residual Jacobians), where one sparse
    times dense product replaces gathers and ``index_add``; not for ``torch.func`` paths."""
    with warnings.catch_warnings():          # torch's one-time "CSR support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def csr_structure(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int):
    """``(crow, col, order)`` of the CSR matrix with entries at ``(rows, cols)`` (no repeats):
    its values are ``values[order]`` for values given in the entries' order."""
    order = torch.argsort(rows * n_cols + cols)
    crow = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n_rows), 0)
    return crow, cols[order].contiguous(), order


@dataclass(frozen=True, eq=False)
class SparsityPattern:
    """Row/column structure of an ``n x n`` sparse matrix in CSR order.

    Entry ``k`` of a values vector sits at ``(rows[k], cols[k])``; rows are sorted and,
    within a row, columns are sorted, so ``(values, cols, indptr)`` is a valid CSR triple.

    Build one with :meth:`from_coo`, which also returns the map from the (possibly
    repeated) COO entries to pattern slots, so that values can be summed into place with
    ``index_add``.
    """

    n: int
    indptr: np.ndarray
    indices: np.ndarray
    rows_t: torch.Tensor = field(repr=False)
    cols_t: torch.Tensor = field(repr=False)

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.indices.shape[0])

    @property
    def rows(self) -> np.ndarray:
        """Row index of every stored entry (numpy, CSR order)."""
        return self.rows_t.cpu().numpy()

    @property
    def device(self) -> torch.device:
        """Where the index tensors (``rows_t``, ``cols_t``) live."""
        return self.rows_t.device

    def to(self, device) -> "SparsityPattern":
        """The same pattern with its index tensors on ``device`` (cached; ``self`` if already there)."""
        device = torch.device(device) if device is not None else self.device
        if device == self.device:
            return self
        moved = self._moved.get(device)
        if moved is None:
            moved = SparsityPattern(self.n, self.indptr, self.indices, self.rows_t.to(device), self.cols_t.to(device))
            self._moved[device] = moved
        return moved

    @cached_property
    def _moved(self) -> dict:
        return {}

    @property
    def cols(self) -> np.ndarray:
        """Column index of every stored entry (numpy, CSR order)."""
        return self.indices

    @classmethod
    def from_coo(cls, rows, cols, n: int) -> tuple["SparsityPattern", np.ndarray]:
        """Pattern of the distinct ``(rows[i], cols[i])`` pairs, and the slot of every pair.

        Returns ``(pattern, slot)`` with ``slot[i]`` the position of entry ``i`` in the
        pattern's values vector; repeated pairs share a slot.
        """
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        if rows.shape != cols.shape:
            raise ShapeError(f"rows {rows.shape} and cols {cols.shape} differ in shape")
        if rows.size and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= n):
            raise ShapeError(f"row/column indices must lie in [0, {n}), got [{min(rows.min(), cols.min())}, {max(rows.max(), cols.max())}]")
        keys, slot = np.unique(rows * n + cols, return_inverse=True)
        urows, ucols = keys // n, keys % n
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.add.at(indptr, urows + 1, 1)
        np.cumsum(indptr, out=indptr)
        pattern = cls(
            n=int(n),
            indptr=indptr,
            indices=ucols.astype(np.int64),
            rows_t=torch.as_tensor(urows, dtype=torch.int64),
            cols_t=torch.as_tensor(ucols, dtype=torch.int64),
        )
        return pattern, slot.astype(np.int64)

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix) -> tuple["SparsityPattern", torch.Tensor]:
        """Pattern of a square scipy sparse matrix and its values as a float64 tensor."""
        coo = sp.coo_matrix(matrix)
        if coo.shape[0] != coo.shape[1]:
            raise ShapeError(f"matrix must be square, got shape {coo.shape}")
        pattern, slot = cls.from_coo(coo.row, coo.col, coo.shape[0])
        values = np.zeros(pattern.nnz)
        np.add.at(values, slot, coo.data)
        return pattern, torch.as_tensor(values, dtype=torch.float64)

    def values_of(self, matrix: sp.spmatrix) -> torch.Tensor:
        """Values of ``matrix`` in this pattern's order.

        Raises :class:`PatternMismatchError` if ``matrix`` has a non-zero outside the pattern.
        """
        csr = sp.csr_matrix(matrix)
        if csr.shape != (self.n, self.n):
            raise PatternMismatchError(f"matrix shape {csr.shape} does not match pattern shape {(self.n, self.n)}")
        csr.eliminate_zeros()
        outside = csr - csr.multiply(self.to_scipy(np.ones(self.nnz)) != 0)
        outside.eliminate_zeros()
        if outside.nnz:
            r, c = outside.nonzero()
            raise PatternMismatchError(f"matrix has {outside.nnz} non-zeros outside the pattern, first at ({r[0]}, {c[0]})")
        return torch.as_tensor(np.asarray(csr[self.rows.copy(), self.cols.copy()]).ravel(), dtype=torch.float64)

    def check_values(self, values: torch.Tensor) -> None:
        """Raise :class:`PatternMismatchError` unless ``values`` is a float64 vector of length nnz."""
        if values.dtype != torch.float64:
            raise PatternMismatchError(f"matrix values must be float64, got {values.dtype}")
        if values.ndim != 1 or values.shape[0] != self.nnz:
            raise PatternMismatchError(f"matrix values have shape {tuple(values.shape)}, the pattern needs ({self.nnz},)")

    def to_scipy(self, values) -> sp.csr_matrix:
        """A scipy CSR matrix with this pattern and the given values (numpy or tensor)."""
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        return sp.csr_matrix((np.asarray(values, dtype=np.float64), self.indices, self.indptr), shape=(self.n, self.n))

    def to_dense(self, values: torch.Tensor) -> torch.Tensor:
        """Dense ``n x n`` tensor, differentiable in ``values`` (for small reference checks)."""
        dense = values.new_zeros(self.n * self.n)
        return dense.index_add(0, self.rows_t * self.n + self.cols_t, values).reshape(self.n, self.n)

    def matvec(self, values: torch.Tensor, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``A x`` (or ``A^T x``) for ``x`` of shape ``(n,)`` or ``(n, k)``, differentiable in both."""
        src, dst = (self.rows_t, self.cols_t) if transpose else (self.cols_t, self.rows_t)
        scale = values if x.ndim == 1 else values.unsqueeze(-1)
        return x.new_zeros((self.n,) + tuple(x.shape[1:])).index_add(0, dst, scale * x[src])

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        """A ``torch.sparse_csr_tensor`` with these values (on their device) for fast sparse x dense
        products outside ``torch.func`` transforms (sparse tensors do not work under them: use
        :meth:`matvec` in differentiable code)."""
        crow, col = self._csr_index(values.device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(crow, col, values, size=(self.n, self.n), check_invariants=False)

    def _csr_index(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = ("csr", torch.device(device))
        if key not in self._moved:
            self._moved[key] = (torch.as_tensor(self.indptr, device=device), torch.as_tensor(self.indices, device=device))
        return self._moved[key]

    def is_symmetric(self) -> bool:
        """Whether the pattern (not the values) is structurally symmetric."""
        return self._symmetric

    @cached_property
    def _symmetric(self) -> bool:
        a = self.to_scipy(np.ones(self.nnz))
        return (a != a.T).nnz == 0

    def transpose_index(self) -> torch.Tensor:
        """``t`` with ``values[t]`` the values of ``A^T`` in this pattern's order (symmetric patterns)."""
        if not self.is_symmetric():
            raise PatternMismatchError("transpose_index needs a structurally symmetric pattern")
        return self._transpose_index

    @cached_property
    def _transpose_index(self) -> torch.Tensor:
        keys = self.rows.astype(np.int64) * self.n + self.indices      # sorted: CSR order
        return torch.as_tensor(np.searchsorted(keys, self.indices.astype(np.int64) * self.n + self.rows))
