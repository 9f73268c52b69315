"""Sparse direct-solver backends and the factorization cache.

A backend turns CSR values on a :class:`SparsityPattern` into a factorization with a
``solve(rhs, transpose)`` method that accepts one right-hand side ``(n,)`` or many
``(n, k)`` at once. Backends are chosen by name (:func:`available_backends`) or passed as
objects, never hard-coded in the solve layer.

* ``"superlu"`` (default): ``scipy.sparse.linalg.splu``, any non-singular matrix.
* ``"cholmod"``: CHOLMOD supernodal Cholesky through the ``cholespy`` wheel, for
  symmetric positive definite matrices only (optional dependency).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from invfem.errors import BackendError, NonFiniteError, SingularMatrixError
from invfem.linalg.pattern import SparsityPattern


class SuperLUFactor:
    """LU factors from SuperLU; ``solve`` handles ``A`` and ``A^T`` with one factorization."""

    def __init__(self, pattern: SparsityPattern, values: np.ndarray, permc_spec: str):
        matrix = pattern.to_scipy(values).tocsc()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", spla.MatrixRankWarning)
                self._lu = spla.splu(matrix, permc_spec=permc_spec)
        except (RuntimeError, spla.MatrixRankWarning) as exc:
            raise SingularMatrixError(f"SuperLU could not factorize the {pattern.n}x{pattern.n} matrix: {exc}") from exc

    def solve(self, rhs: np.ndarray, transpose: bool) -> np.ndarray:
        return self._lu.solve(rhs, trans="T" if transpose else "N")


class CholmodFactor:
    """Sparse Cholesky factor from CHOLMOD (``cholespy``); the matrix must be SPD."""

    def __init__(self, pattern: SparsityPattern, values: np.ndarray):
        import cholespy  # optional dependency, checked by CholmodBackend

        try:
            self._chol = cholespy.CholeskySolverD(
                pattern.n, pattern.indptr.astype(np.int32), pattern.indices.astype(np.int32),
                np.ascontiguousarray(values), cholespy.MatrixType.CSR)
        except (RuntimeError, ValueError) as exc:
            raise SingularMatrixError(f"CHOLMOD could not factorize the {pattern.n}x{pattern.n} matrix "
                                      f"(not positive definite?): {exc}") from exc

    def solve(self, rhs: np.ndarray, transpose: bool) -> np.ndarray:
        # A is symmetric, so A^T x = b is the same solve.
        b = np.ascontiguousarray(rhs)
        x = np.zeros_like(b)
        self._chol.solve(b, x)
        return x


@dataclass(frozen=True)
class SuperLUBackend:
    """SuperLU (scipy). ``permc_spec`` is SuperLU's column ordering."""

    permc_spec: str = "COLAMD"
    name: str = "superlu"

    def factorize(self, pattern: SparsityPattern, values: np.ndarray) -> SuperLUFactor:
        return SuperLUFactor(pattern, values, self.permc_spec)


@dataclass(frozen=True)
class CholmodBackend:
    """CHOLMOD supernodal Cholesky through ``cholespy``: SPD matrices only."""

    name: str = "cholmod"

    def __post_init__(self):
        try:
            import cholespy  # noqa: F401
        except ImportError as exc:
            raise BackendError("backend 'cholmod' needs the optional package cholespy: pip install cholespy") from exc

    def factorize(self, pattern: SparsityPattern, values: np.ndarray) -> CholmodFactor:
        return CholmodFactor(pattern, values)


_BACKENDS = {"superlu": SuperLUBackend, "cholmod": CholmodBackend}


def available_backends() -> list[str]:
    """Names accepted by :func:`get_backend` whose dependencies are installed."""
    names = []
    for name, cls in _BACKENDS.items():
        try:
            cls()
        except BackendError:
            continue
        names.append(name)
    return names


def get_backend(backend="superlu"):
    """A backend object from its name, or ``backend`` itself if it has ``factorize``."""
    if hasattr(backend, "factorize"):
        return backend
    if backend not in _BACKENDS:
        raise BackendError(f"unknown linear-solver backend {backend!r}; valid: {sorted(_BACKENDS)}")
    return _BACKENDS[backend]()


@dataclass
class SolverStats:
    """Counters of the expensive calls, for tests and benchmarks."""

    factorizations: int = 0
    solve_calls: int = 0
    rhs_solved: int = 0

    def reset(self) -> None:
        self.factorizations = self.solve_calls = self.rhs_solved = 0


class SparseSolver:
    """Factorizations of matrices on one pattern, cached by their values.

    One factorization per distinct values vector is kept (least recently used first out,
    ``cache_size`` of them), so the forward solve, the adjoint solve and every
    Hessian-vector product at one point share it. Values are compared by content, so a
    recomputed but equal values tensor hits the cache.

    ``stats`` counts factorizations and solve calls.
    """

    def __init__(self, pattern: SparsityPattern, backend="superlu", cache_size: int = 4):
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.pattern = pattern
        self.backend = get_backend(backend)
        self.cache_size = cache_size
        self.stats = SolverStats()
        self._cache: OrderedDict[bytes, tuple[np.ndarray, object]] = OrderedDict()

    def factor(self, values: np.ndarray):
        """The (cached) factorization of the matrix with these CSR values."""
        key = _digest(values)
        hit = self._cache.get(key)
        if hit is not None and np.array_equal(hit[0], values):
            self._cache.move_to_end(key)
            return hit[1]
        if not np.all(np.isfinite(values)):
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise NonFiniteError(f"matrix values contain NaN/inf (first at entry {bad}: {values[bad]})")
        factor = self.backend.factorize(self.pattern, values)
        self.stats.factorizations += 1
        self._cache[key] = (values.copy(), factor)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return factor

    def solve(self, values: np.ndarray, rhs: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Solve ``A x = rhs`` (or ``A^T x = rhs``) for ``rhs`` of shape ``(n,)`` or ``(n, k)``."""
        if not np.all(np.isfinite(rhs)):
            raise NonFiniteError("right-hand side contains NaN/inf")
        factor = self.factor(values)
        x = factor.solve(rhs, transpose)
        self.stats.solve_calls += 1
        self.stats.rhs_solved += 1 if rhs.ndim == 1 else rhs.shape[1]
        if not np.all(np.isfinite(x)):
            raise SingularMatrixError("the solution is not finite: the matrix is numerically singular")
        return x

    def clear(self) -> None:
        """Drop every cached factorization."""
        self._cache.clear()


def _digest(values: np.ndarray) -> bytes:
    """A content key of a values vector (equality is re-checked on a hit)."""
    return hashlib.blake2b(np.ascontiguousarray(values).data, digest_size=16).digest()
