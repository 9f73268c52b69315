"""Fields for ParaView through meshio (``.vtu``, an XDMF time series for heat), meshes to gmsh files.

``write_vtu(path, space, fields)`` writes the mesh's triangles with one point array per
nodal field (``(n_dofs,)`` values of the space; P2 fields are written at the vertices, the
cells being the mesh's straight triangles). ``write_points(path, points, fields)`` writes a
point cloud (the observation locations with the observed and fitted values), and
``write_time_series(path, space, times, fields)`` an ``.xdmf`` file (data inline as XML: no
HDF5 library needed) with one step per time. Points get a zero third coordinate (ParaView's
3-D view). ``write_gmsh`` writes a mesh with its named boundaries as gmsh physical groups
(what :func:`~invfem.fem.load_mesh` reads back).
"""

from __future__ import annotations

from pathlib import Path

import meshio
import numpy as np
import torch

from invfem.errors import ShapeError
from invfem.fem.space import FunctionSpace
from invfem.files import atomic_path


def _xyz(points: np.ndarray) -> np.ndarray:
    return np.column_stack([points, np.zeros(points.shape[0])])


def _vertex_values(space: FunctionSpace, name: str, values) -> np.ndarray:
    values = np.asarray(torch.as_tensor(values).detach().cpu(), dtype=np.float64)
    if values.shape[-1:] != (space.n_dofs,):
        raise ShapeError(f"field {name!r} must have {space.n_dofs} nodal values, got shape {values.shape}")
    return values[..., space.basis.nodal_dofs[0]]


def write_vtu(path, space: FunctionSpace, fields: dict) -> Path:
    """The mesh with the nodal ``fields`` (name -> ``(n_dofs,)``) as point arrays, to a ``.vtu`` file."""
    path = Path(path)
    point_data = {name: _vertex_values(space, name, v) for name, v in fields.items()}
    mesh = meshio.Mesh(_xyz(space.mesh.p.T), [("triangle", space.mesh.t.T.astype(np.int64))], point_data=point_data)
    with atomic_path(path) as tmp:
        mesh.write(tmp, file_format="vtu")
    return path


def write_points(path, points, fields: dict) -> Path:
    """A cloud of ``points (n, 2)`` with one value per point for each of ``fields``, to a ``.vtu`` file."""
    path = Path(path)
    points = np.asarray(torch.as_tensor(points).cpu(), dtype=np.float64)
    data = {name: np.asarray(torch.as_tensor(v).detach().cpu(), dtype=np.float64).reshape(-1)
            for name, v in fields.items()}
    for name, v in data.items():
        if v.shape != (points.shape[0],):
            raise ShapeError(f"point field {name!r} must have {points.shape[0]} values, got {v.shape}")
    cells = [("vertex", np.arange(points.shape[0], dtype=np.int64)[:, None])]
    with atomic_path(path) as tmp:
        meshio.Mesh(_xyz(points), cells, point_data=data).write(tmp, file_format="vtu")
    return path


def write_time_series(path, space: FunctionSpace, times, fields: dict, static: dict | None = None) -> Path:
    """An XDMF time series: ``fields`` name -> ``(len(times), n_dofs)`` states, ``static`` fields
    (name -> ``(n_dofs,)``, e.g. kappa) repeated at every step. Data inline (XML), one file."""
    path = Path(path).with_suffix(".xdmf")
    times = np.asarray(torch.as_tensor(times).cpu(), dtype=np.float64).reshape(-1)
    series = {name: _vertex_values(space, name, v) for name, v in fields.items()}
    constant = {name: _vertex_values(space, name, v) for name, v in (static or {}).items()}
    for name, v in series.items():
        if v.shape[0] != times.size:
            raise ShapeError(f"field {name!r} has {v.shape[0]} states for {times.size} times")
    with atomic_path(path) as tmp, meshio.xdmf.TimeSeriesWriter(tmp, data_format="XML") as writer:
        writer.write_points_cells(_xyz(space.mesh.p.T), [("triangle", space.mesh.t.T.astype(np.int64))])
        for k, t in enumerate(times):
            writer.write_data(float(t), point_data={**{n: v[k] for n, v in series.items()}, **constant})
    return path


def write_gmsh(path, mesh) -> Path:
    """A triangle mesh to a gmsh 2.2 ``.msh`` file, its named boundaries (``mesh.boundaries``) as
    physical line groups and the domain as physical surface ``domain``: what :func:`load_mesh`
    reads back with the same names (and what gmsh itself writes for a geometry with groups)."""
    path = Path(path)
    boundaries = dict(mesh.boundaries or {})
    points = _xyz(mesh.p.T)
    cells, tags, names = [], [], {}
    for tag, (name, facets) in enumerate(boundaries.items(), start=1):
        cells.append(("line", mesh.facets[:, np.asarray(facets)].T.astype(np.int64)))
        tags.append(np.full(len(facets), tag))
        names[name] = np.array([tag, 1])
    domain_tag = len(boundaries) + 1
    cells.append(("triangle", mesh.t.T.astype(np.int64)))
    tags.append(np.full(mesh.t.shape[1], domain_tag))
    names["domain"] = np.array([domain_tag, 2])
    with atomic_path(path) as tmp:
        meshio.write(tmp, meshio.Mesh(points, cells, cell_data={"gmsh:physical": tags, "gmsh:geometrical": tags},
                                      field_data=names), file_format="gmsh22", binary=False)
    return path
