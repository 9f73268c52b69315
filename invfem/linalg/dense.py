"""Dense products of the structured Hessians."""

from __future__ import annotations

import torch

# Inner dimension up to which a^T b + b^T a is ONE product with inner dimension 2k rather than a
# product and a transposed sum. The sum's transposed reads cost a few passes over the P x P
# result (2.9 ms at P = 921 on 2 cores of the GPU host, 4.9 ms on the 2-core VM); the second
# product costs 2 k P^2 flops more (11 and 40 microseconds per unit of k there): break-even at
# k ~ 250 and ~ 120.
ONE_PRODUCT_LIMIT = 128


def symmetric_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^T b + b^T a`` for ``a, b`` of shape ``(k, P)`` (the reduced Hessian's ``S^T Y + Y^T S``),
    by the cheaper of the two forms above; symmetric to round-off."""
    if a.shape[0] <= ONE_PRODUCT_LIMIT:
        return torch.cat([a, b]).T @ torch.cat([b, a])
    h = a.T @ b
    return h + h.T
