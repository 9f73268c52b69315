"""Diagnostics of a trained law: its error against a known law, and the Laplace approximation of its
posterior from the exact Hessian."""

from invfem.diagnostics.errors import kappa_error
from invfem.diagnostics.laplace import LaplaceResult, laplace

__all__ = ["LaplaceResult", "kappa_error", "laplace"]
