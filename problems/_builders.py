"""The generic builders behind ``problem: poisson`` and ``problem: heat``.

They assemble a :class:`~invfem.problem.Problem` from validated options
(:mod:`._options`) with invfem's one FEM path: a ``FunctionSpace`` on the mesh (with named
Dirichlet parts), the stiffness/mass maps, a state loss (``LinearStateLoss``,
``NewtonStateLoss``, ``TrajectoryLoss``) or a residual loss (``LinearResidualLoss``), the
observations of :mod:`._data`, an MLP coefficient kept positive, and ``alpha ||theta||^2``.
The shipped problems are thin uses of these functions.

kappa <= 0 at a quadrature point makes the forward problem ill-posed: FEM-coupled losses
raise :class:`~invfem.errors.NonPositiveCoefficientError` there (an optimizer rejects the
trial point); residual losses involve no solve and stay defined for any kappa.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from invfem.errors import ConfigError
from invfem.fem import DirichletSystem, FunctionSpace, load_vector, make_mesh, stiffness_map
from invfem.fem.heat import HeatStepper, TrajectoryLoss
from invfem.fem.nonlinear import NewtonStateLoss, NonlinearPoisson
from invfem.fem.residual import LinearResidualLoss
from invfem.fem.stationary import LinearStateLoss
from invfem.joint import joint_problem
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.resources import check_memory, network_memory
from invfem.structured import CoefficientLoss, PositiveCoefficient, RegularizedLoss, has_residual

from . import _data
from ._options import HeatOptions, PoissonOptions


def space_and_dirichlet(opts) -> tuple[FunctionSpace, torch.Tensor | None]:
    """The space (Dirichlet dofs on the named parts) and the prescribed values (None when all 0)."""
    mesh = make_mesh(opts.mesh)
    parts = opts.dirichlet if isinstance(opts.dirichlet, dict) else {"boundary": opts.dirichlet}
    space = FunctionSpace(mesh, opts.order, dirichlet=list(parts), device=opts.device)
    if all(not callable(v) and isinstance(v, (int, float)) and v == 0 for v in parts.values()):
        return space, None
    values = torch.zeros(space.n_dofs, dtype=torch.float64, device=space.device)
    for name, spec in parts.items():                      # a dof on two parts takes the later value
        dofs = torch.as_tensor(space.boundary_dofs(name), device=space.device)
        xy = space.dof_coordinates[dofs]
        values[dofs] = _data.field_function(spec)(xy[:, 0], xy[:, 1]).to(values)
    return space, values[space.dirichlet_index]


def network(opts, n_in: int, n_points: int) -> MLP:
    """The network kappa_theta, its memory at the ``n_points`` it is evaluated at checked first."""
    widths = [n_in, *opts.widths, 1]
    check_memory(f"network widths {widths} at {n_points} quadrature points", network_memory(widths, n_points),
                 "fewer or narrower layers, or a coarser mesh")
    return MLP(widths, activation=opts.activation, positivity=opts.positivity, shift=opts.shift)


def _expected_misfit(misfit) -> dict:
    """``misfit_expected`` (N/2, the mean of (1/2) sum ((Bu - d)/sigma)^2 at the truth) and
    ``n_observations`` where the misfit is weighted by a known sigma; only the count otherwise."""
    if misfit is None:
        return {}
    n = int(misfit.observation.n)
    weighted = torch.is_tensor(misfit.weight)          # ObservationMisfit.gaussian: 1 / (2 sigma^2) per row
    return {"n_observations": n, **({"misfit_expected": n / 2} if weighted else {})}


def _where(points: torch.Tensor):
    return lambda q: f"x = ({float(points[q, 0]):.4g}, {float(points[q, 1]):.4g})"


def _finish(name, mlp, structure, seed, alpha, kappa_true, info, fields=None) -> Problem:
    """The Problem: ``alpha ||theta||^2`` added where asked (as ``alpha^1/2 theta`` residual rows),
    theta0 on the space's device, the residual and its Jacobian where the loss is a sum of squares."""
    loss = RegularizedLoss(structure, alpha) if alpha > 0 else structure
    space = info["space"]
    least_squares = has_residual(loss)
    return Problem(name=name, theta0=mlp.init(seed, space.device), loss=loss, kappa=mlp, kappa_true=kappa_true,
                   residual=loss.residual if least_squares else None,
                   jacobian=loss.jacobian if least_squares else None,
                   jacobian_operator=getattr(loss, "jacobian_operator", None) if least_squares else None,
                   structure=loss, fields=fields,
                   info={"n_dofs": space.n_dofs, "n_free": space.n_free, "n_quad": space.n_quad,
                         "n_params": mlp.n_params, "regularization": alpha, **info})


