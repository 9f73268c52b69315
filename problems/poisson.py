"""``problem: poisson`` — your own stationary problem from a config (or from Python).

    -div(kappa_theta grad u) = source  in the domain,   u = dirichlet  on the boundary,

with kappa_theta(x) or kappa_theta(u) an MLP (positive by default), the mesh a built-in or
your file, observations from a CSV/NPZ file (point values, optional sigma per row) or
synthetic from a known law, and the loss the misfit of the FE solution (``fem``) or the
weak-form residual of full-field data (``residual``). Every option is listed and checked in
:class:`invfem.problems._options.PoissonOptions`; a wrong one is a one-line error before any work.

    problem: poisson
    problem_options:
      mesh: domain.msh                      # or {lshape: {refine: 3}}, {unit_square: {n: 10}}
      observations: {file: data.csv}       # columns x, y, u (, sigma)
      network: {widths: [20, 20], activation: tanh, positivity: softplus}
      source: 1                             # or a formula in x, y
      dirichlet: {outer: 0, inner: "x*y"}   # gmsh physical groups -> values
"""

from __future__ import annotations

from invfem.problem import Problem

from ._builders import build_poisson
from ._options import PoissonOptions, parse


def check_options(options: dict) -> None:
    """ConfigError naming the first unknown or bad option (nested keys too), before any work."""
    parse(PoissonOptions, options, "problem_options")


def make_problem(seed: int = 0, **options) -> Problem:
    """The problem of ``options`` (see the module docstring); ``seed`` initialises the network."""
    return build_poisson(parse(PoissonOptions, options, "problem_options"), seed)
