"""Helpers of the shipped problems (thin uses of the generic builders)."""

from __future__ import annotations

from invfem.errors import ConfigError
from invfem.nn.mlp import check_widths


def hidden_widths(widths, n_in: int) -> tuple[int, ...]:
    """The hidden widths of a full ``(n_in, ..., 1)`` width list."""
    widths = tuple(check_widths(widths))
    if len(widths) < 2 or widths[0] != n_in or widths[-1] != 1:
        raise ConfigError(f"widths must run from the input size {n_in} to one output, got {list(widths)}")
    return widths[1:-1]
