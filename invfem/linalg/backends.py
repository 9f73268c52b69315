"""Sparse direct-solver backends and the factorization cache.

A backend turns CSR values (a float64 tensor on a :class:`SparsityPattern`) into a
factorization whose ``solve(rhs, transpose)`` takes one right-hand side ``(n,)`` or many
``(n, k)`` and returns the solution on the right-hand side's device. Backends are chosen
by name (:func:`available_backends`) or passed as objects, never hard-coded in the solve
layer.

* ``"auto"`` (default): on the host, CHOLMOD for symmetric values when ``cholespy`` is
  installed (supernodal, several times faster than SuperLU on many right-hand sides),
  SuperLU otherwise or when CHOLMOD finds the matrix indefinite; for values on a GPU, a
  dense factorization on the GPU up to ``dense_limit`` unknowns, the host beyond.
* ``"superlu"``: ``scipy.sparse.linalg.splu``, any non-singular matrix (host).
* ``"cholmod"``: CHOLMOD through ``cholespy``, symmetric positive definite only (host).
* ``"dense"``: ``torch.linalg`` Cholesky (LU where that fails) on the values' device —
  the GPU path (``torch.sparse.spsolve`` needs cuDSS, which torch wheels lack), and a
  reference on the CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla
import torch

from invfem.errors import BackendError, NonFiniteError, SingularMatrixError
from invfem.linalg.pattern import SparsityPattern


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


class _HostFactor:
    """A factorization on the host: tensors go to numpy and back to the right-hand side's device."""

    def solve(self, rhs: torch.Tensor, transpose: bool) -> torch.Tensor:
        x = self._solve(np.ascontiguousarray(_host(rhs)), transpose)
        return torch.from_numpy(np.ascontiguousarray(x)).to(rhs.device)


class SuperLUFactor(_HostFactor):
    """LU factors from SuperLU; ``solve`` handles ``A`` and ``A^T`` with one factorization."""

    def __init__(self, pattern: SparsityPattern, values: torch.Tensor, permc_spec: str):
        matrix = pattern.to_scipy(values).tocsc()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", spla.MatrixRankWarning)
                self._lu = spla.splu(matrix, permc_spec=permc_spec)
        except (RuntimeError, spla.MatrixRankWarning) as exc:
            raise SingularMatrixError(f"SuperLU could not factorize the {pattern.n}x{pattern.n} matrix: {exc}") from exc

    def _solve(self, rhs: np.ndarray, transpose: bool) -> np.ndarray:
        return self._lu.solve(rhs, trans="T" if transpose else "N")


class CholmodFactor(_HostFactor):
    """Sparse Cholesky factor from CHOLMOD (``cholespy``); the matrix must be SPD."""

    def __init__(self, pattern: SparsityPattern, values: torch.Tensor):
        import cholespy  # optional dependency, checked by CholmodBackend

        try:
            self._chol = cholespy.CholeskySolverD(
                pattern.n, pattern.indptr.astype(np.int32), pattern.indices.astype(np.int32),
                np.ascontiguousarray(_host(values)), cholespy.MatrixType.CSR)
        except (RuntimeError, ValueError) as exc:
            raise SingularMatrixError(f"CHOLMOD could not factorize the {pattern.n}x{pattern.n} matrix "
                                      f"(not positive definite?): {exc}") from exc

    def _solve(self, rhs: np.ndarray, transpose: bool) -> np.ndarray:
        # A is symmetric, so A^T x = b is the same solve.
        x = np.zeros_like(rhs)
        self._chol.solve(rhs, x)
        return x


class DenseFactor:
    """Dense Cholesky (or LU when the matrix is not SPD) with ``torch.linalg`` on the values' device."""

    def __init__(self, pattern: SparsityPattern, values: torch.Tensor):
        matrix = pattern.to(values.device).to_dense(values.detach())
        chol, info = torch.linalg.cholesky_ex(matrix)
        self._chol = chol if int(info) == 0 and _symmetric(matrix) else None
        if self._chol is None:
            self._lu, pivots, info = torch.linalg.lu_factor_ex(matrix)
            if int(info) != 0:
                raise SingularMatrixError(f"dense LU of the {pattern.n}x{pattern.n} matrix failed: singular "
                                          f"(zero pivot {int(info)})")
            self._pivots = pivots

    def solve(self, rhs: torch.Tensor, transpose: bool) -> torch.Tensor:
        b = rhs.to(self._chol.device if self._chol is not None else self._lu.device)
        b2 = b[:, None] if b.ndim == 1 else b
        if self._chol is not None:
            x = torch.cholesky_solve(b2, self._chol)
        else:
            x = torch.linalg.lu_solve(self._lu, self._pivots, b2, adjoint=transpose)
        return (x[:, 0] if b.ndim == 1 else x).to(rhs.device)


def _symmetric(matrix: torch.Tensor) -> bool:
    return bool(torch.allclose(matrix, matrix.T, rtol=1e-12, atol=0.0))


@dataclass(frozen=True)
class SuperLUBackend:
    """SuperLU (scipy). ``permc_spec`` is SuperLU's column ordering."""

    permc_spec: str = "COLAMD"
    name: str = "superlu"

    def factorize(self, pattern: SparsityPattern, values: torch.Tensor) -> SuperLUFactor:
        return SuperLUFactor(pattern, values, self.permc_spec)


