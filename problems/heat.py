"""``problem: heat`` — your own time-dependent problem from a config (or from Python).

    u_t = div(kappa_theta(x) grad u) + source(x, y, t),  u = dirichlet on the boundary,  u(0) = u0,

stepped by backward Euler or Crank–Nicolson (``dt``, ``n_steps``, ``scheme``), with
observations from a file (columns t, x, y, u, optional sigma; times on the step grid),
synthetic from a known law, or (Python) full-field snapshots; the loss is the misfit of the
time-stepped states (``fem``) or the scheme residuals of full-field snapshots (``residual``).
Options: :class:`invfem.problems._options.HeatOptions`.
"""

from __future__ import annotations

from invfem.problem import Problem

from ._builders import build_heat
from ._options import HeatOptions, parse


def check_options(options: dict) -> None:
    """ConfigError naming the first unknown or bad option (nested keys too), before any work."""
    parse(HeatOptions, options, "problem_options")


def make_problem(seed: int = 0, **options) -> Problem:
    """The problem of ``options`` (see the module docstring); ``seed`` initialises the network."""
    return build_heat(parse(HeatOptions, options, "problem_options"), seed)
