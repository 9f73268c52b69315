"""Observations for the generic builders: from a file, from arrays, or synthetic from a known law.

Everything ends as an :class:`~invfem.misfit.ObservationMisfit` on the nodal state (steady)
or on the flattened trajectory (heat), plus what the outputs show (observed nodes or points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.spatial
import torch

from invfem.errors import ConfigError, InvfemError, ShapeError
from invfem.expressions import compile_expression
from invfem.fem.heat import check_snapshot_times
from invfem.fem.observations import nodal_observation, point_observation, read_observations, transient_observation
from invfem.misfit import LinearObservation, ObservationMisfit

from ._common import noisy, observed_dofs
from ._options import FileOptions, Snapshots, SyntheticOptions


def kappa_function(spec, coefficient_input: str):
    """``points (n, 2) -> (n,)`` (kappa(x)) or ``values (n, 1) -> (n,)`` (kappa(u)) from a formula or callable."""
    if callable(spec):
        return spec
    if coefficient_input == "u":
        f = compile_expression(spec, ("u",))
        return lambda values: f(u=values[..., 0])
    f = compile_expression(spec, ("x", "y"))
    return lambda points: f(x=points[:, 0], y=points[:, 1])


def field_function(spec, variables=("x", "y")):
    """Values of a number/formula/callable at coordinates ``(n, 2)`` (and a time for heat)."""
    if callable(spec):
        return spec
    f = compile_expression(spec, variables)
    if "t" in variables:
        return lambda x, y, t: f(x=x, y=y, t=torch.as_tensor(t, dtype=x.dtype, device=x.device) + 0 * x)
    return lambda x, y: f(x=x, y=y)


def check_positive_law(kappa, inputs: torch.Tensor, kind: str) -> None:
    """ConfigError where the synthetic law ``kappa_true`` is <= 0 (or not finite) at a quadrature
    point (kind ``x``) or at a state value there (``u``): data of a PDE that is not elliptic."""
    with torch.no_grad():
        values = torch.as_tensor(kappa(inputs), dtype=torch.float64).reshape(-1)
    bad = ~(values > 0)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        at = (f"x = ({float(inputs[i, 0]):.4g}, {float(inputs[i, 1]):.4g})" if kind == "x" else
              f"u = {float(inputs[i, 0]):.4g}")
        raise ConfigError(f"observations.synthetic.kappa_true is {float(values[i]):.4g} at {at} ({int(bad.sum())} of "
                          f"{values.numel()} quadrature points <= 0 or not finite): a conductivity must be > 0 "
                          "everywhere, or the PDE has no well-posed solution")


def _solve_synthetic(solve, kappa_true):
    """The true state of a synthetic data set; a solve that fails names kappa_true."""
    try:
        return solve(kappa_true)
    except InvfemError as exc:
        raise ConfigError(f"observations.synthetic: the state of kappa_true could not be computed "
                          f"({type(exc).__name__}: {exc})") from None


def random_points(space, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly distributed over the mesh (triangles drawn by area)."""
    p, t = space.mesh.p, space.mesh.t
    corners = p[:, t]                                                       # (2, 3, E)
    area = 0.5 * np.abs((corners[0, 1] - corners[0, 0]) * (corners[1, 2] - corners[1, 0])
                        - (corners[0, 2] - corners[0, 0]) * (corners[1, 1] - corners[1, 0]))
    cells = rng.choice(t.shape[1], n, p=area / area.sum())
    r1, r2 = np.sqrt(rng.uniform(size=n)), rng.uniform(size=n)
    weights = np.stack([1 - r1, r1 * (1 - r2), r1 * r2])                   # uniform in a triangle
    return np.einsum("dkn,kn->nd", corners[:, :, cells], weights)


@dataclass
class Observed:
    """A misfit and what the outputs need: observed ``dofs`` (nodal) or ``points``, the full
    nodal field ``u_full`` where the data give one (residual losses), the ``source`` values at
    the quadrature points when they are data too (residual minimisation with a noisy source)."""

    misfit: ObservationMisfit | None          # None for residual losses (the data enter the residual)
    dofs: torch.Tensor | None = None
    points: np.ndarray | None = None
    u_full: torch.Tensor | None = None
    source: torch.Tensor | None = None
    steps: torch.Tensor | None = None
    row_points: np.ndarray | None = None      # heat point data: each misfit row's point and time
    row_times: np.ndarray | None = None


