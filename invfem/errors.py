"""Specific exceptions raised by invfem.

Every error names the bad value it found, so that a failing run says what to fix.
"""

from __future__ import annotations


class InvfemError(Exception):
    """Base class of all invfem errors."""


class ShapeError(InvfemError, ValueError):
    """An array has the wrong shape or dtype for the operation."""


class PatternMismatchError(InvfemError, ValueError):
    """Matrix values do not match the sparsity pattern they are used with."""


class NonFiniteError(InvfemError, ValueError):
    """An input or a result holds NaN or inf."""


class SingularMatrixError(InvfemError, ArithmeticError):
    """A sparse matrix could not be factorized, or its solve is not finite."""


class BackendError(InvfemError, ValueError):
    """An unknown or unavailable linear-solver backend was requested."""


class ConvergenceError(InvfemError, RuntimeError):
    """An iterative solve (Newton, say) did not reach its tolerance."""


class ConfigError(InvfemError, ValueError):
    """An experiment configuration or an options set holds an invalid entry."""


class InvalidTrialPoint(InvfemError, ValueError):
    """The loss is not defined at this point (a physical constraint is violated).

    Optimizers treat it like a NaN loss at a trial point: the step is rejected (the trust
    radius shrinks) and the history counts it (``invalid_trials``). At the start point, or
    outside an optimizer, it is an error.
    """


class NonPositiveCoefficientError(InvalidTrialPoint):
    """An assembled coefficient (kappa at a quadrature point) is <= 0: the operator is not elliptic."""


class NoStateError(InvalidTrialPoint):
    """The forward problem has no computable solution at these parameters (Newton failed, the
    matrix is singular): the loss is undefined there."""


class FolderInUse(InvfemError, RuntimeError):
    """An output folder another live process holds (its lock file names the host and pid)."""
