"""Residual minimisation for the heat equation with kappa_theta(x) (reference 000, "Heat").

    u_t = div(kappa(x) grad u) + f on the unit square, u = 0 on the boundary,
    L(theta) = sum_k || M (u^{k+1} - u^k)/dt + K(kappa_theta) (s u^{k+1} + (1-s) u^k) - F ||^2

over all consecutive snapshot pairs, restricted to the free nodes (backward Euler s = 1;
``scheme="crank-nicolson"`` gives s = 1/2).  Snapshots are full-field states at t = k dt,
k = 0..n_steps: by default the kappa_true trajectory (kappa_true(x) = 1/(1+|x|^2) + 1 of
reference 000, f = 1, u0 = sin(pi x) sin(pi y), dt = 0.01, 20 steps) with optional relative
noise, or user data ``snapshots=(times, values)`` (times must be exactly the step grid).
kappa_theta(x) = MLP(x) + 0.5 (2-20-20-20-1 tanh, 921 parameters).  No solve in the loss.
A thin use of :mod:`invfem.problems.heat` (``loss: residual``).
"""

from __future__ import annotations

from invfem.problem import Problem

from ._builders import build_heat
from ._options import HeatOptions, NetworkOptions, Snapshots, SyntheticOptions
from ._shipped import hidden_widths
from .heat_fem import U0
from .poisson_fem import kappa_reference


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, dt: float = 0.01, n_steps: int = 20,
                 scheme: str = "backward-euler", widths=(2, 20, 20, 20, 1), activation="tanh", positivity=None,
                 shift: float = 0.5, f: float = 1.0, noise: float = 0.0, data_seed: int = 0, snapshots_given=None,
                 backend: str = "auto", kappa_true=kappa_reference, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP."""
    observations = (Snapshots(*snapshots_given) if snapshots_given is not None else
                    SyntheticOptions(kappa_true, noise=noise, data_seed=data_seed))
    opts = HeatOptions(mesh={"unit_square": {"n": n}}, order=order, source=float(f), u0=U0, dt=dt, n_steps=n_steps,
                       scheme=scheme, loss="residual", backend=backend, device=device, observations=observations,
                       network=NetworkOptions(hidden_widths(widths, 2), activation, positivity, shift))
    p = build_heat(opts, seed, name="heat_residual")
    p.info.update(n=n, order=order, noise=noise)
    return p
