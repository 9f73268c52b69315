"""The dominant eigenpairs of a symmetric operator from its products with blocks of vectors.

A randomized double-pass eigensolver (Halko, Martinsson & Tropp, SIAM Review 2011, Alg. 4.3
with power iterations and Alg. 5.3; the estimator of hIPPYlib's low-rank Laplace): ``k = r + p``
Gaussian directions ``Omega``, ``Y = H Omega`` (``q`` power iterations ``Y <- H Q(Y)`` sharpen a
slowly decaying spectrum), ``Q = orth(Y)``, the small ``T = Q^T H Q``, its eigenpairs
``T = S Lambda S^T``, and ``H ~ U Lambda U^T`` with ``U = Q S``, the ``r`` of largest ``|lambda|``
kept. Cost: ``k (q + 2) + m`` products (``H U = (H Q) S`` comes with the last pass) and ``O(P k^2)``
for the orthogonalizations; memory ``O(P k)``. Used by :func:`invfem.diagnostics.low_rank_hessian`
(spectra, identifiability, Laplace without the P x P matrix) and by the low-rank preconditioner of
trust-ncg (:mod:`invfem.optim.steps`).

Its accuracy, two ways:

- per eigenpair, the residual ``||H u_i - lambda_i u_i||`` (from ``H Q``, no more HVPs): for a symmetric
  ``H`` some eigenvalue of ``H`` lies within it of ``lambda_i`` (Krylov–Weinstein), a bound
  that holds always and is sharp for well-separated eigenvalues;
- for the whole approximation (Halko et al., Eq. 4.3): with ``m`` Gaussian probes ``w_i``,
  ``||H - U Lambda U^T|| <= 10 sqrt(2/pi) max_i ||(H - U Lambda U^T) w_i||`` with probability at
  least ``1 - 10^-m``; conservative (the factor 8) but it also covers what the rank left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from invfem.errors import ConfigError


@dataclass(frozen=True, eq=False)
class LowRankHessian:
    """``H ~ vectors diag(eigenvalues) vectors^T``.

    Attributes
    ----------
    eigenvalues : ``(r,)``, largest ``|lambda|`` first.
    vectors : ``(P, r)`` orthonormal.
    error_estimate : an upper bound of ``||H - U Lambda U^T||_2`` holding with probability at
        least ``1 - 10^-n_probes`` (module docstring).
    eigenvalue_errors : ``(r,)`` residual norms ``||H u_i - lambda_i u_i||``: an eigenvalue of H lies
        within each of its ``lambda_i``.
    n_hvp : Hessian-vector products spent.
    """

    eigenvalues: torch.Tensor
    vectors: torch.Tensor
    error_estimate: float
    n_hvp: int
    n_probes: int
    eigenvalue_errors: torch.Tensor

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``U Lambda U^T v``."""
        return self.vectors @ (self.eigenvalues * (self.vectors.T @ v))


def randomized_eigh(apply, n: int, rank: int, oversample: int = 10, power_iterations: int = 1, seed: int = 0,
                    n_probes: int = 10, dtype=torch.float64, device=None, passes: int = 2) -> LowRankHessian:
    """The ``rank`` dominant eigenpairs of the symmetric operator ``apply`` (``(n, k) -> (n, k)``
    on blocks of columns), with the a-posteriori error estimate of the module docstring.

    ``passes=1``: the single-pass variant (Halko et al. 2011, §5.5): from ``Y = H Omega`` alone,
    ``Q = orth(Y)`` and the small ``B = Q^T H Q`` from ``B (Q^T Omega) = Q^T Y`` (least squares,
    symmetrised): ``k + m`` products instead of ``k (q + 2) + m``, less accurate where the spectrum
    decays slowly. There are no pair residuals then (they need ``H Q``): ``eigenvalue_errors`` is the
    norm estimate for every pair (Weyl: the i-th eigenvalue of H lies within it), so it needs probes.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConfigError(f"rank must be an integer >= 1, got {rank!r}")
    if passes not in (1, 2):
        raise ConfigError(f"passes must be 1 or 2, got {passes!r}")
    if passes == 1 and (int(power_iterations) or not n_probes):
        raise ConfigError("the single-pass eigensolver (passes: 1) takes no power iterations and needs n_probes >= 1 "
                          "(its only error estimate)")
    k = min(n, rank + max(0, int(oversample)))
    gen = torch.Generator().manual_seed(int(seed))
    omega = torch.randn(n, k, generator=gen, dtype=dtype).to(device)
    y = apply(omega)
    count = k
    for _ in range(int(power_iterations)):
        q = torch.linalg.qr(y).Q
        y = apply(q)
        count += k
    q = torch.linalg.qr(y).Q
    if passes == 2:
        hq = apply(q)
        count += k
        t = q.T @ hq
    else:                                   # B C = D, C = Q^T Omega, D = Q^T Y:  C^T B^T = D^T
        t = torch.linalg.lstsq((q.T @ omega).T, (q.T @ y).T).solution.T
    lam, s = torch.linalg.eigh(0.5 * (t + t.T))
    order = torch.argsort(lam.abs(), descending=True)[:min(rank, k)]
    lam, u = lam[order], q @ s[:, order]
    estimate = float("nan")
    if n_probes:
        probes = torch.randn(n, int(n_probes), generator=gen, dtype=dtype).to(device)
        residual = apply(probes) - u @ (lam[:, None] * (u.T @ probes))
        count += int(n_probes)
        estimate = 10.0 * math.sqrt(2.0 / math.pi) * float(residual.norm(dim=0).max())
    if passes == 2:
        pair_errors = (hq @ s[:, order] - u * lam).norm(dim=0)       # H u = (H Q) S: no more products
    else:
        pair_errors = torch.full_like(lam, estimate)
    return LowRankHessian(eigenvalues=lam, vectors=u, error_estimate=estimate, n_hvp=count, n_probes=int(n_probes),
                          eigenvalue_errors=pair_errors)
