"""Observations of a FE field: point values through scikit-fem's ``Basis.probes``, and data files.

``point_observation(space, points)`` is the sparse operator ``B`` with ``(B u)_i = u_h(x_i)``
(the FE interpolant at arbitrary points; a constant in every derivative).
``read_observations(path)`` loads a CSV or NPZ file with columns ``x, y, u`` (steady) or
``t, x, y, u`` (transient) and an optional ``sigma`` per row, validated row by row;
``transient_observation`` maps timed observations onto a trajectory's flattened states.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from invfem.errors import ConfigError
from invfem.fem.space import FunctionSpace
from invfem.misfit import LinearObservation


def point_observation(space: FunctionSpace, points, where=None) -> LinearObservation:
    """``B`` with ``(B u)_i`` the FE field ``u`` at ``points[i]`` (``(n, 2)``); ConfigError naming the
    first point outside the mesh (with its full-precision coordinates, and ``where(i)``, e.g. the
    file and line it came from)."""
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
                place = f"{where(i)}: " if where is not None else ""
                number = "" if where is not None else f" (number {i + 1})"
                raise ConfigError(f"{place}observation point ({float(x)!r}, {float(y)!r}){number} lies outside the "
                                  "mesh") from None
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
    and ``times (n,)`` (transient), the file they came from, and whether it is a CSV (whose
    messages name file lines; NPZ rows are numbered from 1)."""

    points: np.ndarray
    values: np.ndarray
    sigma: np.ndarray | None
    times: np.ndarray | None
    source: str
    csv: bool = False

    @cached_property
    def lines(self) -> np.ndarray | None:
        """Each row's line in the CSV file (None for NPZ): the file is read again for it, only
        when a message asks (a valid file is read once)."""
        return _data_lines(Path(self.source), self.values.shape[0]) if self.csv else None

    def where(self, row: int) -> str:
        """``"FILE: line 12"`` (CSV) or ``"FILE: row 12"`` (NPZ) for the 0-based ``row``."""
        return f"{self.source}: line {int(self.lines[row])}" if self.lines is not None else \
            f"{self.source}: row {row + 1}"


