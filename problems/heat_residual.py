"""Residual minimisation for the heat equation with kappa_theta(x) (reference 000, "Heat").

    u_t = div(kappa(x) grad u) + f on the unit square, u = 0 on the boundary,
    L(theta) = sum_k || M (u^{k+1} - u^k)/dt + K(kappa_theta) (s u^{k+1} + (1-s) u^k) - F ||^2

over all consecutive snapshot pairs, restricted to the free nodes (backward Euler s = 1;
``scheme="crank-nicolson"`` gives s = 1/2).  Snapshots are full-field states at t = k dt,
k = 0..n_steps: by default the kappa_true trajectory (kappa_true(x) = 1/(1+|x|^2) + 1 of
reference 000, f = 1, u0 = sin(pi x) sin(pi y), dt = 0.01, 20 steps) with optional relative
noise, or user data ``snapshots=(times, values)`` (times must be exactly the step grid).
kappa_theta(x) = MLP(x) + 0.5 (2-20-20-20-1 tanh, 921 parameters).  No solve in the loss.
"""

from __future__ import annotations

from invfem.fem import FunctionSpace, unit_square
from invfem.fem.heat import HeatStepper
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss
from ._heat_data import initial_state, snapshots
from .poisson_fem import kappa_reference


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, dt: float = 0.01, n_steps: int = 20,
                 scheme: str = "backward-euler", widths=(2, 20, 20, 20, 1), activation="tanh", positivity=None,
                 shift: float = 0.5, f: float = 1.0, noise: float = 0.0, data_seed: int = 0, snapshots_given=None,
                 backend: str = "auto", kappa_true=kappa_reference, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP."""
    space = FunctionSpace(unit_square(n), order, device=device)
    stepper = HeatStepper(space, dt, n_steps, scheme=scheme, f=f, backend=backend)
    _, states = snapshots(stepper, kappa_true, initial_state(space), snapshots_given, 1, noise, data_seed,
                          every_step=True)
    points = space.quadrature_points
    mlp = MLP(list(widths), activation=activation, positivity=positivity, shift=shift)

    outer = stepper.residual_loss(states)
    loss = CoefficientLoss(mlp, points, outer)

    return Problem(
        name="heat_residual", theta0=mlp.init(seed, device), loss=loss, kappa=mlp, kappa_true=kappa_true,
        residual=lambda theta: outer.residuals(mlp(theta, points)).reshape(-1), structure=loss,
        info={"n": n, "order": order, "dt": dt, "n_steps": n_steps, "scheme": scheme, "n_dofs": space.n_dofs,
              "n_quad": space.n_quad, "n_params": mlp.n_params, "noise": noise, "snapshots": states, "space": space},
    )
