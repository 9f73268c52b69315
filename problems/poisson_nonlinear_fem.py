"""FEM-coupled quasi-linear Poisson problem: learn kappa_theta(u) through a Newton solve.

    -div(kappa_theta(u) grad u) = f on the unit square, u = 0 on the boundary,
    L(theta) = sum_i (u_theta(x_i) - u_obs(x_i))^2,

u_theta from :class:`invfem.fem.nonlinear.NonlinearPoisson` (Newton with line search; no
convergence raises ConvergenceError) and differentiated implicitly, exact to second order
(two chord steps on one factorization; ``torch.func.hessian`` works).  Data: the solution
for kappa_true(u) = 1 + 2 u^2 with f = 10 (optional relative noise, observed fraction).
kappa_theta(u) = softplus(MLP(u)) + 0.5 (1-20-20-20-1 tanh): positive for every theta, so
the Newton solve exists along any optimizer path. A thin use of :mod:`invfem.problems.poisson`.
"""

from __future__ import annotations

from invfem.problem import Problem

from ._builders import build_poisson
from ._options import NetworkOptions, PoissonOptions, SyntheticOptions
from ._shipped import hidden_widths
from .poisson_residual import kappa_default


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, widths=(1, 20, 20, 20, 1), activation="tanh",
                 positivity="softplus", shift: float = 0.5, f: float = 10.0, noise: float = 0.0,
                 observed: float = 1.0, data_seed: int = 0, newton_rtol: float = 1e-12, newton_maxiter: int = 30,
                 backend: str = "auto", kappa_true=kappa_default, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP."""
    opts = PoissonOptions(
        mesh={"unit_square": {"n": n}}, order=order, coefficient_input="u", source=float(f), backend=backend,
        device=device, newton_rtol=newton_rtol, newton_maxiter=newton_maxiter,
        network=NetworkOptions(hidden_widths(widths, 1), activation, positivity, shift),
        observations=SyntheticOptions(kappa_true, noise=noise, observed=observed, data_seed=data_seed))
    p = build_poisson(opts, seed, name="poisson_nonlinear_fem")
    p.info.update(n=n, order=order, n_observed=int(p.info["observed_dofs"].numel()), noise=noise,
                  u_obs=p.structure.misfit.data)
    return p
