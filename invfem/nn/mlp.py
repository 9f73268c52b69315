"""A multilayer perceptron over one flat float64 parameter vector.

Optimizers see a flat ``theta``; the network sees named module parameters. :class:`MLP`
converts between the two and evaluates the network with
``torch.func.functional_call``, so ``mlp(theta, x)`` is a pure function of ``theta``
that composes with every ``torch.func`` transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from invfem.errors import ConfigError, ShapeError

_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus, "gelu": nn.GELU}
_POSITIVITY = {
    None: lambda y: y,
    "none": lambda y: y,
    "softplus": nn.functional.softplus,
    "exp": torch.exp,
    "square": torch.square,
}


@dataclass(eq=False)
class MLP:
    """Fully connected network ``kappa_theta(x) = positivity(N_theta(x)) + shift``.

    Parameters
    ----------
    widths : layer widths including input and output, e.g. ``[2, 20, 20, 20, 1]`` (921 parameters).
    activation : hidden activation, one of ``tanh`` (default), ``sigmoid``, ``softplus``, ``gelu``.
    positivity : output transform, ``None``/``"none"``, ``"softplus"``, ``"exp"`` or ``"square"``.
    shift : constant added after the transform (the reference uses ``N_theta(x) + 0.5``).

    >>> mlp = MLP([2, 20, 20, 20, 1])
    >>> mlp.n_params
    921
    >>> mlp(mlp.init(seed=0), torch.zeros(5, 2, dtype=torch.float64)).shape
    torch.Size([5])
    """

    widths: list[int]
    activation: str = "tanh"
    positivity: str | None = None
    shift: float = 0.0
    module: nn.Sequential = field(init=False, repr=False)

    def __post_init__(self):
        self.widths = [int(w) for w in self.widths]
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ConfigError(f"widths must list at least input and output sizes >= 1, got {self.widths}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; valid: {sorted(_ACTIVATIONS)}")
        if self.positivity not in _POSITIVITY:
            raise ConfigError(f"unknown positivity {self.positivity!r}; valid: {[k for k in _POSITIVITY if k]}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            layers.append(nn.Linear(a, b, dtype=torch.float64))
            if i < len(self.widths) - 2:
                layers.append(_ACTIVATIONS[self.activation]())
        self.module = nn.Sequential(*layers).requires_grad_(False)
        self._names = [name for name, _ in self.module.named_parameters()]
        self._shapes = [p.shape for _, p in self.module.named_parameters()]
        self._sizes = [p.numel() for _, p in self.module.named_parameters()]

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return sum(self._sizes)

    def init(self, seed: int = 0) -> torch.Tensor:
        """Deterministic flat initial parameters: Xavier-normal weights, zero biases."""
        gen = torch.Generator().manual_seed(int(seed))
        parts = []
        for shape in self._shapes:
            if len(shape) == 2:
                std = math.sqrt(2.0 / (shape[0] + shape[1]))
                parts.append(torch.randn(shape, generator=gen, dtype=torch.float64).reshape(-1) * std)
            else:
                parts.append(torch.zeros(shape.numel(), dtype=torch.float64))
        return torch.cat(parts)

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named module parameters (views of ``theta``)."""
        if theta.ndim != 1 or theta.shape[0] != self.n_params:
            raise ShapeError(f"theta must have shape ({self.n_params},), got {tuple(theta.shape)}")
        return {n: p.reshape(s) for n, p, s in zip(self._names, torch.split(theta, self._sizes), self._shapes)}

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """Flat parameter vector from named parameters or a module shaped like ``self.module``."""
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        missing = set(self._names) - set(params)
        if missing:
            raise ShapeError(f"parameters missing: {sorted(missing)}")
        return torch.cat([params[n].detach().reshape(-1).to(torch.float64) for n in self._names])

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Network output ``(n,)`` at points ``x`` of shape ``(n, widths[0])`` (single-output nets)."""
        if x.ndim == 1 and self.widths[0] == 1:
            x = x.unsqueeze(-1)
        if x.ndim != 2 or x.shape[1] != self.widths[0]:
            raise ShapeError(f"input must have shape (n, {self.widths[0]}), got {tuple(x.shape)}")
        y = functional_call(self.module, self.unflatten(theta), (x,))
        if self.widths[-1] == 1:
            y = y.squeeze(-1)
        return _POSITIVITY[self.positivity](y) + self.shift