def _kappa_true(opts, coefficient_input):
    law = getattr(opts.observations, "kappa_true", None)          # synthetic data, or a file's known law
    return None if law is None else _data.kappa_function(law, coefficient_input)


def build_experiments(build, opts, seed: int, name: str) -> Problem:
    """``experiments:``: each experiment built as its own problem (its source, dirichlet,
    observations; the shared mesh, network and seed), joined into one
    (:func:`invfem.joint.joint_problem`) with the top-level prior; an error names the experiment."""
    problems = []
    for k, e in enumerate(opts.experiments):
        changes = {"experiments": None, "observations": e.observations, "regularization": 0.0}
        changes.update({key: getattr(e, key) for key in ("source", "dirichlet", "u0")
                        if getattr(e, key) is not None and hasattr(opts, key)})
        try:
            problems.append(build(replace(opts, **changes), seed, name=f"{name}:{e.name}"))
        except ConfigError as exc:
            raise ConfigError(f"experiments[{k}] ({e.name}): {exc}") from None
    return joint_problem(problems, [e.weight for e in opts.experiments], [e.name for e in opts.experiments],
                         regularization=opts.regularization, name=name)


def build_poisson(opts: PoissonOptions, seed: int = 0, name: str = "poisson") -> Problem:
    """-div(kappa grad u) = f with kappa_theta(x) or kappa_theta(u), FEM-coupled or residual loss
    (one experiment, or the joint problem of ``experiments``)."""
    if opts.experiments is not None:
        return build_experiments(build_poisson, opts, seed, name)
    space, u_d = space_and_dirichlet(opts)
    stiffness = stiffness_map(space)
    source = _data.field_function(opts.source)
    residual = opts.loss == "residual"
    by_state = opts.coefficient_input == "u"
    mlp = network(opts.network, 1 if by_state else 2, space.n_quad)
    points = space.quadrature_points
    info = {"space": space, "kappa_input": opts.coefficient_input, "loss": opts.loss}
    if by_state:
        pde = NonlinearPoisson(space, source, backend=opts.backend, rtol=opts.newton_rtol, maxiter=opts.newton_maxiter,
                               u_dirichlet=u_d)
        info.update(pde=pde, solver=pde.system.solver)
        solve_true = lambda kappa: pde.newton(kappa)[0]
    else:
        system = DirichletSystem.build(space, stiffness.pattern, backend=opts.backend)
        load = load_vector(space, source)
        info.update(solver=system.solver)
        solve_true = lambda kappa: system.solve(stiffness.values(kappa(points)), load, u_d)
    source_q = source(points[:, 0], points[:, 1]) + 0 * points[:, 0]
    obs = _data.steady(opts, space, solve_true, residual, source_q)
    info.update(observed_dofs=obs.dofs, observation_points=obs.points, **_expected_misfit(obs.misfit))
    if residual:
        return _residual_poisson(opts, space, stiffness, mlp, obs, seed, info, name)
    if by_state:
        structure = NewtonStateLoss(pde, mlp, obs.misfit)
    else:
        structure = CoefficientLoss(mlp, points, PositiveCoefficient(
            LinearStateLoss(system, stiffness, load, obs.misfit, u_d), _where(points)))
    return _finish(name, mlp, structure, seed, opts.regularization, _kappa_true(opts, opts.coefficient_input), info,
                   fields=lambda theta: _steady_fields(structure, space, mlp, theta, obs, by_state))


def _residual_poisson(opts, space, stiffness, mlp, obs, seed, info, name) -> Problem:
    load = load_vector(space, obs.source)[space.free_index]
    outer_points = space.interpolate(obs.u_full)[:, None] if opts.coefficient_input == "u" else space.quadrature_points
    outer = LinearResidualLoss(stiffness, obs.u_full, load, space.free_index)
    structure = CoefficientLoss(mlp, outer_points, outer)       # no solve: the residual is defined for any kappa
    info.update(u_obs=obs.u_full)
    info.pop("solver", None)                                   # the data's solve is not the loss's
    kappa_at = space.dof_coordinates if opts.coefficient_input == "x" else obs.u_full[:, None]
    return _finish(name, mlp, structure, seed, opts.regularization, _kappa_true(opts, opts.coefficient_input), info,
                   fields=lambda theta: {"u_obs": obs.u_full, "kappa": mlp(theta, kappa_at).detach()})


