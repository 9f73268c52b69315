"""Finite elements on triangles (scikit-fem) with coefficients at quadrature points."""

from invfem.fem.operators import BilinearMap, DirichletSystem, load_vector, mass_map, stiffness_map
from invfem.fem.space import FunctionSpace, rectangle, unit_square

__all__ = ["BilinearMap", "DirichletSystem", "FunctionSpace", "load_vector", "mass_map", "rectangle",
           "stiffness_map", "unit_square"]
