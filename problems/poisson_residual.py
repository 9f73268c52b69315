"""Residual minimisation for a quasi-linear Poisson law kappa_theta(u) (reference 000, "Static Poisson").

    -div(kappa(u) grad u) = f on the unit square, u = 0 on the boundary,
    L(theta) = sum_{free i} (F_i(theta) - f_i)^2,  F(theta) = K(kappa_theta(u_obs)) u_obs,

i.e. the FE weak form of -div(kappa_theta(u_obs) grad u_obs) at the free nodes, with kappa
evaluated at the quadrature points from the interpolated observation, minus the load of the
(observed) source.  The data: u_obs is the Newton solution for kappa_true, and both u_obs
and f carry 10% relative uniform noise (reference 000; level and seed configurable).
Defaults: f = 10, kappa_true(u) = 1 + 2 u^2 (u reaches about 0.6, so kappa spans [1, 1.7]);
kappa_theta(u) = MLP(u) + 0.5 with a 1-20-20-20-1 tanh network (901 parameters).  The loss
has no solve: its Hessian is the structured J^T W J + sum g_q Hess kappa_q.
"""

from __future__ import annotations

import numpy as np
import torch

from invfem.fem import FunctionSpace, load_vector, unit_square
from invfem.fem.nonlinear import NonlinearPoisson
from invfem.fem.residual import LinearResidualLoss
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss
from ._common import noisy


def kappa_default(u: torch.Tensor) -> torch.Tensor:
    """kappa_true(u) = 1 + 2 u^2 on ``(n, 1)`` values."""
    return 1.0 + 2.0 * u[..., 0] ** 2


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, widths=(1, 20, 20, 20, 1), activation="tanh",
                 positivity=None, shift: float = 0.5, f: float = 10.0, noise: float = 0.1, data_seed: int = 0,
                 backend: str = "auto", kappa_true=kappa_default, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP, ``data_seed`` the noise."""
    space = FunctionSpace(unit_square(n), order, device=device)
    pde = NonlinearPoisson(space, lambda x, y: f * torch.ones_like(x), backend=backend)
    u_true, _ = pde.newton(kappa_true)
    rng = np.random.default_rng(data_seed)
    u_obs = noisy(u_true, noise, rng)
    f_obs = noisy(torch.full((space.n_quad,), float(f), device=space.device), noise, rng)
    load = load_vector(space, f_obs)[space.free_index]
    u_points = space.interpolate(u_obs)[:, None]
    mlp = MLP(list(widths), activation=activation, positivity=positivity, shift=shift)
    outer = LinearResidualLoss(pde.stiffness, u_obs, load, space.free_index)
    loss = CoefficientLoss(mlp, u_points, outer)

    return Problem(
        name="poisson_residual", theta0=mlp.init(seed, device), loss=loss, kappa=mlp, kappa_true=kappa_true,
        residual=lambda theta: outer.residuals(mlp(theta, u_points)).reshape(-1), structure=loss,
        info={"n": n, "order": order, "n_dofs": space.n_dofs, "n_free": space.n_free, "n_quad": space.n_quad,
              "n_params": mlp.n_params, "noise": noise, "u_obs": u_obs, "u_true": u_true, "space": space},
    )
