"""Differentiable sparse linear solve with exact second-order rules.

``u = sparse_solve(values, b, solver)`` solves ``A(values) u = b`` on the solver's fixed
sparsity pattern. The rules, with ``(i_k, j_k)`` the position of value ``a_k``:

* reverse: ``lambda = A^{-T} u_bar``, ``b_bar = lambda``, ``a_bar_k = -sum_c lambda[i_k, c] u[j_k, c]``.
  It is written with torch ops and a transposed call of this same Function, so the
  backward is itself differentiable and double backward (``jacrev(jacrev)``) is exact;
* forward: ``u_dot = A^{-1} (b_dot - A(a_dot) u)`` (so ``jacfwd`` and ``jvp`` of ``grad``, the
  forward-over-reverse Hessian-vector product, work);
* vmap: a batch of right-hand sides becomes ONE multi-right-hand-side solve on the cached
  factorization; a batch of distinct matrices is factorized once per matrix.

See hIPPYlib's reduced Hessian and ADCME's second-order "PCL" for the same algebra.
"""

from __future__ import annotations

import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

from invfem.errors import ShapeError
from invfem.linalg.backends import SparseSolver


class SparseSolve(torch.autograd.Function):
    """``A(values) x = b`` (``transpose=False``) or ``A(values)^T x = b`` (``transpose=True``)."""

    @staticmethod
    def forward(values, b, solver: SparseSolver, transpose: bool):
        _check_inputs(values, b, solver)
        return solver.solve(values.detach(), b.detach(), transpose)

    @staticmethod
    def setup_context(ctx, inputs, output):
        values, _, solver, transpose = inputs
        ctx.solver, ctx.transpose = solver, transpose
        ctx.save_for_backward(values, output)
        ctx.save_for_forward(values, output)

    @staticmethod
    def backward(ctx, grad_x):
        values, x = ctx.saved_tensors
        lam = SparseSolve.apply(values, grad_x, ctx.solver, not ctx.transpose)
        grad_values = None
        if ctx.needs_input_grad[0]:
            grad_values = -_outer_on_pattern(lam, x, ctx.solver, ctx.transpose)
        return grad_values, lam, None, None

    @staticmethod
    def jvp(ctx, values_dot, b_dot, _solver_dot, _transpose_dot):
        _refuse_nested_forward_mode()
        values, x = ctx.saved_tensors
        rhs = b_dot if b_dot is not None else torch.zeros_like(x)
        if values_dot is not None:
            rhs = rhs - ctx.solver.pattern.to(x.device).matvec(values_dot, x, transpose=ctx.transpose)
        return SparseSolve.apply(values, rhs, ctx.solver, ctx.transpose)

    @staticmethod
    def vmap(info, in_dims, values, b, solver, transpose):
        values_dim, b_dim = in_dims[0], in_dims[1]
        if values_dim is None:
            if b_dim is None:
                return SparseSolve.apply(values, b, solver, transpose), None
            # All right-hand sides against one matrix: one multi-RHS solve.
            stacked = b.movedim(b_dim, -1)
            x = SparseSolve.apply(values, stacked.reshape(stacked.shape[0], -1), solver, transpose)
            return x.reshape(stacked.shape), stacked.ndim - 1
        # Distinct matrices cannot share a factorization: one solve per matrix.
        values = values.movedim(values_dim, 0)
        b = b.movedim(b_dim, 0) if b_dim is not None else b.expand((info.batch_size,) + b.shape)
        return torch.stack([SparseSolve.apply(values[i], b[i], solver, transpose) for i in range(info.batch_size)]), 0


def _refuse_nested_forward_mode() -> None:
    """Raise where a forward-mode rule would be differentiated again by an outer transform.

    PyTorch (2.13; pytorch/pytorch#197867) hands a custom Function's ``jvp`` its saved
    tensors without the outer transform levels, so ``jacfwd(jacfwd(f))`` or
    ``jacrev(jacfwd(f))`` would silently miss terms. Forward-over-reverse
    (``jacfwd(jacrev(f))`` = ``torch.func.hessian``, ``jvp(grad(f))``) and reverse-over-reverse
    are exact and unaffected.
    """
    stack = retrieve_all_functorch_interpreters()
    jvp_levels = [i for i, interp in enumerate(stack) if interp.key() == TransformType.Jvp]
    if jvp_levels and any(interp.key() in (TransformType.Jvp, TransformType.Grad) for interp in stack[:jvp_levels[-1]]):
        raise NotImplementedError(
            "sparse_solve: forward mode nested inside another derivative transform (jacfwd(jacfwd), "
            "jacrev(jacfwd), ...) is not exact in PyTorch (pytorch/pytorch#197867); use "
            "torch.func.hessian / jacfwd(jacrev(f)) or jacrev(jacrev(f)) for second derivatives")


def _outer_on_pattern(lam: torch.Tensor, x: torch.Tensor, solver: SparseSolver, transpose: bool) -> torch.Tensor:
    """``sum_c lam[i_k, c] x[j_k, c]`` for every pattern entry ``k`` (rows/cols swapped for A^T)."""
    pattern = solver.pattern.to(lam.device)
    rows, cols = pattern.rows_t, pattern.cols_t
    if transpose:
        rows, cols = cols, rows
    prod = lam[rows] * x[cols]
    return prod if prod.ndim == 1 else prod.sum(dim=tuple(range(1, prod.ndim)))


def _check_inputs(values: torch.Tensor, b: torch.Tensor, solver: SparseSolver) -> None:
    solver.pattern.check_values(values)
    n = solver.pattern.n
    if b.dtype != torch.float64:
        raise ShapeError(f"right-hand side must be float64, got {b.dtype}")
    if b.ndim not in (1, 2) or b.shape[0] != n:
        raise ShapeError(f"right-hand side must have shape ({n},) or ({n}, k), got {tuple(b.shape)}")


def sparse_solve(values: torch.Tensor, b: torch.Tensor, solver: SparseSolver, transpose: bool = False) -> torch.Tensor:
    """Solve ``A(values) x = b`` (or ``A^T x = b``) differentiably in ``values`` and ``b``.

    Parameters
    ----------
    values : float64 tensor ``(nnz,)``, the matrix entries in ``solver.pattern`` CSR order.
    b : float64 tensor ``(n,)`` or ``(n, k)``.
    solver : :class:`SparseSolver` holding the pattern, backend and factorization cache.
    transpose : solve with ``A^T`` instead of ``A``.

    Works under ``torch.func.grad``, ``jacrev``, ``jacfwd``, ``jvp``, ``vmap`` and
    ``hessian``. Raises :class:`~invfem.errors.PatternMismatchError`,
    :class:`~invfem.errors.ShapeError`, :class:`~invfem.errors.NonFiniteError` or
    :class:`~invfem.errors.SingularMatrixError` on bad input.

    >>> import torch, scipy.sparse as sp
    >>> from invfem.linalg import SparsityPattern, SparseSolver, sparse_solve
    >>> pattern, values = SparsityPattern.from_scipy(sp.diags([2.0, 4.0]))
    >>> sparse_solve(values, torch.tensor([1.0, 1.0], dtype=torch.float64), SparseSolver(pattern))
    tensor([0.5000, 0.2500], dtype=torch.float64)
    """
    if not isinstance(solver, SparseSolver):
        raise TypeError(f"solver must be a SparseSolver, got {type(solver).__name__}")
    if not isinstance(values, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError("values and b must be torch tensors")
    _check_inputs(values, b, solver)
    return SparseSolve.apply(values, b, solver, bool(transpose))


__all__ = ["SparseSolve", "sparse_solve"]
