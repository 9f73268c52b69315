"""Sparse linear algebra with exact first- and second-order derivative rules."""

from invfem.linalg.backends import (CholmodBackend, SolverStats, SparseSolver, SuperLUBackend,
                                    available_backends, get_backend)
from invfem.linalg.pattern import SparsityPattern
from invfem.linalg.solve import SparseSolve, sparse_solve

__all__ = ["CholmodBackend", "SolverStats", "SparseSolver", "SuperLUBackend", "SparsityPattern",
           "SparseSolve", "available_backends", "get_backend", "sparse_solve"]
