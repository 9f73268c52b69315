"""A learned constitutive law saved with its network description, reloadable on its own.

``save_kappa(path, mlp, theta, coefficient_input)`` writes the MLP's architecture (widths,
activation, output transform, shift), what it takes as input (``x``: points ``(n, 2)``;
``u``: state values ``(n,)``) and the trained parameters. ``load_kappa(path)`` gives back a
callable with no problem, config or mesh needed::

    kappa = invfem.load_kappa("results/poisson/kappa_seed0.pt")
    kappa(torch.tensor([[0.2, 0.3]]))          # kappa(x) at one point -> tensor of shape (1,)

The file is a plain ``torch.save`` of tensors, numbers and strings, read back with
``weights_only=True`` (no code is unpickled).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from invfem.errors import ConfigError, ShapeError
from invfem.files import save_torch
from invfem.nn import MLP

FORMAT = "invfem-kappa/1"


@dataclass(frozen=True)
class LearnedLaw:
    """``kappa(points)``: the trained network as a function of its physical input.

    ``coefficient_input`` is ``"x"`` (call with points ``(n, 2)``) or ``"u"`` (state values
    ``(n,)`` or ``(n, 1)``); the result is a float64 tensor ``(n,)``. ``mlp`` and ``theta`` are
    the network and its parameters.
    """

    mlp: MLP
    theta: torch.Tensor
    coefficient_input: str

    def __repr__(self) -> str:
        return (f"LearnedLaw(kappa({self.coefficient_input}), widths {self.mlp.widths}, {self.mlp.activation}, "
                f"{self.theta.numel()} parameters on {self.theta.device})")

    def __call__(self, points) -> torch.Tensor:
        x = torch.as_tensor(points, dtype=torch.float64, device=self.theta.device)
        if self.coefficient_input == "u":
            if x.ndim == 2 and x.shape[1] == 1:
                x = x[:, 0]
            if x.ndim != 1:
                raise ShapeError(f"kappa(u) takes state values of shape (n,) or (n, 1), got {tuple(x.shape)}")
            x = x[:, None]
        elif x.ndim != 2 or x.shape[1] != 2:
            raise ShapeError(f"kappa(x) takes points of shape (n, 2), got {tuple(x.shape)}")
        with torch.no_grad():
            return self.mlp(self.theta, x)


def save_kappa(path, mlp: MLP, theta: torch.Tensor, coefficient_input: str, **metadata) -> Path:
    """Write the law ``mlp(theta, .)`` to ``path``; ``metadata`` (numbers, strings) is kept alongside."""
    if coefficient_input not in ("x", "u"):
        raise ConfigError(f"coefficient_input must be 'x' or 'u', got {coefficient_input!r}")
    if mlp.widths[0] != (2 if coefficient_input == "x" else 1) or mlp.widths[-1] != 1:
        raise ShapeError(f"a kappa({coefficient_input}) network must map {2 if coefficient_input == 'x' else 1} "
                         f"input(s) to 1 output, got widths {mlp.widths}")
    return save_torch(path, {"format": FORMAT, "widths": list(mlp.widths), "activation": mlp.activation,
                "positivity": mlp.positivity, "shift": float(mlp.shift), "omega": float(mlp.omega),
                "output_bias": bool(mlp.output_bias),
                "coefficient_input": coefficient_input,
                "theta": theta.detach().cpu().to(torch.float64), "metadata": dict(metadata)})


def load_kappa(path, device=None) -> LearnedLaw:
    """The law saved by :func:`save_kappa` (``invfem run`` writes ``kappa_seed<k>.pt``) as a callable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"law file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a file that is not its format
        raise ConfigError(f"{path}: not a saved law ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a saved law (expected format {FORMAT!r})")
    mlp = MLP(data["widths"], activation=data["activation"], positivity=data["positivity"], shift=data["shift"],
              omega=data.get("omega", 1.0), output_bias=data.get("output_bias", True))
    theta = data["theta"].to(device)
    if theta.shape != (mlp.n_params,):
        raise ShapeError(f"{path}: {theta.numel()} parameters for a network of {mlp.n_params}")
    return LearnedLaw(mlp, theta, data["coefficient_input"])
