"""FEM-coupled Poisson problem: learn kappa_theta(x) from the FE solution it produces.

Reference 000 (ADCME trust-region study, "Example: FEM for Static Poisson's Equation"):

    -div(kappa(x) grad u) = f  on the unit square,  u = 0 on the boundary,  f = 1,
    kappa_true(x) = 1 / (1 + |x|^2) + 1,   kappa_theta(x) = MLP_theta(x) + 0.5,
    L(theta) = sum_i (u_theta(x_i) - u_obs(x_i))^2,

with ``u_obs`` the FE solution for ``kappa_true`` on the same mesh (10x10 squares, 121
nodes, 200 P1 triangles) and a 2-20-20-20-1 tanh MLP (921 parameters). kappa lives at
the quadrature points; ``u_theta = A(kappa_theta)^{-1} F`` goes through
:func:`invfem.linalg.sparse_solve`, so every derivative is exact.
"""

from __future__ import annotations

import numpy as np
import torch

from invfem.fem import DirichletSystem, FunctionSpace, load_vector, stiffness_map, unit_square
from invfem.fem.stationary import LinearStateLoss
from invfem.misfit import QuadraticMisfit
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss
from ._common import noisy, observed_dofs


def kappa_reference(points: torch.Tensor) -> torch.Tensor:
    """The reference's true coefficient ``1 / (1 + |x|^2) + 1``."""
    return 1.0 / (1.0 + (points ** 2).sum(-1)) + 1.0


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, widths=(2, 20, 20, 20, 1),
                 activation: str = "tanh", positivity: str | None = None, shift: float = 0.5, noise: float = 0.0,
                 observed: float = 1.0, data_seed: int = 0, backend: str = "auto",
                 kappa_true=kappa_reference, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` sets the MLP initialisation.

    Options: ``order`` (1 or 2), ``widths``/``activation``/``positivity``/``shift`` of the MLP, ``noise``
    (relative uniform noise, ``u_obs * (1 + noise * U(-1, 1))``), ``observed`` (fraction of
    free dofs observed, chosen at random with ``data_seed``; 1.0 = full field), ``backend``
    of the sparse solver, ``kappa_true`` (a callable on ``(n, 2)`` points), ``device`` of
    every tensor (``"cuda"``: network, Hessian and dense algebra on the GPU).
    """
    space = FunctionSpace(unit_square(n), order, device=device)
    stiffness = stiffness_map(space)
    system = DirichletSystem.build(space, stiffness.pattern, backend=backend)
    load = load_vector(space, lambda x, y: torch.ones_like(x))
    points = space.quadrature_points
    mlp = MLP(list(widths), activation=activation, positivity=positivity, shift=shift)

    def solve(kappa_q: torch.Tensor) -> torch.Tensor:
        """FE solution on all dofs for a coefficient at the quadrature points."""
        return system.solve(stiffness.values(kappa_q), load)

    rng = np.random.default_rng(data_seed)
    obs = observed_dofs(space, observed, rng)
    n_obs = obs.numel()
    u_obs = noisy(solve(kappa_true(points))[obs], noise, rng)

    loss = CoefficientLoss(mlp, points, LinearStateLoss(system, stiffness, load, QuadraticMisfit(obs, u_obs)))

    return Problem(
        name="poisson_fem", theta0=mlp.init(seed, device), loss=loss, kappa=mlp, kappa_true=kappa_true, structure=loss,
        info={"n": n, "order": order, "n_dofs": space.n_dofs, "n_free": space.n_free,
              "n_elements": space.n_elements, "n_quad": space.n_quad, "n_params": mlp.n_params,
              "n_observed": n_obs, "noise": noise, "observed_dofs": obs, "u_obs": u_obs, "solver": system.solver, "space": space, "solve": solve},
    )
