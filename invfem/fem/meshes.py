"""Triangle meshes: built-in ones by name, and the user's own from a file (meshio formats).

``make_mesh(spec)`` is what configs use: a path (``mesh: domain.msh``) or a built-in name
with its options (``mesh: {lshape: {refine: 3}}``). gmsh physical groups of boundary lines
become named boundaries (``mesh.boundaries``), usable as Dirichlet parts by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skfem

from invfem.errors import ConfigError, ShapeError
from invfem.resources import check_memory, mesh_memory

_CELL_NAMES = {"MeshQuad1": "quadrilateral", "MeshQuad2": "quadratic quadrilateral", "MeshTri2": "curved (quadratic) "
               "triangle", "MeshTet1": "tetrahedron", "MeshTet2": "quadratic tetrahedron", "MeshHex1": "hexahedron",
               "MeshHex2": "quadratic hexahedron", "MeshLine1": "line", "MeshWedge1": "wedge"}


def _whole(name: str, value, low: int) -> int:
    """``value`` as an int >= ``low``: a whole number (``3`` or ``3.0``), not ``2.7`` (which
    ``int`` would cut to 2) and not ``true``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or \
            not float(value).is_integer():
        raise ShapeError(f"{name} must be a whole number, got {value!r}")
    if int(value) < low:
        raise ShapeError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def unit_square(n: int, m: int | None = None) -> skfem.MeshTri:
    """Structured mesh of the unit square with ``n x m`` squares, each cut into 2 triangles.

    ``unit_square(10)`` has 121 nodes and 200 triangles.
    """
    return rectangle(n, n if m is None else m)


def _interval(name: str, value) -> tuple[float, float]:
    """Two finite numbers ``[low, high]`` with low < high."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value):
        raise ShapeError(f"{name} must be two finite numbers [low, high], got {value!r}")
    if not value[1] > value[0]:
        raise ShapeError(f"{name} = {list(value)}: the upper bound must exceed the lower one")
    return float(value[0]), float(value[1])


def rectangle(n: int, m: int, x: tuple[float, float] = (0.0, 1.0), y: tuple[float, float] = (0.0, 1.0)) -> skfem.MeshTri:
    """Structured triangle mesh of ``[x0, x1] x [y0, y1]`` with ``n x m`` cells."""
    n, m = _whole("n (cells per direction)", n, 1), _whole("m (cells per direction)", m, 1)
    x, y = _interval("x", x), _interval("y", y)
    check_memory(f"n = {n}, m = {m} (a mesh of {2 * n * m:.3g} triangles)", mesh_memory(2 * n * m))
    return skfem.MeshTri.init_tensor(np.linspace(x[0], x[1], n + 1), np.linspace(y[0], y[1], m + 1))


def lshape(refine: int = 3) -> skfem.MeshTri:
    """The L-shaped domain ``[-1, 1]^2`` minus ``(0, 1]^2``, refined ``refine`` times (12 * 4^refine triangles)."""
    refine = _whole("refine", refine, 0)
    check_memory(f"lshape refine {refine} ({12 * 4 ** refine:.3g} triangles)", mesh_memory(12 * 4 ** refine))
    return skfem.MeshTri.init_lshaped().refined(refine)


BUILTIN = {"unit_square": unit_square, "rectangle": rectangle, "lshape": lshape}


def load_mesh(path) -> skfem.MeshTri:
    """A triangle mesh from a file scikit-fem/meshio can read (gmsh ``.msh``, ``.vtu``, ``.xdmf``, ...).

    gmsh physical groups become ``mesh.boundaries`` (lines) and ``mesh.subdomains``
    (triangles). Any other cell type is a ConfigError naming it, as are NaN coordinates and
    zero-area, repeated or overlapping triangles (:func:`check_triangles`); nodes that no
    triangle uses are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"mesh file not found: {path}")
    try:
        mesh = skfem.Mesh.load(str(path))
    except Exception as exc:  # meshio raises many kinds; name the file and keep the cause
        raise ConfigError(f"{path}: could not be read as a mesh ({type(exc).__name__}: {exc})") from exc
    if type(mesh) is not skfem.MeshTri1:
        kind = _CELL_NAMES.get(type(mesh).__name__, type(mesh).__name__)
        raise ConfigError(f"{path}: {kind} cells; invfem needs a mesh of straight triangles (P1/P2 elements)")
    check_triangles(mesh, str(path))
    if np.unique(mesh.t).size < mesh.p.shape[1]:        # nodes no triangle uses (gmsh's geometry points): dropped
        mesh = mesh.remove_unused_nodes()
    return mesh


