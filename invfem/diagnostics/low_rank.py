"""The dominant eigenpairs of a problem's exact Hessian from Hessian-vector products, without the P x P matrix.

The eigensolver is :func:`invfem.linalg.low_rank.randomized_eigh` (randomized double pass with the
a-posteriori error estimates; its docstring). The products are the problem's own
(:func:`invfem.structured.hessian_path`): in blocks of ``k`` directions through the closed-form
network passes where the problem has them, the network's state at ``theta`` computed once.
"""

from __future__ import annotations

import torch

from invfem.linalg.low_rank import LowRankHessian, randomized_eigh
from invfem.structured import hessian_path

__all__ = ["LowRankHessian", "low_rank_hessian", "randomized_eigh"]


def low_rank_hessian(problem, theta: torch.Tensor, rank: int, oversample: int = 10, power_iterations: int = 1,
                     seed: int = 0, n_probes: int = 10, misfit: bool = False, passes: int = 2) -> LowRankHessian:
    """The ``rank`` dominant eigenpairs of the exact Hessian of ``problem.loss`` at ``theta`` from
    exact Hessian-vector products (the problem's :attr:`~invfem.structured.HessianPath.operator`,
    on blocks), never forming the P x P matrix; ``misfit=True``: of the data misfit's Hessian (the
    prior's ``2 alpha I`` taken off); ``passes=1``: the single-pass eigensolver (``rank + oversample +
    n_probes`` products; :func:`~invfem.linalg.low_rank.randomized_eigh`)."""
    theta = theta.detach()
    shift = 2.0 * problem.regularization if misfit else 0.0
    product = hessian_path(problem).operator(theta)

    def apply(block):
        out = product(block.contiguous())
        return out - shift * block if shift else out

    return randomized_eigh(apply, theta.numel(), rank, oversample, power_iterations, seed, n_probes,
                           dtype=theta.dtype, device=theta.device, passes=passes)
