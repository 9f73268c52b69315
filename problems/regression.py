"""Function fitting by least squares (reference 001): an MLP f_theta fitted to a 1-D target.

    L(theta) = (1/N) sum_i (f_theta(x_i) - y(x_i))^2     over N training points in ``interval``

Reference 001 fits ``5x + 3``, ``(x - 1/2)^2``, ``e^{-x}``, ``sin(x - pi)``, ``sin 5x`` and
``sin 10x`` with a 1131-parameter tanh network (11 hidden layers of width 10) on 10,000 random
points in [-1.1, 1.1] and tests on 10,000 grid points in [-1, 1]. The loss is a
:class:`~invfem.structured.CoefficientLoss` (the network at fixed points, a pointwise
quadratic outer loss), so its exact Hessian is the closed-form structured one.
``problem.info["test_error"](theta)`` is the mean squared error on the test grid.
"""

from __future__ import annotations

import math

import torch

from invfem.errors import ConfigError
from invfem.expressions import compile_expression
from invfem.nn import MLP
from invfem.problem import Problem
from invfem.structured import CoefficientLoss, Linearization

from ._common import interval_bounds

#: reference 001's targets by name (any formula in x is accepted too)
TARGETS = {"linear": "5*x + 3", "quadratic": "(x - 0.5)^2", "exp": "exp(-x)", "sin": "sin(x - pi)",
           "sin5": "sin(5*x)", "sin10": "sin(10*x)"}

REFERENCE_001_WIDTHS = (1,) + (10,) * 11 + (1,)     # 1131 parameters


class MeanSquaredError:
    """``mean((f - y)^2)`` over the points: its Hessian in f is ``2/N I``, all pointwise, so the
    structured Hessian folds it into the network pass and adds nothing else."""

    def __init__(self, targets: torch.Tensor):
        self.targets = targets

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return torch.mean((values - self.targets) ** 2)

    def residual_vector(self, values: torch.Tensor) -> torch.Tensor:
        """``(f - y) / N^1/2``: the mean squared error is its squared norm."""
        return (values - self.targets) / math.sqrt(values.shape[0])

    def residual_jacobian(self, values: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
        return jac / math.sqrt(values.shape[0])

    def linearize(self, values: torch.Tensor) -> Linearization:
        n = values.shape[0]
        gradient = 2.0 * (values - self.targets) / n
        pointwise = torch.full_like(values, 2.0 / n)
        return Linearization(gradient, lambda jac: torch.zeros(jac.shape[1], jac.shape[1], dtype=values.dtype,
                                                               device=values.device), pointwise)


def target_function(target):
    """A callable of ``x`` from a target name in :data:`TARGETS` or a formula in x."""
    if isinstance(target, str) and target in TARGETS:
        target = TARGETS[target]
    formula = compile_expression(target, ("x",))
    return lambda x: formula(x=x)


def fourier_features_map(n_features: int, sigma: float, seed: int):
    """x -> [cos(2 pi B x), sin(2 pi B x)] with B ~ N(0, sigma^2) fixed (``n_features`` frequencies,
    drawn with ``seed``): random Fourier features of a 1-D input, ``(n,) -> (n, 2 n_features)``."""
    freqs = torch.randn(int(n_features), generator=torch.Generator().manual_seed(int(seed)),
                        dtype=torch.float64) * float(sigma)

    def features(x: torch.Tensor) -> torch.Tensor:
        z = 2 * torch.pi * x.reshape(-1, 1) * freqs.to(x.device)
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)

    return features


def make_problem(seed: int = 0, *, target="sin", n_points: int = 10000, interval=(-1.1, 1.1),
                 sampling: str = "random", widths=REFERENCE_001_WIDTHS, activation: str = "tanh", omega: float = 1.0,
                 fourier_features: int = 0, fourier_sigma: float = 1.0, output_bias: bool = True,
                 test_points: int = 10000, test_interval=(-1.0, 1.0), data_seed: int = 0, device=None) -> Problem:
    """Fit ``target`` (a name in :data:`TARGETS` or a formula in x) on ``n_points`` points of
    ``interval`` (``sampling``: ``"random"`` uniform with ``data_seed``, or ``"grid"``), with an
    MLP of ``widths`` and ``activation`` (``"sin"`` with frequency ``omega``: SIREN-style)
    initialised by ``seed`` (``output_bias=False``: no bias in the output layer, as reference
    002's networks); test on a grid of ``test_points`` in ``test_interval``.

    ``fourier_features`` > 0 feeds the network ``[cos(2 pi B x), sin(2 pi B x)]`` with
    ``fourier_features`` frequencies B ~ N(0, ``fourier_sigma``^2) (drawn with ``data_seed``)
    instead of x; ``widths[0]`` must then be ``2 * fourier_features``. The structured Hessian
    still applies (the features are fixed inputs); network diagnostics of a study then see
    the features as the network's inputs."""
    if sampling not in ("random", "grid"):
        raise ConfigError(f"sampling must be 'random' or 'grid', got {sampling!r}")
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
        raise ConfigError(f"n_points must be a positive integer, got {n_points!r}")
    low, high = interval_bounds("interval", interval)
    t_low, t_high = interval_bounds("test_interval", test_interval)
    widths = tuple(int(w) for w in widths)
    n_in = 2 * int(fourier_features) if fourier_features else 1
    if widths[0] != n_in or widths[-1] != 1:
        raise ConfigError(f"widths must start with {n_in} (" + ("2 x fourier_features" if fourier_features else "x")
                          + f") and end with 1, got {list(widths)}")
    fn = target_function(target)
    if sampling == "random":
        gen = torch.Generator().manual_seed(int(data_seed))
        x = low + (high - low) * torch.rand(n_points, generator=gen, dtype=torch.float64)
    else:
        x = torch.linspace(low, high, n_points, dtype=torch.float64)
    x_test = torch.linspace(t_low, t_high, int(test_points), dtype=torch.float64)
    x, x_test = x.to(device), x_test.to(device)
    mlp = MLP(list(widths), activation=activation, omega=omega, output_bias=output_bias)
    inputs = (lambda v: v[:, None]) if not fourier_features else fourier_features_map(fourier_features,
                                                                                       fourier_sigma, data_seed)
    structure = CoefficientLoss(mlp, inputs(x), MeanSquaredError(fn(x)))
    test = MeanSquaredError(fn(x_test))
    kappa = mlp if not fourier_features else (lambda theta, points: mlp(theta, inputs(points[:, 0])))

    def test_error(theta: torch.Tensor) -> float:
        with torch.no_grad():
            return float(test(mlp(theta, inputs(x_test))))

    return Problem(name="regression", theta0=mlp.init(seed, device=device), loss=structure,
                   residual=structure.residual, jacobian=structure.jacobian, kappa=kappa,
                   kappa_true=lambda points: fn(points[:, 0]), structure=structure,
                   info={"points": x, "targets": fn(x), "test_points": x_test, "test_error": test_error,
                         "law_points": (x_test[:, None], torch.ones_like(x_test)), "mlp": mlp, "inputs": inputs,
                         "target": target, "kappa_input": "x", "n_points": n_points})
