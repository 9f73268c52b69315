"""Small helpers shared by the problem definitions (data noise, option checks)."""

from __future__ import annotations

import numpy as np
import torch

from invfem.errors import ConfigError


def check_fraction(name: str, value: float, allow_zero: bool = True) -> None:
    if not (value >= 0 if allow_zero else value > 0) or value > 1:
        raise ConfigError(f"{name} must be a fraction in {'[0' if allow_zero else '(0'}, 1], got {value!r}")


def interval_bounds(name: str, value) -> tuple[float, float]:
    """``[low, high]`` as two floats with ``low < high``, or a ConfigError naming ``name``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be [low, high], got {value!r}") from None
    if not low < high:
        raise ConfigError(f"{name} must have low < high, got {value!r}")
    return low, high


def noisy(values: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
    """``values * (1 + level * U(-1, 1))``: the relative uniform noise of reference 000."""
    if level < 0:
        raise ConfigError(f"noise must be >= 0, got {level!r}")
    return values * (1.0 + level * values.new_tensor(rng.uniform(-1.0, 1.0, tuple(values.shape))))


def observed_dofs(space, fraction: float, rng: np.random.Generator) -> torch.Tensor:
    """A sorted random ``fraction`` of the free dofs (at least one; all of them for 1.0), on the space's device."""
    check_fraction("observed", fraction, allow_zero=False)
    free = space.free_dofs
    n_obs = max(1, int(round(fraction * free.size)))
    chosen = np.sort(rng.choice(free, n_obs, replace=False)) if n_obs < free.size else free
    return torch.as_tensor(chosen, device=space.device)
