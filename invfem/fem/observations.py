"""Observations of a FE field: point values through scikit-fem's ``Basis.probes``, and data files.

``point_observation(space, points)`` is the sparse operator ``B`` with ``(B u)_i = u_h(x_i)``
(the FE interpolant at arbitrary points; a constant in every derivative).
``read_observations(path)`` loads a CSV or NPZ file with columns ``x, y, u`` (steady) or
``t, x, y, u`` (transient) and an optional ``sigma`` per row, validated row by row;
``transient_observation`` maps timed observations onto a trajectory's flattened states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from invfem.errors import ConfigError
from invfem.fem.space import FunctionSpace
from invfem.misfit import LinearObservation


def point_observation(space: FunctionSpace, points) -> LinearObservation:
    """``B`` with ``(B u)_i`` the FE field ``u`` at ``points[i]`` (``(n, 2)``); ConfigError naming the
    first point outside the mesh."""
    points = np.asarray(torch.as_tensor(points, dtype=torch.float64).cpu(), dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ConfigError(f"observation points must have shape (n, 2), got {points.shape}")
    try:
        probes = space.basis.probes(points.T).tocoo()
    except ValueError:
        finder = space.mesh.element_finder()
        for i, (x, y) in enumerate(points):
            try:
                finder(np.array([x]), np.array([y]))
            except ValueError:
                raise ConfigError(f"observation point ({x:.6g}, {y:.6g}) (number {i + 1}) lies outside the mesh") from None
        raise
    t = lambda a, dtype: torch.as_tensor(np.asarray(a), dtype=dtype, device=space.device)
    return LinearObservation(t(probes.row, torch.int64), t(probes.col, torch.int64), t(probes.data, torch.float64),
                             points.shape[0])


def nodal_observation(dofs) -> LinearObservation:
    """Full-field (or partial nodal) observations: ``(B u)_i = u[dofs[i]]``."""
    return LinearObservation.entries(torch.as_tensor(dofs))


@dataclass(frozen=True)
class ObservationData:
    """Rows of an observation file: ``points (n, 2)``, ``values (n,)``, optional ``sigma (n,)``
    and ``times (n,)`` (transient), and the file they came from."""

    points: np.ndarray
    values: np.ndarray
    sigma: np.ndarray | None
    times: np.ndarray | None
    source: str


def read_observations(path, transient: bool = False) -> ObservationData:
    """Observations from a CSV (header row with the column names) or NPZ (one array per column).

    Columns: ``x, y, u`` (steady) or ``t, x, y, u`` (``transient``), optional ``sigma`` (> 0).
    NaN/inf or a non-positive sigma is a ConfigError naming the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"observation file not found: {path}")
    required = ("t", "x", "y", "u") if transient else ("x", "y", "u")
    columns = _read_columns(path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}; found {sorted(columns)} (need {list(required)}"
                          f"{' and optionally sigma' if 'sigma' not in columns else ''})")
    wanted = required + (("sigma",) if "sigma" in columns else ())
    table = np.stack([np.asarray(columns[c], dtype=np.float64).reshape(-1) for c in wanted], axis=1)
    if table.shape[0] == 0:
        raise ConfigError(f"{path}: no observations")
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"{path}: row {row + 1}: {wanted[col]} is {table[row, col]} (every value must be finite)")
    sigma = table[:, len(required)] if "sigma" in columns else None
    if sigma is not None and (sigma <= 0).any():
        row = int(np.flatnonzero(sigma <= 0)[0])
        raise ConfigError(f"{path}: row {row + 1}: sigma is {sigma[row]} (must be > 0)")
    offset = 1 if transient else 0
    return ObservationData(points=table[:, offset:offset + 2], values=table[:, offset + 2], sigma=sigma,
                           times=table[:, 0] if transient else None, source=str(path))


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    if path.suffix.lower() == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    if path.suffix.lower() not in (".csv", ".txt"):
        raise ConfigError(f"{path}: observation files are .csv or .npz, got {path.suffix!r}")
    with open(path) as f:
        header = f.readline()
    names = [h.strip() for h in header.strip().split(",")]
    if not names or any(not n for n in names):
        raise ConfigError(f"{path}: the first line must name the columns, e.g. 'x,y,u'")
    try:
        rows = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64, ndmin=2,
                             invalid_raise=True, filling_values=np.nan)
    except ValueError as exc:
        raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from None
    if rows.size and rows.shape[1] != len(names):
        raise ConfigError(f"{path}: {rows.shape[1]} values per row but {len(names)} column names")
    return {name: rows[:, i] for i, name in enumerate(names)} if rows.size else {name: np.zeros(0) for name in names}


def transient_observation(space: FunctionSpace, data: ObservationData, steps: torch.Tensor, n_dofs: int
                          ) -> tuple[LinearObservation, np.ndarray]:
    """``B`` on the flattened trajectory ``(n_steps + 1, n_dofs)`` for timed point observations,
    and the row order of ``data`` it follows. ``steps[i]``: the time step of row ``i``."""
    steps = torch.as_tensor(steps).cpu().numpy()
    parts, order = [], []
    for k in np.unique(steps):
        rows = np.flatnonzero(steps == k)
        parts.append(point_observation(space, data.points[rows]).shifted(int(k) * n_dofs))
        order.append(rows)
    return LinearObservation.stack(parts), np.concatenate(order)
