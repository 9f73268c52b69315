"""Reference 002 §4's 2-D diffusion-reaction BVP by a PINN with the distance construction.

    -lap u + c u = f on (a, b)^2,  u = 0 on the boundary,   u_theta = sum_k c_k d(x, y) phi_k(x, y),
    L(theta) = mean_q (-lap u_theta + c u_theta - f)^2       at the points of an n x n grid,

``d`` the product of the four side distances (zero on every side). The extracted reference lost
its equations; our defaults: (a, b) = (0, 1), c = 1, exact solution ``sin(pi x) sin(pi y)``
(on (-1, 1)^2 that solution's forcing is even in (x, y) -> (-x, -y) while a network with zero
biases is odd: every basis function would start orthogonal to f by symmetry alone),
a 21 x 21 grid, SIREN ``sin(3 z)`` of two hidden layers of width 20, no output bias.
``info["orthogonality"]`` and ``info["gradient_split"]`` as in ``pinn_elliptic_1d``.
"""

from __future__ import annotations

from invfem.problem import Problem

from ._common import interval_bounds
from ._options import check_number
from ._pinn import count, grid, network
from ._pinn_bvp import bvp_problem


def make_problem(seed: int = 0, *, interval=(0.0, 1.0), c: float = 1.0, solution: str = "sin(pi*x)*sin(pi*y)",
                 n_grid: int = 21, widths=(2, 20, 20, 1), activation: str = "sin", omega: float = 3.0,
                 test_grid: int = 101, device=None) -> Problem:
    """The BVP above (``solution`` a formula in x, y vanishing on the boundary; f = -lap u* + c u*)."""
    a, b = interval_bounds("interval", interval)
    mlp = network(widths, 2, activation, omega, output_bias=False)
    points = grid(a, b, count("n_grid", n_grid, 3), 2)
    test = grid(a, b, count("test_grid", test_grid, 2), 2)
    return bvp_problem("pinn_diffusion_reaction", seed, mlp, [a, a], [b, b], solution, ("x", "y"), points, test,
                       kappa=1.0, c=check_number("c", c), device=device)
