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


def rectangle(n: int, m: int, x: tuple[float, float] = (0.0, 1.0), y: tuple[float, float] = (0.0, 1.0)) -> skfem.MeshTri:
    """Structured triangle mesh of ``[x0, x1] x [y0, y1]`` with ``n x m`` cells."""
    n, m = _whole("n (cells per direction)", n, 1), _whole("m (cells per direction)", m, 1)
    if not (x[1] > x[0] and y[1] > y[0]):
        raise ShapeError(f"empty rectangle x={x}, y={y}")
    return skfem.MeshTri.init_tensor(np.linspace(x[0], x[1], n + 1), np.linspace(y[0], y[1], m + 1))


def lshape(refine: int = 3) -> skfem.MeshTri:
    """The L-shaped domain ``[-1, 1]^2`` minus ``(0, 1]^2``, refined ``refine`` times (12 * 4^refine triangles)."""
    return skfem.MeshTri.init_lshaped().refined(_whole("refine", refine, 0))


BUILTIN = {"unit_square": unit_square, "rectangle": rectangle, "lshape": lshape}


def load_mesh(path) -> skfem.MeshTri:
    """A triangle mesh from a file scikit-fem/meshio can read (gmsh ``.msh``, ``.vtu``, ``.xdmf``, ...).

    gmsh physical groups become ``mesh.boundaries`` (lines) and ``mesh.subdomains``
    (triangles). Any other cell type is a ConfigError naming it.
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
    return mesh


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
