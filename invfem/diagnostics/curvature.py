"""What the Hessian says about a point and a step (reference 000's diagnostics).

- :func:`spectrum`: eigenvalues and their sign counts at +-eps lambda_max (eps = 1e-6, the
  reference's threshold: eigenvalues within it count as zero).
- :func:`step_angles`: cos theta1 = -p.g / (|p| |g|) (the step against steepest descent) and
  cos theta2 = p.q / (|p| |q|) (against the Newton direction q = -H^+ g, the pseudo-inverse
  without the eigenvalues within eps lambda_max of zero), with whether H is indefinite there.
- :func:`loss_profile` / :func:`eigen_profiles`: F(alpha) = L(theta + alpha v) along a
  direction, and along the eigenvectors of lambda_min and lambda_max.

Each takes the dense Hessian or, above the size where the P x P matrix is not formed, its
dominant eigenpairs (a :class:`~invfem.linalg.low_rank.LowRankHessian`): the spectrum and its
counts are then those of the pairs (``rank`` says how many), the profiles run along the pairs'
extreme eigenvectors and the Newton direction is the pseudo-inverse on the pairs' span.
"""

from __future__ import annotations

import numpy as np
import torch

from invfem.derivatives import symmetry_error
from invfem.errors import ConfigError, NonFiniteError
from invfem.linalg.low_rank import LowRankHessian


def _eigenpairs(h) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lambda ascending, vectors)`` of a dense Hessian's symmetric part or of a LowRankHessian's pairs."""
    if isinstance(h, LowRankHessian):
        order = torch.argsort(h.eigenvalues)
        return h.eigenvalues[order], h.vectors[:, order]
    return torch.linalg.eigh(0.5 * (h + h.T))


def spectrum(h: torch.Tensor, eps: float = 1e-6) -> dict:
    """Eigenvalues (ascending) of the symmetric part of ``h`` and the counts of those above
    ``eps |lambda|_max`` (positive), below ``-eps |lambda|_max`` (negative) and in between (zero).
    NonFiniteError for a Hessian that holds NaN or inf (it has no spectrum). A LowRankHessian: its
    pairs' eigenvalues and counts, with ``rank`` (and no symmetry error: it is symmetric by construction)."""
    if isinstance(h, LowRankHessian):
        eig = torch.sort(h.eigenvalues).values.cpu().numpy()
        extra = {"rank": int(eig.size), "error_estimate": h.error_estimate}
    else:
        if not bool(torch.isfinite(h).all()):
            raise NonFiniteError(f"the Hessian ({h.shape[0]}x{h.shape[0]}) holds {int((~torch.isfinite(h)).sum())} "
                                 "NaN or inf entries: no spectrum")
        eig = torch.linalg.eigvalsh(0.5 * (h + h.T)).cpu().numpy()
        extra = {"symmetry_error": symmetry_error(h)}
    cut = eps * np.abs(eig).max() if eig.size else 0.0
    n_pos, n_neg = int((eig > cut).sum()), int((eig < -cut).sum())
    return {"eigenvalues": eig.tolist(), "n_positive": n_pos, "n_negative": n_neg, "n_zero": int(eig.size - n_pos - n_neg),
            "lambda_min": float(eig[0]), "lambda_max": float(eig[-1]), "eps": eps, **extra}


def step_angles(p: torch.Tensor, g: torch.Tensor, h: torch.Tensor, rcond: float = 1e-6) -> dict:
    """cos theta1 and cos theta2 of the step ``p`` taken from a point with gradient ``g`` and
    Hessian ``h``; ``indefinite`` when h has a negative eigenvalue (below -rcond |lambda|_max).

    The Newton direction uses the pseudo-inverse with eigenvalues within ``rcond |lambda|_max``
    of zero dropped — the sign counts' threshold: with the true inverse of a network Hessian,
    whose smallest eigenvalues are ~1e-12 of the largest, q is all near-null directions and
    cos theta2 ~ 0 for every step (measured), which says nothing about the step."""
    lam, vectors = _eigenpairs(h)
    p, g = p.reshape(-1).to(vectors), g.reshape(-1).to(vectors)
    cut = rcond * lam.abs().max()
    inverse = torch.where(lam.abs() > cut, 1.0 / lam, torch.zeros_like(lam))
    q = -(vectors * inverse) @ (vectors.T @ g)                       # -H^+ g
    cos = lambda a, b: float(a @ b / (torch.linalg.norm(a) * torch.linalg.norm(b))) \
        if float(torch.linalg.norm(a)) > 0 and float(torch.linalg.norm(b)) > 0 else float("nan")
    return {"cos_theta1": cos(p, -g), "cos_theta2": cos(p, q), "indefinite": bool(lam[0] < -cut),
            "singular": bool((lam.abs() <= cut).any())}


def loss_profile(loss, theta: torch.Tensor, direction: torch.Tensor, alphas) -> np.ndarray:
    """F(alpha) = loss(theta + alpha direction / |direction|) at each alpha (NaN where the loss is undefined)."""
    d = direction / torch.linalg.norm(direction)
    out = []
    with torch.no_grad():
        for a in alphas:
            try:
                out.append(float(loss(theta + float(a) * d)))
            except Exception:   # an undefined point on the line (kappa <= 0, no Newton solution): a gap
                out.append(float("nan"))
    return np.array(out)


def eigen_profiles(loss, theta: torch.Tensor, h: torch.Tensor, alphas) -> dict:
    """The loss along the unit eigenvectors of lambda_min and lambda_max of ``h`` at ``theta``."""
    lam, vectors = _eigenpairs(h)
    alphas = np.asarray(alphas, dtype=np.float64)
    return {"alphas": alphas.tolist(),
            "lambda_min": float(lam[0]), "f_min": loss_profile(loss, theta, vectors[:, 0], alphas).tolist(),
            "lambda_max": float(lam[-1]), "f_max": loss_profile(loss, theta, vectors[:, -1], alphas).tolist()}


def definite_fraction(n: int, trials: int, seed: int = 0, batch: int = 20000) -> dict:
    """Reference 002's Eq. 13: how often a random symmetric ``n x n`` matrix with independent
    N(0, 1) components (the upper triangle and diagonal drawn, mirrored) has eigenvalues of one
    sign. Returns ``{"n", "trials", "positive", "negative", "fraction"}`` (counts of all-positive
    and all-negative spectra, and their share of ``trials``), reproducible from ``seed``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a whole number >= 1, got {n!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials must be a whole number >= 1, got {trials!r}")
    gen = torch.Generator().manual_seed(int(seed))
    positive = negative = done = 0
    while done < trials:
        m = min(int(batch), trials - done)
        a = torch.randn(m, n, n, generator=gen, dtype=torch.float64).triu()
        a = a + a.triu(1).transpose(1, 2)                              # mirror the strict upper triangle
        ev = torch.linalg.eigvalsh(a)
        positive += int((ev[:, 0] > 0).sum())
        negative += int((ev[:, -1] < 0).sum())
        done += m
    return {"n": n, "trials": trials, "positive": positive, "negative": negative,
            "fraction": (positive + negative) / trials}
