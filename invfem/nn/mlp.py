"""A multilayer perceptron over one flat float64 parameter vector.

Optimizers see a flat ``theta``; the network sees per-layer weights and biases, which are
views of ``theta`` (:meth:`MLP.layers`). ``mlp(theta, x)`` is a pure function of ``theta``
written with plain torch ops, so it composes with every ``torch.func`` transform, and it
follows the device and dtype of ``theta``.

Every activation and output transform is a :class:`Pointwise` function with its first and
second derivatives: the closed-form Jacobian and Hessian of :mod:`invfem.nn.hessian` use
them, so an activation added to :data:`ACTIVATIONS` is supported everywhere at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from invfem.errors import ConfigError, ShapeError
from invfem.resources import check_memory, network_parameters

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Pointwise:
    """A scalar function applied entrywise, with its first and second derivatives.

    ``derivatives(z) -> (f'(z), f''(z))`` shares work between the two (tanh: one ``tanh``).
    ``jet4(z) -> (f, f', f'', f''', f'''')`` in closed form where known (None: the PINN curvature
    takes the third and fourth derivatives by forward-mode AD of ``derivatives``, at 3-4x the cost).
    """

    value: Fn
    derivatives: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    module: type[nn.Module] | None = None     # the torch module of an activation (for ``MLP.module``)
    jet4: Callable[[torch.Tensor], tuple] | None = None


def _tanh(z):
    t = torch.tanh(z)
    d1 = 1 - t * t
    return d1, -2 * t * d1


def _tanh_jet4(z):
    t = torch.tanh(z)
    t2 = t * t
    d1 = 1 - t2
    return t, d1, -2 * t * d1, -2 * d1 * (1 - 3 * t2), 8 * t * d1 * (2 - 3 * t2)


def _sigmoid(z):
    s = torch.sigmoid(z)
    d1 = s * (1 - s)
    return d1, d1 * (1 - 2 * s)


_SOFTPLUS_THRESHOLD = 20.0   # torch's softplus is the identity above it (and so are its derivatives)


def _softplus(z):
    s = torch.sigmoid(z)
    linear = z > _SOFTPLUS_THRESHOLD
    return torch.where(linear, torch.ones_like(s), s), torch.where(linear, torch.zeros_like(s), s * (1 - s))


def _gelu(z):
    density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return cdf + z * density, density * (2 - z * z)


def _exp(z):
    e = torch.exp(z)
    return e, e


class Sine(nn.Module):
    """``sin(omega z)`` as a torch module (SIREN's activation)."""

    def __init__(self, omega: float = 1.0):
        super().__init__()
        self.omega = float(omega)

    def forward(self, z):
        return torch.sin(self.omega * z)


def sine(omega: float = 1.0) -> Pointwise:
    """``sin(omega z)`` with its derivatives ``omega cos(omega z)`` and ``-omega^2 sin(omega z)``."""
    omega = float(omega)

    def jet4(z):
        wz = omega * z if omega != 1.0 else z
        s, c = torch.sin(wz), torch.cos(wz)
        return s, omega * c, -omega ** 2 * s, -omega ** 3 * c, omega ** 4 * s

    if omega == 1.0:
        return Pointwise(torch.sin, lambda z: (torch.cos(z), -torch.sin(z)), Sine, jet4)

    def derivatives(z):
        wz = omega * z
        return omega * torch.cos(wz), -omega * omega * torch.sin(wz)

    return Pointwise(lambda z: torch.sin(omega * z), derivatives, lambda: Sine(omega), jet4)


ACTIVATIONS: dict[str, Pointwise] = {
    "tanh": Pointwise(torch.tanh, _tanh, nn.Tanh, _tanh_jet4),
    "sin": sine(1.0),
    "sigmoid": Pointwise(torch.sigmoid, _sigmoid, nn.Sigmoid),
    "softplus": Pointwise(nn.functional.softplus, _softplus, nn.Softplus),
    "gelu": Pointwise(nn.functional.gelu, _gelu, nn.GELU),
}

IDENTITY = Pointwise(lambda z: z, lambda z: (torch.ones_like(z), torch.zeros_like(z)))

POSITIVITY: dict[str | None, Pointwise] = {
    None: IDENTITY,
    "none": IDENTITY,
    "softplus": ACTIVATIONS["softplus"],
    "exp": Pointwise(torch.exp, _exp),
    "square": Pointwise(torch.square, lambda z: (2 * z, torch.full_like(z, 2.0))),
}


def check_widths(widths, name: str = "widths", first: int = 0) -> list[int]:
    """Layer widths as ints, each a whole number >= 1 (not ``2.7``, cut to 2, nor ``true``): a
    ConfigError names the entry as ``name[i]``, counting from ``first`` (a list of hidden widths
    inside a full one starts at 1)."""
    if not isinstance(widths, (list, tuple)):
        raise ConfigError(f"{name} must be a list of layer widths, got {widths!r}")
    out = []
    for i, w in enumerate(widths):
        number = isinstance(w, (int, float)) and not isinstance(w, bool) or hasattr(w, "item")
        if not number or not math.isfinite(float(w)) or not float(w).is_integer() or w < 1:
            raise ConfigError(f"{name}[{i + first}] must be a whole number >= 1, got {w!r}")
        out.append(int(w))
    return out


@dataclass(eq=False)
class MLP:
    """Fully connected network ``kappa_theta(x) = positivity(N_theta(x)) + shift``.

    Parameters
    ----------
    widths : layer widths including input and output, e.g. ``[2, 20, 20, 20, 1]`` (921 parameters).
    activation : hidden activation, one of :data:`ACTIVATIONS` (``tanh`` default, ``sigmoid``,
        ``softplus``, ``gelu``, ``sin``).
    positivity : output transform, ``None``/``"none"``, ``"softplus"``, ``"exp"`` or ``"square"``.
    shift : constant added after the transform (the reference uses ``N_theta(x) + 0.5``).
    omega : frequency of the ``sin`` activation, ``sin(omega z)`` (SIREN); 1 for the others.
    output_bias : whether the output layer has a bias (reference 002's networks have none:
        then ``theta`` ends with ``W_L`` and :meth:`layers` gives a zero ``b_L``).

    The flat layout is layer by layer: ``W_1`` (row-major, ``widths[1] x widths[0]``), ``b_1``,
    ``W_2``, ``b_2``, ... — the order of ``torch.nn.Linear`` parameters in ``self.module``.

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
    omega: float = 1.0
    output_bias: bool = True
    module: nn.Sequential = field(init=False, repr=False)

    def __post_init__(self):
        self.widths = check_widths(self.widths)
        if len(self.widths) < 2:
            raise ConfigError(f"widths must list at least input and output sizes >= 1, got {self.widths}")
        check_memory(f"widths {self.widths} ({network_parameters(self.widths):.4g} parameters)",
                     8.0 * 4 * network_parameters(self.widths))
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {self.activation!r}; valid: {sorted(ACTIVATIONS)}")
        if isinstance(self.omega, bool) or not isinstance(self.omega, (int, float)) or not self.omega > 0:
            raise ConfigError(f"omega must be a number > 0, got {self.omega!r}")
        if self.omega != 1.0 and self.activation != "sin":
            raise ConfigError(f"omega is the frequency of the sin activation; got omega = {self.omega} "
                              f"with activation {self.activation!r}")
        if self.positivity not in POSITIVITY:
            raise ConfigError(f"unknown positivity {self.positivity!r}; valid: {[k for k in POSITIVITY if k]}")
        layers: list[nn.Module] = []
        if not isinstance(self.output_bias, bool):
            raise ConfigError(f"output_bias must be true or false, got {self.output_bias!r}")
        n_layers = len(self.widths) - 1
        for i, (a, b) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            layers.append(nn.Linear(a, b, bias=self.output_bias or i < n_layers - 1, dtype=torch.float64))
            if i < len(self.widths) - 2:
                layers.append(self.sigma.module())
        self.module = nn.Sequential(*layers).requires_grad_(False)
        self._names = [name for name, _ in self.module.named_parameters()]
        self._shapes = [p.shape for _, p in self.module.named_parameters()]
        self._sizes = [p.numel() for _, p in self.module.named_parameters()]

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return sum(self._sizes)

    @property
    def sigma(self) -> Pointwise:
        """The hidden activation with its derivatives."""
        if self.activation == "sin" and self.omega != 1.0:
            return sine(self.omega)
        return ACTIVATIONS[self.activation]

    @property
    def phi(self) -> Pointwise:
        """The output transform with its derivatives."""
        return POSITIVITY[self.positivity]

    def init(self, seed: int = 0, device=None) -> torch.Tensor:
        """Deterministic flat initial parameters: Xavier-normal weights, zero biases (on ``device``)."""
        gen = torch.Generator().manual_seed(int(seed))
        parts = []
        for shape in self._shapes:
            if len(shape) == 2:
                std = math.sqrt(2.0 / (shape[0] + shape[1]))
                parts.append(torch.randn(shape, generator=gen, dtype=torch.float64).reshape(-1) * std)
            else:
                parts.append(torch.zeros(shape.numel(), dtype=torch.float64))
        return torch.cat(parts).to(device)

    def _check_theta(self, theta: torch.Tensor) -> None:
        if theta.ndim != 1 or theta.shape[0] != self.n_params:
            raise ShapeError(f"theta must have shape ({self.n_params},), got {tuple(theta.shape)}")

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named module parameters (views of ``theta``)."""
        self._check_theta(theta)
        return {n: p.reshape(s) for n, p, s in zip(self._names, torch.split(theta, self._sizes), self._shapes)}

    def layers(self, theta: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(W_1, b_1), (W_2, b_2), ...]`` as views of ``theta``."""
        views = list(self.unflatten(theta).values())
        if not self.output_bias:
            views.append(theta.new_zeros(self.widths[-1]))
        return list(zip(views[0::2], views[1::2]))

    def with_output_bias(self) -> "MLP":
        """The same network with an output bias (``self`` if it has one): ``self(theta, x)``
        equals ``with_output_bias()(cat(theta, 0), x)``."""
        if self.output_bias:
            return self
        return MLP(list(self.widths), self.activation, self.positivity, self.shift, self.omega, True)

    def flatten(self, params: dict[str, torch.Tensor] | nn.Module) -> torch.Tensor:
        """Flat parameter vector from named parameters or a module shaped like ``self.module``."""
        if isinstance(params, nn.Module):
            params = dict(params.named_parameters())
        missing = set(self._names) - set(params)
        if missing:
            raise ShapeError(f"parameters missing: {sorted(missing)}")
        return torch.cat([params[n].detach().reshape(-1).to(torch.float64) for n in self._names])

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Network output ``(n,)`` at points ``x`` of shape ``(n, widths[0])`` (``(n, widths[-1])``
        for several outputs)."""
        return self.phi.value(self.raw(theta, x)) + self.shift

    def raw(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output before the positivity transform and the shift: ``N_theta(x)``, so that
        ``self(theta, x) == self.output(self.raw(theta, x))``."""
        if x.ndim == 1 and self.widths[0] == 1:
            x = x.unsqueeze(-1)
        if x.ndim != 2 or x.shape[1] != self.widths[0]:
            raise ShapeError(f"input must have shape (n, {self.widths[0]}), got {tuple(x.shape)}")
        layers = self.layers(theta)
        a = x
        for w, b in layers[:-1]:
            a = self.sigma.value(torch.addmm(b, a, w.T))
        w, b = layers[-1]
        y = torch.addmm(b, a, w.T)
        return y.squeeze(-1) if self.widths[-1] == 1 else y

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """``positivity(z) + shift``: the map from :meth:`raw` to kappa."""
        return self.phi.value(z) + self.shift
