"""Residual minimisation for a quasi-linear Poisson law kappa_theta(u) (reference 000, "Static Poisson").

    -div(kappa(u) grad u) = f on the unit square, u = 0 on the boundary,
    L(theta) = sum_{free i} (F_i(theta) - f_i)^2,  F(theta) = K(kappa_theta(u_obs)) u_obs,

i.e. the FE weak form of -div(kappa_theta(u_obs) grad u_obs) at the free nodes, with kappa
evaluated at the quadrature points from the interpolated observation, minus the load of the
(observed) source.  The data: u_obs is the Newton solution for kappa_true, and both u_obs
and f carry 10% relative uniform noise (reference 000; level and seed configurable).
Defaults: f = 10, kappa_true(u) = 1 + 2 u^2 (u reaches about 0.6, so kappa spans [1, 1.7]);
kappa_theta(u) = MLP(u) + 0.5 with a 1-20-20-20-1 tanh network (901 parameters).  The loss
has no solve: its Hessian is the structured J^T W J + sum g_q Hess kappa_q. A thin use of
:mod:`invfem.problems.poisson` (``loss: residual``).
"""

from __future__ import annotations

import torch

from invfem.problem import Problem

from ._builders import build_poisson
from ._options import NetworkOptions, PoissonOptions, SyntheticOptions
from ._shipped import hidden_widths


def kappa_default(u: torch.Tensor) -> torch.Tensor:
    """kappa_true(u) = 1 + 2 u^2 on ``(n, 1)`` values."""
    return 1.0 + 2.0 * u[..., 0] ** 2


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, widths=(1, 20, 20, 20, 1), activation="tanh",
                 positivity=None, shift: float = 0.5, f: float = 10.0, noise: float = 0.1, data_seed: int = 0,
                 backend: str = "auto", kappa_true=kappa_default, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP, ``data_seed`` the noise."""
    opts = PoissonOptions(
        mesh={"unit_square": {"n": n}}, order=order, coefficient_input="u", loss="residual", source=float(f),
        backend=backend, device=device, network=NetworkOptions(hidden_widths(widths, 1), activation, positivity, shift),
        observations=SyntheticOptions(kappa_true, noise=noise, source_noise=noise, data_seed=data_seed))
    p = build_poisson(opts, seed, name="poisson_residual")
    p.info.update(n=n, order=order, noise=noise)
    return p
