"""FEM-coupled Poisson problem: learn kappa_theta(x) from the FE solution it produces.

Reference 000 (ADCME trust-region study, "Example: FEM for Static Poisson's Equation"):

    -div(kappa(x) grad u) = f  on the unit square,  u = 0 on the boundary,  f = 1,
    kappa_true(x) = 1 / (1 + |x|^2) + 1,   kappa_theta(x) = MLP_theta(x) + 0.5,
    L(theta) = sum_i (u_theta(x_i) - u_obs(x_i))^2,

with ``u_obs`` the FE solution for ``kappa_true`` on the same mesh (10x10 squares, 121
nodes, 200 P1 triangles) and a 2-20-20-20-1 tanh MLP (921 parameters). kappa lives at
the quadrature points; ``u_theta = A(kappa_theta)^{-1} F`` goes through
:func:`invfem.linalg.sparse_solve`, so every derivative is exact. A thin use of the
generic builder :mod:`invfem.problems.poisson`.
"""

from __future__ import annotations

import torch

from invfem.problem import Problem

from ._builders import build_poisson
from ._options import NetworkOptions, PoissonOptions, SyntheticOptions
from ._shipped import hidden_widths


def kappa_reference(points: torch.Tensor) -> torch.Tensor:
    """The reference's true coefficient ``1 / (1 + |x|^2) + 1``."""
    return 1.0 / (1.0 + (points ** 2).sum(-1)) + 1.0


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, widths=(2, 20, 20, 20, 1),
                 activation: str = "tanh", positivity: str | None = None, shift: float = 0.5, noise: float = 0.0,
                 observed: float = 1.0, data_seed: int = 0, backend: str = "auto",
                 kappa_true=kappa_reference, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` sets the MLP initialisation.

    Options: ``order`` (1 or 2), ``widths``/``activation``/``positivity``/``shift`` of the MLP,
    ``noise`` (relative uniform noise, ``u_obs * (1 + noise * U(-1, 1))``), ``observed``
    (fraction of free dofs observed, chosen at random with ``data_seed``; 1.0 = full field),
    ``backend`` of the sparse solver, ``kappa_true`` (a callable on ``(n, 2)`` points or a
    formula in x, y), ``device`` of every tensor (``"cuda"``: network, Hessian and dense
    algebra on the GPU).
    """
    opts = PoissonOptions(
        mesh={"unit_square": {"n": n}}, order=order, source=1.0, backend=backend, device=device,
        network=NetworkOptions(hidden_widths(widths, 2), activation, positivity, shift),
        observations=SyntheticOptions(kappa_true, noise=noise, observed=observed, data_seed=data_seed))
    p = build_poisson(opts, seed, name="poisson_fem")
    space, state = p.info["space"], p.structure.outer.outer
    p.info.update(n=n, order=order, n_elements=space.n_elements, n_observed=int(p.info["observed_dofs"].numel()),
                  noise=noise, u_obs=state.misfit.data, solve=lambda kappa_q: state.solve(kappa_q))
    return p
