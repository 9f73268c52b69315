"""Classical unconstrained test functions with known minima (Moré, Garbow & Hillstrom 1981;
Surjanovic & Bingham's library), written in torch for optimizer tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class TestFunction:
    """``fun`` on a flat float64 tensor, its standard start ``x0`` and its minimum value ``f_min``."""

    name: str
    fun: Callable[[torch.Tensor], torch.Tensor]
    x0: tuple
    f_min: float

    __test__ = False  # not a pytest class

    def start(self) -> torch.Tensor:
        return torch.tensor(self.x0, dtype=torch.float64)


def rosenbrock(x):
    return torch.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def beale(x):
    a, b = x[0], x[1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def helical_valley(x):
    theta = torch.atan2(x[1], x[0]) / (2 * torch.pi)
    r = torch.sqrt(x[0] ** 2 + x[1] ** 2)
    return 100 * ((x[2] - 10 * theta) ** 2 + (r - 1) ** 2) + x[2] ** 2


def powell_singular(x):
    return ((x[0] + 10 * x[1]) ** 2 + 5 * (x[2] - x[3]) ** 2 + (x[1] - 2 * x[2]) ** 4
            + 10 * (x[0] - x[3]) ** 4)


def wood(x):
    return (100 * (x[0] ** 2 - x[1]) ** 2 + (x[0] - 1) ** 2 + (x[2] - 1) ** 2 + 90 * (x[2] ** 2 - x[3]) ** 2
            + 10.1 * ((x[1] - 1) ** 2 + (x[3] - 1) ** 2) + 19.8 * (x[1] - 1) * (x[3] - 1))


def booth(x):
    return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2


def himmelblau(x):
    return (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2


def dixon_price(x):
    i = torch.arange(2, x.shape[0] + 1, dtype=x.dtype)
    return (x[0] - 1) ** 2 + torch.sum(i * (2 * x[1:] ** 2 - x[:-1]) ** 2)


def trid(x):
    return torch.sum((x - 1) ** 2) - torch.sum(x[1:] * x[:-1])


def zakharov(x):
    s = torch.sum(0.5 * torch.arange(1, x.shape[0] + 1, dtype=x.dtype) * x)
    return torch.sum(x**2) + s**2 + s**4


def box3d(x):
    t = 0.1 * torch.arange(1, 11, dtype=x.dtype)
    r = (torch.exp(-t * x[0]) - torch.exp(-t * x[1]) - x[2] * (torch.exp(-t) - torch.exp(-10 * t)))
    return torch.sum(r**2)


def mccormick(x):
    return torch.sin(x[0] + x[1]) + (x[0] - x[1]) ** 2 - 1.5 * x[0] + 2.5 * x[1] + 1


def three_hump_camel(x):
    return 2 * x[0] ** 2 - 1.05 * x[0] ** 4 + x[0] ** 6 / 6 + x[0] * x[1] + x[1] ** 2


def _trid_min(n):
    return -n * (n + 4) * (n - 1) / 6


CLASSICAL = (
    TestFunction("rosenbrock-2", rosenbrock, (-1.2, 1.0), 0.0),
    TestFunction("rosenbrock-10", rosenbrock, (-1.2, 1.0) * 5, 0.0),
    TestFunction("beale", beale, (1.0, 1.0), 0.0),
    TestFunction("helical-valley", helical_valley, (-1.0, 0.0, 0.0), 0.0),
    TestFunction("powell-singular", powell_singular, (3.0, -1.0, 0.0, 1.0), 0.0),
    TestFunction("wood", wood, (-3.0, -1.0, -3.0, -1.0), 0.0),
    TestFunction("booth", booth, (0.0, 0.0), 0.0),
    TestFunction("himmelblau", himmelblau, (0.0, 0.0), 0.0),
    TestFunction("dixon-price-10", dixon_price, (1.0,) * 10, 0.0),
    TestFunction("trid-6", trid, (0.0,) * 6, _trid_min(6)),
    TestFunction("zakharov-5", zakharov, (1.0,) * 5, 0.0),
    TestFunction("box-3d", box3d, (0.0, 10.0, 20.0), 0.0),
    TestFunction("mccormick", mccormick, (0.0, 0.0), -1.913222954981037),
    TestFunction("three-hump-camel", three_hump_camel, (1.0, 1.0), 0.0),
)


# ---------------------------------------------------------------------------------------
# residual problems (Moré, Garbow & Hillstrom 1981) for the least-squares methods
# ---------------------------------------------------------------------------------------

_T_BROWN_DENNIS = torch.arange(1, 21, dtype=torch.float64) / 5
_Y_OSBORNE = torch.tensor([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718,
                           0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467,
                           0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406], dtype=torch.float64)


def rosenbrock_residual(x):
    return torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def powell_singular_residual(x):
    return torch.stack([x[0] + 10 * x[1], 5 ** 0.5 * (x[2] - x[3]), (x[1] - 2 * x[2]) ** 2,
                        10 ** 0.5 * (x[0] - x[3]) ** 2])


def brown_dennis_residual(x):
    t = _T_BROWN_DENNIS.to(x.device)
    return (x[0] + x[1] * t - torch.exp(t)) ** 2 + (x[2] + x[3] * torch.sin(t) - torch.cos(t)) ** 2


def osborne_residual(x):
    t = 10 * torch.arange(33, dtype=torch.float64, device=x.device)
    return _Y_OSBORNE.to(x.device) - (x[0] + x[1] * torch.exp(-t * x[3]) + x[2] * torch.exp(-t * x[4]))


@dataclass(frozen=True)
class ResidualProblem:
    """Residuals ``fun`` (flat tensor -> (m,)), the standard start ``x0`` and bounds for a
    bounded variant (a bound active at the solution)."""

    name: str
    fun: Callable[[torch.Tensor], torch.Tensor]
    x0: tuple
    bounds: tuple

    __test__ = False

    def start(self) -> torch.Tensor:
        return torch.tensor(self.x0, dtype=torch.float64)


LEAST_SQUARES = (
    ResidualProblem("rosenbrock", rosenbrock_residual, (-1.2, 1.0), ((-2.0, -2.0), (0.9, 2.0))),
    ResidualProblem("powell", powell_singular_residual, (3.0, -1.0, 0.0, 1.0),
                    ((0.1, -10.0, -10.0, -10.0), (10.0,) * 4)),
    ResidualProblem("brown_dennis", brown_dennis_residual, (25.0, 5.0, -5.0, -1.0),
                    ((-30.0, 0.0, -30.0, -30.0), (30.0,) * 4)),
    ResidualProblem("osborne", osborne_residual, (0.5, 1.5, -1.0, 0.01, 0.02),
                    ((0.0, 0.0, -5.0, 0.0, 0.0), (5.0, 5.0, 5.0, 1.0, 1.0))),
)