def _steady_fields(structure, space, mlp, theta, obs, by_state) -> dict:
    """Nodal fields for ParaView: u_theta, kappa_theta, observed values and the misfit there."""
    with torch.no_grad():
        if by_state:
            u = structure.pde.state(mlp, theta)
            kappa = mlp(theta, u[:, None])
        else:
            u = structure.outer.outer.solve(mlp(theta, space.quadrature_points))
            kappa = mlp(theta, space.dof_coordinates)
    fields = {"u_theta": u, "kappa": kappa}
    if obs.dofs is not None:
        u_obs = torch.full_like(u, float("nan"))
        u_obs[obs.dofs] = obs.misfit.data
        fields.update(u_obs=u_obs, misfit=u - u_obs)
    if obs.points is not None:
        at_points = obs.misfit.observation(u)
        fields["_points"] = {"points": obs.points, "u_obs": obs.misfit.data, "u_theta": at_points,
                             "misfit": at_points - obs.misfit.data}
    return fields


def build_heat(opts: HeatOptions, seed: int = 0, name: str = "heat") -> Problem:
    """u_t = div(kappa_theta(x) grad u) + f by the theta-scheme, FEM-coupled or residual loss
    (one experiment, or the joint problem of ``experiments``)."""
    if opts.experiments is not None:
        return build_experiments(build_heat, opts, seed, name)
    space, u_d = space_and_dirichlet(opts)
    check_memory(f"n_steps: {opts.n_steps} (states of {space.n_dofs} dofs)",
                 4 * 8.0 * (opts.n_steps + 1) * space.n_dofs, "fewer steps or a coarser mesh")
    source = _data.field_function(opts.source, ("x", "y", "t"))
    stepper = HeatStepper(space, opts.dt, opts.n_steps, scheme=opts.scheme, f=source, backend=opts.backend,
                          u_dirichlet=u_d)
    xy = space.dof_coordinates
    u0 = _data.field_function(opts.u0)(xy[:, 0], xy[:, 1]).to(torch.float64) + 0 * xy[:, 0]
    u0 = u0.index_fill(0, space.dirichlet_index, 0.0) if u_d is None else u0.index_copy(0, space.dirichlet_index, u_d)
    points = space.quadrature_points
    mlp = network(opts.network, 2, space.n_quad)
    residual = opts.loss == "residual"
    obs = _data.transient(opts, space, stepper, lambda kappa: stepper.trajectory(kappa(points), u0), residual)
    info = {"space": space, "kappa_input": "x", "loss": opts.loss, "stepper": stepper, "dt": opts.dt,
            "n_steps": opts.n_steps, "scheme": opts.scheme, "u0": u0, "observed_steps": obs.steps,
            "observation_points": obs.points}
    if residual:
        outer = stepper.residual_loss(obs.u_full)
        structure = CoefficientLoss(mlp, points, outer)          # no solve: the residual is defined for any kappa
        info.update(snapshots=obs.u_full)
        times = opts.dt * obs.steps.to(torch.float64)
        return _finish(name, mlp, structure, seed, opts.regularization, _kappa_true(opts, "x"), info,
                       fields=lambda theta: {"times": times, "u_obs": obs.u_full,
                                             "kappa": mlp(theta, space.dof_coordinates).detach()})
    structure = CoefficientLoss(mlp, points, PositiveCoefficient(TrajectoryLoss(stepper, u0, obs.misfit), _where(points)))
    info.update(solver=stepper.system.solver, **_expected_misfit(obs.misfit))

    def fields(theta):
        with torch.no_grad():
            states = stepper.trajectory(mlp(theta, points), u0)
        out = {"times": stepper.times, "u_theta": states, "kappa": mlp(theta, space.dof_coordinates).detach()}
        if obs.row_points is not None:         # point data: one cloud vertex per observation (its point and time)
            at_points = obs.misfit.observation(states.reshape(-1))
            out["_points"] = {"points": obs.row_points, "t": obs.row_times, "u_obs": obs.misfit.data,
                              "u_theta": at_points, "misfit": at_points - obs.misfit.data}
        return out

    return _finish(name, mlp, structure, seed, opts.regularization, _kappa_true(opts, "x"), info, fields=fields)


def reject_unknown(options: dict, valid, where: str) -> None:
    """ConfigError naming unknown keyword options of a shipped problem (before any work)."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; valid: {sorted(valid)}")