def _misfit(observation: LinearObservation, data: torch.Tensor, sigma) -> ObservationMisfit:
    """The reference's sum of squares, or (1/2) sum ((B u - d) / sigma)^2 when sigma is known."""
    if sigma is None:
        return ObservationMisfit(observation, data)
    return ObservationMisfit.gaussian(observation, data, sigma)


def _noise(values: torch.Tensor, opts: SyntheticOptions, rng) -> torch.Tensor:
    if opts.noise_kind == "gaussian":
        return values + opts.noise * values.new_tensor(rng.standard_normal(tuple(values.shape)))
    return noisy(values, opts.noise, rng)


def _sigma(opts: SyntheticOptions):
    return opts.noise if opts.noise_kind == "gaussian" else None


def nodal_field(space, data) -> torch.Tensor:
    """A full nodal field from the rows of ``data`` (:class:`~invfem.fem.observations.ObservationData`),
    one at every node (residual losses need one)."""
    points, values = data.points, data.values
    coords = space.dof_coordinates.cpu().numpy()
    scale = np.ptp(coords, axis=0).max()
    distance, index = scipy.spatial.cKDTree(coords).query(points)
    off = np.flatnonzero(distance > 1e-9 * scale)
    if off.size:
        x, y = points[off[0]]
        raise ConfigError(f"{data.where(off[0])}: ({float(x)!r}, {float(y)!r}) is not a node of the mesh; a residual "
                          "loss needs u at every node")
    missing = np.setdiff1d(np.arange(space.n_dofs), index)
    if missing.size:
        x, y = coords[missing[0]]
        raise ConfigError(f"{data.source}: no value at node ({x:.6g}, {y:.6g}) ({missing.size} nodes "
                          "missing); a residual loss needs u at every node")
    u = np.empty(space.n_dofs)
    u[index] = values
    return torch.as_tensor(u, device=space.device)


def steady(opts, space, solve_true, residual: bool, source_q: torch.Tensor) -> Observed:
    """Observations of a stationary state: a file, or synthetic from ``solve_true(kappa_true)``.

    Residual losses get the full nodal field and the source at the quadrature points
    ``source_q`` (with ``source_noise``, after the data noise: reference 000's order)."""
    spec = opts.observations
    if isinstance(spec, FileOptions):
        data = read_observations(spec.file)
        sigma = data.sigma if data.sigma is not None else spec.sigma
        values = torch.as_tensor(data.values, device=space.device)
        if residual:
            return Observed(None, u_full=nodal_field(space, data), source=source_q)
        return Observed(_misfit(point_observation(space, data.points, where=data.where), values, sigma),
                        points=data.points)
    rng = np.random.default_rng(spec.data_seed)
    kappa_true = kappa_function(spec.kappa_true, opts.coefficient_input)
    if opts.coefficient_input == "x":
        check_positive_law(kappa_true, space.quadrature_points, "x")
    u_true = _solve_synthetic(solve_true, kappa_true)
    if opts.coefficient_input == "u":
        check_positive_law(kappa_true, space.interpolate(u_true)[:, None], "u")
    if residual:
        if spec.at != "nodes" or spec.observed != 1:
            raise ConfigError("observations.synthetic: a residual loss needs full fields (at: nodes, observed: 1)")
        u_full = _noise(u_true, spec, rng)
        return Observed(None, u_full=u_full, source=noisy(source_q, spec.source_noise, rng))
    if spec.at == "nodes":
        dofs = observed_dofs(space, spec.observed, rng)
        return Observed(_misfit(nodal_observation(dofs), _noise(u_true[dofs], spec, rng), _sigma(spec)), dofs=dofs)
    points = random_points(space, int(spec.at), rng)
    observation = point_observation(space, points)
    return Observed(_misfit(observation, _noise(observation(u_true), spec, rng), _sigma(spec)), points=points)


