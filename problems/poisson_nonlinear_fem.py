"""FEM-coupled quasi-linear Poisson problem: learn kappa_theta(u) through a Newton solve.

    -div(kappa_theta(u) grad u) = f on the unit square, u = 0 on the boundary,
    L(theta) = sum_i (u_theta(x_i) - u_obs(x_i))^2,

u_theta from :class:`invfem.fem.nonlinear.NonlinearPoisson` (Newton with line search; no
convergence raises ConvergenceError) and differentiated implicitly, exact to second order
(two chord steps on one factorization; ``torch.func.hessian`` works).  Data: the solution
for kappa_true(u) = 1 + 2 u^2 with f = 10 (optional relative noise, observed fraction).
kappa_theta(u) = softplus(MLP(u)) + 0.5 (1-20-20-20-1 tanh): positive for every theta, so
the Newton solve exists along any optimizer path.
"""

from __future__ import annotations

import numpy as np
import torch

from invfem.fem import FunctionSpace, unit_square
from invfem.fem.nonlinear import NewtonStateLoss, NonlinearPoisson
from invfem.misfit import QuadraticMisfit
from invfem.nn import MLP
from invfem.problem import Problem
from ._common import noisy, observed_dofs
from .poisson_residual import kappa_default


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, widths=(1, 20, 20, 20, 1), activation="tanh",
                 positivity="softplus", shift: float = 0.5, f: float = 10.0, noise: float = 0.0,
                 observed: float = 1.0, data_seed: int = 0, newton_rtol: float = 1e-12, newton_maxiter: int = 30,
                 backend: str = "auto", kappa_true=kappa_default, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP."""
    space = FunctionSpace(unit_square(n), order, device=device)
    pde = NonlinearPoisson(space, lambda x, y: f * torch.ones_like(x), backend=backend, rtol=newton_rtol,
                           maxiter=newton_maxiter)
    u_true, _ = pde.newton(kappa_true)
    rng = np.random.default_rng(data_seed)
    obs = observed_dofs(space, observed, rng)
    n_obs = obs.numel()
    u_obs = noisy(u_true[obs], noise, rng)
    mlp = MLP(list(widths), activation=activation, positivity=positivity, shift=shift)

    loss = NewtonStateLoss(pde, mlp, QuadraticMisfit(obs, u_obs))

    return Problem(
        name="poisson_nonlinear_fem", theta0=mlp.init(seed, device), loss=loss, kappa=mlp, kappa_true=kappa_true,
        structure=loss,
        info={"n": n, "order": order, "n_dofs": space.n_dofs, "n_free": space.n_free, "n_quad": space.n_quad,
              "n_params": mlp.n_params, "n_observed": n_obs, "noise": noise, "u_obs": u_obs, "observed_dofs": obs,
              "pde": pde, "solver": pde.system.solver, "space": space},
    )
