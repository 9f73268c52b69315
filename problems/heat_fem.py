"""FEM-coupled heat equation: learn kappa_theta(x) from states produced by time stepping.

    u_t = div(kappa_theta(x) grad u) + f,  u = 0 on the boundary,  u(0) = u0,
    L(theta) = sum_{observed k} sum_i (u^k_theta(x_i) - u^k_obs(x_i))^2,

with u^k from :class:`invfem.fem.heat.HeatStepper` (backward Euler, or Crank–Nicolson with
``scheme``).  A = M + s dt K(kappa_theta) is the same at every step: the forward trajectory,
its adjoint and every Hessian-vector product of a full Hessian use ONE factorization.
Defaults as :mod:`invfem.problems.heat_residual` (kappa_true of reference 000, f = 1,
u0 = sin(pi x) sin(pi y), dt = 0.01, 20 steps, every step observed); ``observe_every`` thins
the observed steps, ``snapshots_given=(times, values)`` supplies data (times on the step grid).
"""

from __future__ import annotations

from invfem.fem import FunctionSpace, unit_square
from invfem.fem.heat import HeatStepper, TrajectoryLoss
from invfem.misfit import QuadraticMisfit
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss
from ._heat_data import initial_state, snapshots
from .poisson_fem import kappa_reference


def make_problem(n: int = 10, seed: int = 0, *, order: int = 1, dt: float = 0.01, n_steps: int = 20,
                 scheme: str = "backward-euler", observe_every: int = 1, widths=(2, 20, 20, 20, 1),
                 activation="tanh", positivity=None, shift: float = 0.5, f: float = 1.0, noise: float = 0.0,
                 data_seed: int = 0, snapshots_given=None, backend: str = "auto",
                 kappa_true=kappa_reference, device=None) -> Problem:
    """Build the problem on an ``n x n`` mesh; ``seed`` initialises the MLP."""
    space = FunctionSpace(unit_square(n), order, device=device)
    stepper = HeatStepper(space, dt, n_steps, scheme=scheme, f=f, backend=backend)
    u0 = initial_state(space)
    steps, observed = snapshots(stepper, kappa_true, u0, snapshots_given, observe_every, noise, data_seed,
                                every_step=False)
    free = space.free_index
    points = space.quadrature_points
    mlp = MLP(list(widths), activation=activation, positivity=positivity, shift=shift)

    outer = TrajectoryLoss(stepper, u0, QuadraticMisfit((steps[:, None] * space.n_dofs + free[None, :]).reshape(-1),
                                                      observed[:, free].reshape(-1)))
    loss = CoefficientLoss(mlp, points, outer)

    return Problem(
        name="heat_fem", theta0=mlp.init(seed, device), loss=loss, kappa=mlp, kappa_true=kappa_true, structure=loss,
        info={"n": n, "order": order, "dt": dt, "n_steps": n_steps, "scheme": scheme, "n_dofs": space.n_dofs,
              "n_quad": space.n_quad, "n_params": mlp.n_params, "observed_steps": steps, "noise": noise,
              "stepper": stepper, "solver": stepper.system.solver, "space": space, "u0": u0},
    )
