"""Collocation points for physics-informed losses: Latin hypercube samples of boxes, of their
faces and of space-time cylinders (``scipy.stats.qmc.LatinHypercube``).

A Latin hypercube sample of ``n`` points in ``d`` dimensions puts exactly one point in each of
the ``n`` equal strata of every coordinate (McKay, Beckman & Conover 1979). Reference 001 trains
its heat PINN on 10,000 such points of ``[0, 1]^2 x [0, 5]``, 20 % of them on the boundary, and
tests on 100,000 LHS points of ``[0, 1]^2`` at ``t = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import qmc

from invfem.errors import ConfigError


def _box(lower, upper, name: str = "box") -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = np.asarray(lower, dtype=float).reshape(-1), np.asarray(upper, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: lower and upper must be lists of numbers, got {lower!r}, {upper!r}") from None
    if lo.shape != hi.shape or lo.size == 0:
        raise ConfigError(f"{name}: lower {list(lo)} and upper {list(hi)} must have the same length >= 1")
    if not np.all(np.isfinite(lo)) or not np.all(np.isfinite(hi)) or not np.all(lo < hi):
        raise ConfigError(f"{name}: need finite lower < upper in every coordinate, got {list(lo)}, {list(hi)}")
    return lo, hi


def _count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {n!r}")
    return int(n)


def latin_hypercube(n: int, lower, upper, seed: int = 0) -> torch.Tensor:
    """``n`` Latin hypercube points of the box ``[lower, upper]`` ``(n, d)`` float64 (one point in
    each of the ``n`` strata of every coordinate), reproducible from ``seed``."""
    n = _count(n, "n")
    lo, hi = _box(lower, upper)
    if n == 0:
        return torch.zeros(0, lo.size, dtype=torch.float64)
    unit = qmc.LatinHypercube(d=lo.size, seed=np.random.default_rng(int(seed))).random(n)
    return torch.from_numpy(qmc.scale(unit, lo, hi)).to(torch.float64)


def face_points(n: int, lower, upper, faces, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on the listed faces of the box, Latin hypercube within each face.

    ``faces``: ``(coordinate, side)`` pairs, ``side`` 0 for ``x_coordinate = lower`` and 1 for
    ``upper``. The points are shared among the faces in proportion to their measure (largest
    remainders). Returns the points ``(n, d)`` and the index of each point's face in ``faces``."""
    n = _count(n, "n")
    lo, hi = _box(lower, upper)
    faces = [(int(c), int(s)) for c, s in faces]
    for c, s in faces:
        if not 0 <= c < lo.size or s not in (0, 1):
            raise ConfigError(f"face ({c}, {s}) is not a face of a {lo.size}-dimensional box (coordinate, side 0|1)")
    if not faces:
        raise ConfigError("faces must list at least one (coordinate, side) face")
    measure = np.array([np.prod(np.delete(hi - lo, c)) for c, _ in faces])
    share = n * measure / measure.sum()
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share)[:n - counts.sum()]] += 1       # largest remainders
    points, which = [], []
    for k, ((c, s), m) in enumerate(zip(faces, counts)):
        others = [i for i in range(lo.size) if i != c]
        p = np.empty((m, lo.size))
        if others:
            p[:, others] = latin_hypercube(int(m), lo[others], hi[others], seed=int(seed) * 7919 + k).numpy()
        p[:, c] = hi[c] if s else lo[c]
        points.append(p)
        which.append(np.full(m, k))
    return (torch.from_numpy(np.concatenate(points)).to(torch.float64),
            torch.from_numpy(np.concatenate(which)).to(torch.long))


@dataclass(frozen=True)
class SpaceTimePoints:
    """Collocation points of ``box x (0, t_final)``: ``interior`` ``(n_i, d + 1)`` (time last),
    ``boundary`` on the spatial faces ``(n_b, d + 1)`` with ``face`` their face index (into
    ``faces``), ``initial`` at ``t = 0`` ``(n_0, d + 1)``."""

    interior: torch.Tensor
    boundary: torch.Tensor
    face: torch.Tensor
    faces: tuple
    initial: torch.Tensor

    @property
    def n_points(self) -> int:
        return self.interior.shape[0] + self.boundary.shape[0] + self.initial.shape[0]


def space_time_points(n: int, lower, upper, t_final: float, boundary_fraction: float = 0.2,
                      initial_share: float = 0.5, seed: int = 0) -> SpaceTimePoints:
    """``n`` collocation points of the space-time cylinder ``[lower, upper] x [0, t_final]``:
    ``round(boundary_fraction n)`` on its boundary (reference 001: 20 %), of which
    ``initial_share`` at ``t = 0`` and the rest on the spatial faces (by their measure), and the
    others inside; each set a Latin hypercube sample of its own (``seed``)."""
    n = _count(n, "n")
    lo, hi = _box(lower, upper)
    for name, value in (("boundary_fraction", boundary_fraction), ("initial_share", initial_share)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    if isinstance(t_final, bool) or not isinstance(t_final, (int, float)) or not t_final > 0:
        raise ConfigError(f"t_final must be a number > 0, got {t_final!r}")
    n_boundary = int(round(boundary_fraction * n))
    n_initial = int(round(initial_share * n_boundary))
    d = lo.size
    full_lo, full_hi = np.append(lo, 0.0), np.append(hi, float(t_final))
    faces = tuple((c, s) for c in range(d) for s in (0, 1))
    interior = latin_hypercube(n - n_boundary, full_lo, full_hi, seed=seed)
    boundary, face = face_points(n_boundary - n_initial, full_lo, full_hi, faces, seed=seed + 1)
    initial, _ = face_points(n_initial, full_lo, full_hi, [(d, 0)], seed=seed + 2)
    return SpaceTimePoints(interior, boundary, face, faces, initial)