@dataclass(frozen=True)
class CholmodBackend:
    """CHOLMOD supernodal Cholesky through ``cholespy``: SPD matrices only."""

    name: str = "cholmod"

    def __post_init__(self):
        if not _has_cholespy():
            raise BackendError("backend 'cholmod' needs the package cholespy: pip install cholespy")

    def factorize(self, pattern: SparsityPattern, values: torch.Tensor) -> CholmodFactor:
        return CholmodFactor(pattern, values)


@dataclass(frozen=True)
class DenseBackend:
    """Dense ``torch.linalg`` factorization on the device of the values (the GPU path)."""

    name: str = "dense"

    def factorize(self, pattern: SparsityPattern, values: torch.Tensor) -> DenseFactor:
        return DenseFactor(pattern, values)


@dataclass(frozen=True)
class AutoBackend:
    """The fastest backend that applies (module docstring). ``dense_limit``: the largest
    system factorized densely on a GPU (a dense 20000 x 20000 float64 matrix is 3.2 GB)."""

    dense_limit: int = 20000
    name: str = "auto"

    def factorize(self, pattern: SparsityPattern, values: torch.Tensor):
        if values.device.type != "cpu" and pattern.n <= self.dense_limit:
            return DenseFactor(pattern, values)
        if _has_cholespy() and pattern.is_symmetric() and _symmetric_values(pattern, values):
            try:
                with _quiet_c_output():       # CHOLMOD prints "not positive definite" before raising
                    return CholmodFactor(pattern, values)
            except SingularMatrixError:
                pass                      # symmetric but indefinite: LU below
        return SuperLUFactor(pattern, values, "COLAMD")


@contextlib.contextmanager
def _quiet_c_output():
    """Silence what C code writes to stdout/stderr (file descriptors 1 and 2) for the duration."""
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:            # no usable descriptors: nothing to silence
        yield
        return
    libc = ctypes.CDLL(None)
    try:
        with open(os.devnull, "w") as devnull:
            libc.fflush(None)
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                libc.fflush(None)        # C stdio buffers go to /dev/null, not to the restored stream
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _symmetric_values(pattern: SparsityPattern, values: torch.Tensor) -> bool:
    transposed = values[pattern.transpose_index().to(values.device)]
    return bool(torch.allclose(values, transposed, rtol=1e-12, atol=0.0))


_BACKENDS = {"auto": AutoBackend, "superlu": SuperLUBackend, "cholmod": CholmodBackend, "dense": DenseBackend}


def _has_cholespy() -> bool:
    try:
        import cholespy  # noqa: F401
    except ImportError:
        return False
    return True


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


def get_backend(backend="auto"):
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
    recomputed but equal values tensor hits the cache. Values and right-hand sides are
    tensors on any device; solutions come back on the right-hand side's device.

    ``stats`` counts factorizations and solve calls.
    """

    def __init__(self, pattern: SparsityPattern, backend="auto", cache_size: int = 4):
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self.pattern = pattern
        self.backend = get_backend(backend)
        self.cache_size = cache_size
        self.stats = SolverStats()
        self._cache: OrderedDict[bytes, tuple[np.ndarray, object]] = OrderedDict()

    def factor(self, values: torch.Tensor):
        """The (cached) factorization of the matrix with these CSR values."""
        host = _host(values)
        key = _digest(host)
        hit = self._cache.get(key)
        if hit is not None and np.array_equal(hit[0], host):
            self._cache.move_to_end(key)
            return hit[1]
        if not np.all(np.isfinite(host)):
            bad = int(np.flatnonzero(~np.isfinite(host))[0])
            raise NonFiniteError(f"matrix values contain NaN/inf (first at entry {bad}: {host[bad]})")
        factor = self.backend.factorize(self.pattern, values.detach())
        self.stats.factorizations += 1
        self._cache[key] = (host.copy(), factor)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return factor

    def solve(self, values: torch.Tensor, rhs: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """Solve ``A x = rhs`` (or ``A^T x = rhs``) for ``rhs`` of shape ``(n,)`` or ``(n, k)``."""
        values, rhs = torch.as_tensor(values), torch.as_tensor(rhs)
        if not all_finite(rhs):
            raise NonFiniteError("right-hand side contains NaN/inf")
        factor = self.factor(values)
        x = factor.solve(rhs.detach(), transpose)
        self.stats.solve_calls += 1
        self.stats.rhs_solved += 1 if rhs.ndim == 1 else rhs.shape[1]
        if not all_finite(x):
            raise SingularMatrixError("the solution is not finite: the matrix is numerically singular")
        return x

    def clear(self) -> None:
        """Drop every cached factorization."""
        self._cache.clear()


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry is finite: one reduction (a sum is NaN/inf iff an entry is, barring
    overflow, which the exact elementwise check then rules out)."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _digest(values: np.ndarray) -> bytes:
    """A content key of a values vector (equality is re-checked on a hit)."""
    return hashlib.blake2b(np.ascontiguousarray(values).data, digest_size=16).digest()
