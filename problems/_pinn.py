"""Helpers of the PINN problems (reference 001's heat PINN, reference 002 §4's BVPs)."""

from __future__ import annotations

import torch

from invfem.errors import ConfigError
from invfem.nn import MLP


def count(name: str, value, low: int = 1) -> int:
    """A whole number >= ``low`` or a one-line ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")
    return value


def network(widths, n_in: int, activation: str, omega: float, output_bias: bool) -> MLP:
    """The MLP of a PINN problem: ``widths`` from ``n_in`` inputs to one output."""
    widths = [int(w) for w in widths] if isinstance(widths, (list, tuple)) else widths
    if not isinstance(widths, list) or len(widths) < 2 or widths[0] != n_in or widths[-1] != 1:
        raise ConfigError(f"widths must run from {n_in} inputs to 1 output, got {widths!r}")
    return MLP(widths, activation=activation, omega=omega, output_bias=output_bias)


def grid(lower: float, upper: float, n: int, dims: int) -> torch.Tensor:
    """The ``n^dims`` points of a tensor grid of ``[lower, upper]^dims`` ``(n^dims, dims)``."""
    axis = torch.linspace(lower, upper, n, dtype=torch.float64)
    return torch.stack(torch.meshgrid(*([axis] * dims), indexing="ij"), -1).reshape(-1, dims)


def relative_error(values: torch.Tensor, reference: torch.Tensor) -> float:
    """``||values - reference|| / ||reference||`` over points."""
    return float(torch.linalg.vector_norm(values - reference) / torch.linalg.vector_norm(reference))
