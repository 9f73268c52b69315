"""invfem: PDE-constrained inverse problems with neural-network coefficients and exact Hessians.

The data path: theta -> kappa_theta at quadrature points (:mod:`invfem.nn`) -> CSR values of
A(kappa) (:mod:`invfem.fem`) -> u = A^{-1} b (:mod:`invfem.linalg`) -> loss -> gradient,
Hessian-vector product, full Hessian (:mod:`invfem.derivatives`) -> optimizer (:mod:`invfem.optim`).
"""

from invfem.derivatives import hessian, hvp, symmetry_error, taylor_test, value_and_grad
from invfem.errors import (BackendError, ConfigError, ConvergenceError, InvalidTrialPoint, InvfemError,
                           NonFiniteError, NonPositiveCoefficientError, PatternMismatchError, ShapeError,
                           SingularMatrixError)
from invfem.law import LearnedLaw, load_kappa, save_kappa
from invfem.linalg import SparseSolver, SparsityPattern, sparse_solve
from invfem.nn import MLP
from invfem.optim import OptimizeResult, minimize
from invfem.problem import Problem
from invfem.runtime import reuse_freed_memory

__version__ = "0.1.0"

__all__ = ["BackendError", "ConfigError", "ConvergenceError", "InvalidTrialPoint", "InvfemError", "LearnedLaw", "MLP",
           "NonFiniteError", "NonPositiveCoefficientError",
           "OptimizeResult", "PatternMismatchError", "Problem", "ShapeError", "SingularMatrixError", "SparseSolver",
           "SparsityPattern", "hessian", "hvp", "load_kappa", "minimize", "reuse_freed_memory", "save_kappa",
           "sparse_solve", "symmetry_error", "taylor_test", "value_and_grad"]
