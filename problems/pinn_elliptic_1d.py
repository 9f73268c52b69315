"""Reference 002 §4's 1-D elliptic BVP by a PINN with the distance function on every basis function.

    -u''(x) = f(x) on (a, b),  u(a) = u(b) = 0,     u_theta(x) = sum_k c_k d(x) phi_k(x),
    L(theta) = mean_q (-u_theta''(x_q) - f(x_q))^2      (the strong form at grid points),

with ``d(x) = (x - a)(b - x) / ((b - a)/2)^2`` and ``phi_k`` the last hidden layer of a network
without output bias (its output weights the coefficients c_k). The extracted reference lost its
equations; our defaults: (a, b) = (-1, 1), exact solution ``u* = sin(pi x)`` (f = pi^2 sin(pi x),
the target of reference 002's regression), 101 grid points, SIREN ``sin(3 z)`` of two hidden layers
of width 10. The trivial solution (c = 0 on a basis with f orthogonal to every ``-(d phi_k)''``)
is stationary: ``info["orthogonality"](theta)`` gives ``|<f^, L[psi_k]^>|`` per basis function
(normalized), ``info["gradient_split"](theta)`` the inner/outer gradient norms.
"""

from __future__ import annotations

from invfem.problem import Problem

from ._common import interval_bounds
from ._pinn import count, grid, network
from ._pinn_bvp import bvp_problem


def make_problem(seed: int = 0, *, interval=(-1.0, 1.0), solution: str = "sin(pi*x)", n_points: int = 101,
                 widths=(1, 10, 10, 1), activation: str = "sin", omega: float = 3.0, test_points: int = 1001,
                 device=None) -> Problem:
    """The BVP above (``solution`` a formula in x that vanishes at both ends; f = -u*'')."""
    a, b = interval_bounds("interval", interval)
    mlp = network(widths, 1, activation, omega, output_bias=False)
    points = grid(a, b, count("n_points", n_points, 3), 1)
    test = grid(a, b, count("test_points", test_points, 2), 1)
    return bvp_problem("pinn_elliptic_1d", seed, mlp, [a], [b], solution, ("x",), points, test, kappa=1.0, c=0.0,
                       device=device)