def check_triangles(mesh: skfem.MeshTri, where: str = "mesh") -> None:
    """ConfigError (naming the node or triangle, 1-based) for what no FE space can be built on:
    NaN/inf coordinates, triangles of (near) zero area, the same triangle twice, and triangles
    that overlap across a shared edge (both on the same side of it: a folded mesh)."""
    p, t = mesh.p, mesh.t
    bad = ~np.isfinite(p).all(axis=0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: node {i + 1} has coordinates {tuple(float(v) for v in p[:, i])} "
                          "(every coordinate must be finite)")
    a, b, c = (p[:, t[k]] for k in range(3))
    signed = 0.5 * ((b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1]))
    scale = np.abs(signed).max() if signed.size else 0.0
    flat = np.abs(signed) <= 1e-12 * scale
    if flat.any():
        k = int(np.flatnonzero(flat)[0])
        raise ConfigError(f"{where}: triangle {k + 1} (nodes {', '.join(str(int(v) + 1) for v in t[:, k])}) has zero "
                          f"area ({int(flat.sum())} such triangle(s)); remove or repair them")
    keys = np.sort(t, axis=0)
    _, first, counts = np.unique(keys, axis=1, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = int(first[np.flatnonzero(counts > 1)[0]])
        raise ConfigError(f"{where}: triangle {k + 1} (nodes {', '.join(str(int(v) + 1) for v in t[:, k])}) appears "
                          "more than once")
    # an interior edge's two triangles lie on opposite sides of it; on the same side they overlap
    f2t = mesh.f2t
    inner = np.flatnonzero(f2t[1] >= 0)
    ends = mesh.facets[:, inner]
    side = []
    for e in (f2t[0, inner], f2t[1, inner]):
        opposite = t[:, e].sum(axis=0) - ends.sum(axis=0)
        q0, q1, r = p[:, ends[0]], p[:, ends[1]], p[:, opposite]
        side.append(np.sign((q1[0] - q0[0]) * (r[1] - q0[1]) - (r[0] - q0[0]) * (q1[1] - q0[1])))
    folded = side[0] == side[1]
    if folded.any():
        j = int(np.flatnonzero(folded)[0])
        e0, e1 = int(f2t[0, inner[j]]) + 1, int(f2t[1, inner[j]]) + 1
        raise ConfigError(f"{where}: triangles {e0} and {e1} overlap (both lie on the same side of their shared edge "
                          f"between nodes {int(ends[0, j]) + 1} and {int(ends[1, j]) + 1}); the mesh is folded")


def make_mesh(spec) -> skfem.MeshTri:
    """A mesh from a config value: a ``MeshTri``, a file path, or ``{name: {options}}`` for a built-in
    (``unit_square`` ``{n}``, ``rectangle`` ``{n, m, x, y}``, ``lshape`` ``{refine}``)."""
    if isinstance(spec, skfem.MeshTri1):
        return spec
    if isinstance(spec, (str, Path)):
        if str(spec) in BUILTIN:
            return BUILTIN[str(spec)]()
        return load_mesh(spec)
    if isinstance(spec, dict) and len(spec) == 1:
        (name, options), = spec.items()
        if name not in BUILTIN:
            raise ConfigError(f"unknown built-in mesh {name!r}; valid: {sorted(BUILTIN)} (or a mesh file path)")
        options = options or {}
        if not isinstance(options, dict):
            raise ConfigError(f"mesh {name!r}: options must be a mapping, got {options!r}")
        try:
            return BUILTIN[name](**options)
        except TypeError as exc:
            raise ConfigError(f"mesh {name!r}: {exc}") from None
    raise ConfigError(f"mesh must be a file path or one built-in {{name: options}} of {sorted(BUILTIN)}, got {spec!r}")