def transient(opts, space, stepper, trajectory_true, residual: bool) -> Observed:
    """Observations of a trajectory ``(n_steps + 1, n_dofs)``: snapshots, a file, or synthetic."""
    spec, n_dofs, dt, n_steps = opts.observations, space.n_dofs, stepper.dt, stepper.n_steps
    free = space.free_index
    if isinstance(spec, Snapshots):
        steps = check_snapshot_times(spec.times, dt, n_steps, every_step=residual).to(space.device)
        values = torch.as_tensor(spec.values, dtype=torch.float64, device=space.device)
        if values.shape != (steps.numel(), n_dofs):
            raise ShapeError(f"snapshot values must have shape ({steps.numel()}, {n_dofs}) (one row per time), "
                              f"got {tuple(values.shape)}")
        return _snapshot_misfit(steps, values, free, n_dofs, residual)
    if isinstance(spec, FileOptions):
        if residual:
            raise ConfigError("loss: residual needs full-field snapshots at every step (synthetic at nodes, or arrays)")
        data = read_observations(spec.file, transient=True)
        steps = _steps_of(data, dt, n_steps)
        observation, order = transient_observation(space, data, steps, n_dofs)
        sigma = data.sigma if data.sigma is not None else spec.sigma
        values = torch.as_tensor(data.values[order], device=space.device)
        misfit = _misfit(observation, values, None if sigma is None else np.broadcast_to(sigma, data.values.shape)[order])
        return Observed(misfit, points=data.points, steps=steps, row_points=data.points[order],
                        row_times=data.times[order])
    rng = np.random.default_rng(spec.data_seed)
    if residual or spec.times == "all":
        steps = torch.arange(0 if residual else 1, n_steps + 1)
    elif isinstance(spec.times, (list, tuple)):
        steps = check_snapshot_times(spec.times, dt, n_steps, every_step=False)
    else:
        steps = torch.arange(int(spec.times), n_steps + 1, int(spec.times))
    steps = steps.to(space.device)
    kappa_true = kappa_function(spec.kappa_true, "x")
    check_positive_law(kappa_true, space.quadrature_points, "x")
    with torch.no_grad():
        states = _solve_synthetic(trajectory_true, kappa_true)[steps]
    if spec.at == "nodes":
        if spec.observed != 1:
            raise ConfigError("observations.synthetic: heat observes all free nodes (observed: 1) or random points (at: n)")
        return _snapshot_misfit(steps, _noise(states, spec, rng), free, n_dofs, residual, _sigma(spec))
    if residual:
        raise ConfigError("observations.synthetic: a residual loss needs full fields (at: nodes)")
    points = random_points(space, int(spec.at), rng)
    base = point_observation(space, points)
    observation = LinearObservation.stack([base.shifted(int(k) * n_dofs) for k in steps.tolist()])
    values = torch.cat([base(state) for state in states])
    times = dt * steps.cpu().numpy().astype(np.float64)
    return Observed(_misfit(observation, _noise(values, spec, rng), _sigma(spec)), points=points, steps=steps,
                    row_points=np.tile(points, (len(times), 1)), row_times=np.repeat(times, len(points)))


def _steps_of(data, dt: float, n_steps: int) -> torch.Tensor:
    """The time step of every row: its time must lie on the grid k dt, k = 0..n_steps (within
    round-off: 0.30000000000000004 is step 3 of dt = 0.1, as 0.3 is); the first row that does not
    is a ConfigError naming its line."""
    times = np.asarray(data.times, dtype=np.float64)
    k = np.round(times / dt)
    off = np.abs(times - k * dt) > 1e-9 * max(dt, 1.0)
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ConfigError(f"{data.where(row)}: t = {float(times[row])!r} is not on the step grid k*dt (dt = {dt})")
    outside = (k < 0) | (k > n_steps)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise ConfigError(f"{data.where(row)}: t = {float(times[row])!r} lies outside [0, {n_steps * dt!r}] "
                          f"(n_steps = {n_steps}, dt = {dt})")
    return torch.as_tensor(k.astype(np.int64))


def _snapshot_misfit(steps, values, free, n_dofs, residual, sigma=None) -> Observed:
    """Full nodal snapshots: the misfit on their free dofs (and the snapshots for a residual loss)."""
    index = (steps[:, None] * n_dofs + free[None, :]).reshape(-1)
    misfit = _misfit(nodal_observation(index), values[:, free].reshape(-1), sigma)
    return Observed(misfit, dofs=free, u_full=values if residual else None, steps=steps)
