"""Several experiments on one specimen: one law kappa_theta fitted to all of them at once.

A law is identified over a wide range (and up to no factor) only by several loadings of one
specimen: different sources, boundary values, observations. Each experiment is its own
:class:`~invfem.problem.Problem` (its own FE system and factorization); :func:`joint_problem`
makes the one problem whose loss is their weighted sum plus one prior,

    L(theta) = sum_i w_i L_i(theta) + alpha ||theta||^2,

with the exact structured Hessian ``sum_i w_i H_i + 2 alpha I``
(:class:`~invfem.structured.WeightedSum`), the stacked residual and Jacobian where every
experiment is a sum of squares, and ``info["experiments"]``: each experiment's name, weight
and problem, from which ``invfem run`` writes per-experiment fields, observation clouds and
misfits. ``problem: poisson`` and ``problem: heat`` build it from ``experiments:`` in a config;
a problem file can return it directly::

    from invfem.joint import joint_problem
    from invfem.problems import poisson

    def make_problem(seed=0):
        common = dict(mesh="plate.msh", coefficient_input="u", network={"widths": [20, 20]})
        loaded = poisson.make_problem(seed, source=10, dirichlet={"outer": 0}, observations="a.csv", **common)
        heated = poisson.make_problem(seed, source=0, dirichlet={"outer": 0, "hole": 1},
                                      observations="b.csv", **common)
        return joint_problem([loaded, heated], names=["loaded", "heated"], regularization=1e-4)
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch

from invfem.errors import ConfigError
from invfem.problem import Problem
from invfem.structured import RegularizedLoss, WeightedSum, has_residual

#: experiment names become parts of file names
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


def joint_problem(problems, weights=None, names=None, regularization: float = 0.0, name: str | None = None) -> Problem:
    """One problem from experiments that share a law (see the module docstring).

    ``problems``: the experiments, each built with the same network and seed (the same
    ``theta0``) and without a prior; ``weights`` (default 1 each) multiply their losses;
    ``names`` (default ``experiment1``, ...) name their outputs; ``regularization`` is the
    one prior weight alpha of the joint loss."""
    problems = list(problems)
    if not problems:
        raise ConfigError("experiments: give at least one experiment")
    n = len(problems)
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    names = [f"experiment{i + 1}" for i in range(n)] if names is None else [str(x) for x in names]
    if len(weights) != n or len(names) != n:
        raise ConfigError(f"experiments: {n} experiments but {len(weights)} weights and {len(names)} names")
    for i, (w, label) in enumerate(zip(weights, names)):
        if not (math.isfinite(w) and w > 0):
            raise ConfigError(f"experiments[{i}].weight must be a number > 0, got {w!r}")
        if not NAME.match(label):
            raise ConfigError(f"experiments[{i}].name must be 1-40 letters, digits, '_', '-' or '.' (it names files), "
                              f"got {label!r}")
    if len(set(names)) != n:
        raise ConfigError(f"experiments: names must differ, got {names}")
    first = problems[0]
    for i, p in enumerate(problems[1:], 1):
        if p.theta0.shape != first.theta0.shape or not torch.equal(p.theta0, first.theta0):
            raise ConfigError(f"experiments[{i}] ({names[i]}): its network or seed differs from experiment "
                              f"{names[0]}'s: the experiments must share one law (same network, same seed)")
        if p.info.get("kappa_input", "x") != first.info.get("kappa_input", "x"):
            raise ConfigError(f"experiments[{i}] ({names[i]}): kappa of {p.info.get('kappa_input', 'x')} where "
                              f"{names[0]} has kappa of {first.info.get('kappa_input', 'x')}")
    for i, p in enumerate(problems):
        if p.regularization:
            raise ConfigError(f"experiments[{i}] ({names[i]}) has its own regularization {p.regularization:g}: give "
                              "the prior once, as the joint problem's regularization")
    alpha = float(regularization)
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"regularization must be a number >= 0, got {regularization!r}")

    terms = tuple(p.structure if p.structure is not None else p.loss for p in problems)
    total = WeightedSum(terms, tuple(weights))
    loss = RegularizedLoss(total, alpha) if alpha > 0 else total
    least_squares = all(p.residual is not None and has_residual(t) for p, t in zip(problems, terms))
    structured = all(p.structure is not None for p in problems)
    kappa_true = next((p.kappa_true for p in problems if p.kappa_true is not None), None)
    experiments = [{"name": label, "weight": w, "problem": p} for label, w, p in zip(names, weights, problems)]
    info = {key: first.info[key] for key in ("space", "kappa_input", "loss", "n_dofs", "n_free", "n_quad", "n_params")
            if key in first.info}
    counts = [p.info.get("n_observations") for p in problems]
    if all(c is not None for c in counts):
        info["n_observations"] = int(sum(counts))
    expected = [p.info.get("misfit_expected") for p in problems]
    if all(e is not None for e in expected):
        info["misfit_expected"] = float(sum(w * e for w, e in zip(weights, expected)))
    points = [np.asarray(p.info["observation_points"]) for p in problems if p.info.get("observation_points") is not None]
    if points:
        info["observation_points"] = np.concatenate([q[:, :2] for q in points])
    info.update(regularization=alpha, experiments=experiments)
    return Problem(name=name or "+".join(names), theta0=first.theta0, loss=loss, kappa=first.kappa,
                   kappa_true=kappa_true,
                   residual=loss.residual if least_squares else None,
                   jacobian=loss.jacobian if least_squares else None,
                   jacobian_operator=loss.jacobian_operator if least_squares else None,
                   bounds=first.bounds, structure=loss if structured else None, fields=None, info=info)


def experiment_misfits(problem: Problem, theta: torch.Tensor) -> list[dict] | None:
    """Per experiment of a joint problem: name, weight, misfit ``L_i(theta)`` (unweighted,
    without the prior), the observation count and the expected misfit at the noise level where
    known; None for a problem of one experiment."""
    experiments = problem.info.get("experiments")
    if not experiments:
        return None
    out = []
    with torch.no_grad():
        for e in experiments:
            p = e["problem"]
            row = {"name": e["name"], "weight": e["weight"], "misfit": float(p.loss(theta))}
            for key in ("n_observations", "misfit_expected"):
                if key in p.info:
                    row[key] = p.info[key]
            out.append(row)
    return out
