"""Finite elements on triangles (scikit-fem) with coefficients at quadrature points."""

from invfem.fem.export import write_gmsh, write_points, write_time_series, write_vtu
from invfem.fem.meshes import load_mesh, lshape, make_mesh, rectangle, unit_square
from invfem.fem.observations import nodal_observation, point_observation, read_observations
from invfem.fem.operators import BilinearMap, DirichletSystem, load_vector, mass_map, stiffness_map
from invfem.fem.space import FunctionSpace

__all__ = ["BilinearMap", "DirichletSystem", "FunctionSpace", "load_mesh", "load_vector", "lshape", "make_mesh",
           "mass_map", "nodal_observation", "point_observation", "read_observations", "rectangle", "stiffness_map",
           "unit_square", "write_gmsh", "write_points", "write_time_series", "write_vtu"]
