"""Reference 002 §2's unit circle: a one-parameter nonlinear discretization whose regression
objective has a minimum and a maximum, both stationary.

    p(theta) = (cos theta, sin theta),   L(theta) = 1/2 ||p(theta) - y||^2,
    L'(theta) = -y . p'(theta) = 0  at  theta* = atan2(y2, y1) (minimum, L'' = |y|)
                                    and theta* + pi (maximum, L'' = -|y|).

The error p - y is orthogonal to the tangent p' at both (Galerkin optimality does not single
out the minimum). ``info["stationary_points"]`` lists both with their second derivatives.
"""

from __future__ import annotations

import math

import torch

from invfem.errors import ConfigError
from invfem.problem import Problem


def make_problem(seed: int = 0, *, target=(2.0, 1.0), theta0: float | None = None) -> Problem:
    """The unit-circle regression of ``target`` (a point of the plane, not the origin); the start
    ``theta0`` (default: uniform in [-pi, pi) from ``seed``)."""
    try:
        y = torch.tensor([float(v) for v in target], dtype=torch.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"target must be two numbers [y1, y2], got {target!r}") from None
    if y.shape != (2,) or not torch.isfinite(y).all() or float(y.norm()) == 0:
        raise ConfigError(f"target must be two finite numbers, not the origin, got {target!r}")
    if theta0 is None:
        gen = torch.Generator().manual_seed(int(seed))
        theta0 = float(-math.pi + 2 * math.pi * torch.rand(1, generator=gen, dtype=torch.float64))
    elif isinstance(theta0, bool) or not isinstance(theta0, (int, float)):
        raise ConfigError(f"theta0 must be a number, got {theta0!r}")

    def point(theta):
        return torch.stack([torch.cos(theta[0]), torch.sin(theta[0])])

    def loss(theta):
        return 0.5 * torch.sum((point(theta) - y) ** 2)

    def residual(theta):
        return (point(theta) - y) / math.sqrt(2.0)

    minimum = math.atan2(float(y[1]), float(y[0]))
    maximum = minimum + math.pi if minimum <= 0 else minimum - math.pi
    radius = float(y.norm())
    return Problem(name="unit_circle", theta0=torch.tensor([float(theta0)], dtype=torch.float64), loss=loss,
                   residual=residual, kappa=lambda theta, points: point(theta).expand(points.shape[0], 2)[:, 0],
                   info={"target": y, "point": point,
                         "stationary_points": [{"theta": minimum, "kind": "minimum", "second_derivative": radius},
                                               {"theta": maximum, "kind": "maximum", "second_derivative": -radius}]})
