"""Synthetic or user-given snapshots for the two heat problems."""

from __future__ import annotations

import math

import numpy as np
import torch

from invfem.errors import ShapeError
from invfem.fem.heat import HeatStepper, check_snapshot_times
from ._common import noisy


def initial_state(space) -> torch.Tensor:
    """u0 = sin(pi x) sin(pi y) at the dofs (zero on the boundary)."""
    xy = space.dof_coordinates
    u0 = torch.sin(math.pi * xy[:, 0]) * torch.sin(math.pi * xy[:, 1])
    return u0.index_fill(0, space.dirichlet_index, 0.0)


def snapshots(stepper: HeatStepper, kappa_true, u0, snapshots_given, observe, noise, data_seed, every_step):
    """(step indices, values ``(len, n_dofs)``): validated user snapshots, or the kappa_true
    trajectory at the requested steps with relative uniform noise."""
    space = stepper.space
    if snapshots_given is not None:
        times, values = snapshots_given
        steps = check_snapshot_times(times, stepper.dt, stepper.n_steps, every_step)
        values = torch.as_tensor(values, dtype=torch.float64, device=space.device)
        if values.shape != (steps.numel(), space.n_dofs):
            raise ShapeError(f"snapshot values must have shape ({steps.numel()}, {space.n_dofs}) (one row per time), "
                             f"got {tuple(values.shape)}")
        return steps.to(space.device), values
    steps = torch.arange(stepper.n_steps + 1) if every_step else torch.arange(observe, stepper.n_steps + 1, observe)
    steps = steps.to(space.device)
    with torch.no_grad():
        states = stepper.trajectory(kappa_true(space.quadrature_points), u0)[steps]
    return steps, noisy(states, noise, np.random.default_rng(data_seed))
