"""FEM-coupled heat equation: learn kappa_theta(x) from states produced by time stepping.

    u_t = div(kappa_theta(x) grad u) + f,  u = 0 on the boundary,  u(0) = u0,
    L(theta) = sum_{observed k} sum_i (u^k_theta(x_i) - u^k_obs(x_i))^2,

with u^k from :class:`invfem.fem.heat.HeatStepper` (backward Euler, or Crank–Nicolson with
``scheme``).  A = M + s dt K(kappa_theta) is the same at every step: the forward trajectory,
its adjoint and every Hessian-vector product of a full Hessian use ONE factorization.
Defaults as :mod:`invfem.problems.heat_residual` (kappa_true of reference 000, f = 1,
u0 = sin(pi x) sin(pi y), dt = 0.01, 20 steps, every step observed); ``observe_every`` thins
the observed steps, ``snapshots_given=(times, values)`` supplies data (times on the step grid).
A thin use of :mod:`invfem.problems.heat`.
"""

from __future__ import annotations

from invfem.problem import Problem

from ._builders import build_heat
from ._options import HeatOptions, NetworkOptions, Snapshots, SyntheticOptions
from ._shipped import hidden_widths
from .poisson_fem import kappa_reference

U0 = "sin(pi * x) * sin(pi * y)"


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, dt: float = 0.01, n_steps: int = 20,
                 scheme: str = "backward-euler", observe_every: int = 1, widths=(2, 20, 20, 20, 1),
                 activation="tanh", positivity=None, shift: float = 0.5, f: float = 1.0, noise: float = 0.0,
                 data_seed: int = 0, snapshots_given=None, backend: str = "auto",
                 kappa_true=kappa_reference, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP."""
    observations = (Snapshots(*snapshots_given) if snapshots_given is not None else
                    SyntheticOptions(kappa_true, noise=noise, times=observe_every, data_seed=data_seed))
    opts = HeatOptions(mesh={"unit_square": {"n": n}}, order=order, source=float(f), u0=U0, dt=dt, n_steps=n_steps,
                       scheme=scheme, backend=backend, device=device, observations=observations,
                       network=NetworkOptions(hidden_widths(widths, 2), activation, positivity, shift))
    p = build_heat(opts, seed, name="heat_fem")
    p.info.update(n=n, order=order, noise=noise)
    return p