def read_observations(path, transient: bool = False) -> ObservationData:
    """Observations from a CSV (UTF-8, header row with the column names) or NPZ (one 1-d array per column).

    Columns: ``x, y, u`` (steady) or ``t, x, y, u`` (``transient``), optional ``sigma`` (> 0).
    Every fault is a ConfigError naming the file and, for CSV, the line and column (a cell that
    is not a number, a row of the wrong length, NaN/inf, sigma <= 0); for NPZ the array (not
    1-d, not real numbers, lengths that differ). A CSV is read by numpy's C parser, in about
    twice the memory of its values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"observation file not found: {path}")
    required = ("t", "x", "y", "u") if transient else ("x", "y", "u")
    columns, csv = _read_columns(path)
    missing = [c for c in required if c not in columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {missing}; found {sorted(columns)} (need {list(required)}"
                          f"{' and optionally sigma' if 'sigma' not in columns else ''})")
    wanted = required + (("sigma",) if "sigma" in columns else ())
    table = np.stack([columns[c] for c in wanted], axis=1)
    if table.shape[0] == 0:
        raise ConfigError(f"{path}: no observations")
    sigma = table[:, len(required)] if "sigma" in columns else None
    offset = 1 if transient else 0
    data = ObservationData(points=table[:, offset:offset + 2], values=table[:, offset + 2], sigma=sigma,
                           times=table[:, 0] if transient else None, source=str(path), csv=csv)
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"{data.where(row)}: {wanted[col]} is {table[row, col]} (every value must be finite)")
    if sigma is not None and (sigma <= 0).any():
        row = int(np.flatnonzero(sigma <= 0)[0])
        raise ConfigError(f"{data.where(row)}: sigma is {sigma[row]} (must be > 0)")
    return data


def _read_columns(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """The file's columns as float64 arrays, and whether it is a CSV."""
    if path.suffix.lower() == ".npz":
        return _read_npz(path), False
    if path.suffix.lower() not in (".csv", ".txt"):
        raise ConfigError(f"{path}: observation files are .csv or .npz, got {path.suffix!r}")
    return _read_csv(path), True


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # not a zip, a pickle, a truncated member: numpy raises several kinds
        raise ConfigError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    out = {}
    for name, a in arrays.items():
        if a.dtype.kind == "c":
            raise ConfigError(f"{path}: array {name!r} holds complex numbers; observations are real")
        if a.dtype.kind not in "iuf":
            raise ConfigError(f"{path}: array {name!r} holds {a.dtype} values, not numbers")
        if a.ndim != 1:
            raise ConfigError(f"{path}: array {name!r} has shape {a.shape}; each column must be a 1-d array")
        out[name] = a.astype(np.float64)
    lengths = {name: a.shape[0] for name, a in out.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"{path}: the arrays differ in length ({lengths}); one value per observation in each")
    return out


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, encoding="utf-8-sig") as f:          # -sig: a byte-order mark is not part of the first name
            header = f.readline()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "save it as UTF-8 CSV, or give an .npz") from None
    names = [h.strip() for h in header.strip().split(",")]
    if not names or any(not n for n in names):
        raise ConfigError(f"{path}: the first line must name the columns, e.g. 'x,y,u'")
    duplicate = sorted({n for n in names if names.count(n) > 1})
    if duplicate:
        raise ConfigError(f"{path}: column(s) {duplicate} named more than once in the header")
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2, comments=None,
                          encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); save it as UTF-8 CSV, "
                          "or give an .npz") from None
    except ValueError:
        raise ConfigError(_first_bad_cell(path, names)) from None
    if rows.size and rows.shape[1] != len(names):
        raise ConfigError(f"{path}: line {int(_data_lines(path, 1)[0])}: {rows.shape[1]} values but the header names "
                          f"{len(names)} columns {names}")
    return {name: rows[:, i] for i, name in enumerate(names)} if rows.size else {name: np.zeros(0) for name in names}


def _data_lines(path: Path, n_rows: int) -> np.ndarray:
    """The file line (1-based) of each data row: the header is line 1; blank lines hold no row."""
    lines = np.empty(n_rows, dtype=np.int64)
    k = 0
    with open(path, encoding="utf-8-sig") as f:
        next(f, None)
        for number, line in enumerate(f, start=2):
            if line.strip() and k < n_rows:
                lines[k] = number
                k += 1
    return lines


def _first_bad_cell(path: Path, names: list) -> str:
    """Where numpy's parser stopped, in the file's own terms: line, column name and the cell."""
    with open(path, encoding="utf-8-sig") as f:
        next(f, None)
        for number, line in enumerate(f, start=2):
            if not line.strip():
                continue
            cells = [c.strip() for c in line.rstrip("\r\n").split(",")]
            if len(cells) != len(names):
                return f"{path}: line {number}: {len(cells)} values but the header names {len(names)} columns {names}"
            for name, cell in zip(names, cells):
                try:
                    float(cell)
                except ValueError:
                    what = "an empty cell" if not cell else f"{cell[:40]!r} is not a number"
                    return f"{path}: line {number}, column {name}: {what}"
    return f"{path}: could not be read as numbers"


def transient_observation(space: FunctionSpace, data: ObservationData, steps: torch.Tensor, n_dofs: int
                          ) -> tuple[LinearObservation, np.ndarray]:
    """``B`` on the flattened trajectory ``(n_steps + 1, n_dofs)`` for timed point observations,
    and the row order of ``data`` it follows. ``steps[i]``: the time step of row ``i``."""
    steps = torch.as_tensor(steps).cpu().numpy()
    parts, order = [], []
    for k in np.unique(steps):
        rows = np.flatnonzero(steps == k)
        parts.append(point_observation(space, data.points[rows], where=lambda i, rows=rows: data.where(rows[i]))
                     .shifted(int(k) * n_dofs))
        order.append(rows)
    return LinearObservation.stack(parts), np.concatenate(order)
