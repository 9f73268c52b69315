"""Physics-informed losses: weighted mean squares of strong-form residuals and of boundary and
initial values at collocation points, pure functions of theta.

    L(theta) = sum_i w_i mean_q r_i(theta; x_q)^2,

with the terms

* :class:`EllipticResidual` — ``-div(kappa grad u) + c u - f`` (``kappa``, ``c``, ``f`` numbers or
  functions of the points, fixed: ``div(kappa grad u) = kappa lap u + grad kappa . grad u``);
* :class:`HeatResidual` — ``u_t - div(alpha grad u) - f`` (time the last coordinate);
* :class:`ValueTerm` — ``u - g`` (Dirichlet or initial values).

:class:`PinnLoss` is also a sum of squares (``residual``: the rows ``(w_i / n_i)^1/2 r_i``), so
the least-squares methods and Gauss-Newton take it too. Its derivatives are exact under
``torch.func`` and invfem's ``hessian`` / ``hvp`` / ``taylor_test``: the input derivatives come
from :func:`invfem.pinn.fields.network_jet` (closed-form propagation, no autograd in x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from invfem.errors import ConfigError, ShapeError
from invfem.pinn.curvature import (DEFAULT_CHUNK, UNSUPPORTED, LinearForm, PinnCurvature, network_forms,
                                   supports_curvature)
from invfem.pinn.fields import PinnField


def _field_at(value, points: torch.Tensor, name: str) -> torch.Tensor:
    """A number or a function of the points ``(n, d) -> (n,)``, evaluated once."""
    if callable(value):
        out = value(points)
        out = torch.as_tensor(out, dtype=points.dtype, device=points.device)
        if out.ndim == 0:
            out = out.expand(points.shape[0])
        if out.shape != (points.shape[0],):
            raise ShapeError(f"{name} must give one value per point ({points.shape[0]}), got shape {tuple(out.shape)}")
        return out.detach()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number or a function of the points, got {value!r}")
    return torch.full((points.shape[0],), float(value), dtype=points.dtype, device=points.device)


def _gradient_at(value, points: torch.Tensor, dims) -> torch.Tensor | None:
    """``grad value`` in ``dims`` at the points ``(len(dims), n)`` for a function of the points
    (autograd of the fixed function, once; each value depends on its own point only), None for
    a number."""
    if not callable(value):
        return None
    with torch.enable_grad():
        p = points.detach().clone().requires_grad_(True)
        out = torch.as_tensor(value(p))
        if not out.requires_grad:                  # a constant function
            return torch.zeros(len(dims), points.shape[0], dtype=points.dtype, device=points.device)
        (g,) = torch.autograd.grad(out.sum(), p, allow_unused=True)
    g = torch.zeros_like(points) if g is None else g
    return g[:, list(dims)].T.detach()


@dataclass(frozen=True, eq=False)
class EllipticResidual:
    """``-div(kappa grad u) + c u - f`` at ``points`` in the spatial coordinates ``dims``."""

    points: torch.Tensor
    kappa: object = 1.0
    c: object = 0.0
    f: object = 0.0
    dims: tuple = (0,)

    def __post_init__(self):
        object.__setattr__(self, "dims", tuple(int(i) for i in self.dims))
        object.__setattr__(self, "_kappa", _field_at(self.kappa, self.points, "kappa"))
        object.__setattr__(self, "_grad_kappa", _gradient_at(self.kappa, self.points, self.dims))
        object.__setattr__(self, "_c", _field_at(self.c, self.points, "c"))
        object.__setattr__(self, "_f", _field_at(self.f, self.points, "f"))

    @property
    def forcing(self) -> torch.Tensor:
        """``f`` at the points ``(n,)``, as evaluated once at construction."""
        return self._f

    def __call__(self, field: PinnField, theta: torch.Tensor) -> torch.Tensor:
        jet = field.jet(theta, self.points, self.dims, self.dims)
        r = -self._kappa * jet.laplacian() + self._c * jet.value - self._f
        if self._grad_kappa is not None:
            r = r - (self._grad_kappa * jet.grad).sum(0)
        return r

    def linear_form(self, weight: float) -> LinearForm:
        """This term as a :class:`~invfem.pinn.curvature.LinearForm`: channels value, ``grad`` in
        ``dims`` and the Laplacian, coefficients ``c``, ``-grad kappa`` and ``-kappa``."""
        k, d = len(self.dims), self.points.shape[1]
        coef = self.points.new_zeros(k + 2, self.points.shape[0])
        coef[0], coef[-1] = self._c, -self._kappa
        if self._grad_kappa is not None:
            coef[1:1 + k] = -self._grad_kappa
        return LinearForm(self.points, self.dims, self.points.new_ones(k), self.points.new_zeros(d), coef,
                          self._f, weight)

    def operator_on(self, jet) -> torch.Tensor:
        """``-div(kappa grad v) + c v`` of any jet ``v`` at these points (basis ``(n, w)`` too)."""
        grow = (lambda t: t.reshape(t.shape + (1,) * (jet.value.ndim - 1)))
        out = -grow(self._kappa) * jet.laplacian() + grow(self._c) * jet.value
        if self._grad_kappa is not None:
            out = out - (grow(self._grad_kappa) * jet.grad).sum(0)
        return out


@dataclass(frozen=True, eq=False)
class HeatResidual:
    """``u_t - div(alpha grad u) - f`` at ``points`` (spatial coordinates ``dims``, time ``time``)."""

    points: torch.Tensor
    alpha: object = 1.0
    f: object = 0.0
    dims: tuple = (0, 1)
    time: int = 2

    def __post_init__(self):
        object.__setattr__(self, "dims", tuple(int(i) for i in self.dims))
        object.__setattr__(self, "_alpha", _field_at(self.alpha, self.points, "alpha"))
        object.__setattr__(self, "_grad_alpha", _gradient_at(self.alpha, self.points, self.dims))
        object.__setattr__(self, "_f", _field_at(self.f, self.points, "f"))

    def __call__(self, field: PinnField, theta: torch.Tensor) -> torch.Tensor:
        jet = field.jet(theta, self.points, self.dims + (self.time,), self.dims)
        r = jet.d(self.time) - self._alpha * jet.laplacian() - self._f
        if self._grad_alpha is not None:
            r = r - (self._grad_alpha * jet.grad[:len(self.dims)]).sum(0)
        return r

    def linear_form(self, weight: float) -> LinearForm:
        """This term as a :class:`~invfem.pinn.curvature.LinearForm`. A constant ``alpha`` folds
        ``u_t - alpha Laplacian u`` into the operator channel (channels value, ``grad`` in ``dims``,
        h: four in 2-D); a varying one keeps ``u_t`` and the Laplacian apart."""
        k, d, q = len(self.dims), self.points.shape[1], self.points.shape[0]
        if not callable(self.alpha):
            gamma = self.points.new_zeros(d)
            gamma[self.time] = 1.0
            coef = self.points.new_zeros(k + 2, q)
            coef[-1] = 1.0
            beta = self.points.new_full((k,), -float(self.alpha))
            return LinearForm(self.points, self.dims, beta, gamma, coef, self._f, weight)
        first = self.dims + (self.time,)
        coef = self.points.new_zeros(k + 3, q)
        coef[1:1 + k] = -self._grad_alpha
        coef[1 + k] = 1.0
        coef[-1] = -self._alpha
        beta = torch.cat([self.points.new_ones(k), self.points.new_zeros(1)])
        return LinearForm(self.points, first, beta, self.points.new_zeros(d), coef, self._f, weight)


@dataclass(frozen=True, eq=False)
class ValueTerm:
    """``u - g`` at ``points`` (Dirichlet or initial values ``g``: a number, a function of the
    points or a tensor of one value per point)."""

    points: torch.Tensor
    values: object = 0.0

    def __post_init__(self):
        values = self.values
        if isinstance(values, torch.Tensor):
            if values.shape != (self.points.shape[0],):
                raise ShapeError(f"values must have one entry per point ({self.points.shape[0]}), got {tuple(values.shape)}")
            values = values.to(self.points)
        else:
            values = _field_at(values, self.points, "values")
        object.__setattr__(self, "_g", values.detach())

    def __call__(self, field: PinnField, theta: torch.Tensor) -> torch.Tensor:
        return field(theta, self.points) - self._g

    def linear_form(self, weight: float) -> LinearForm:
        """This term as a :class:`~invfem.pinn.curvature.LinearForm` (the value channel only)."""
        return LinearForm(self.points, (), None, None, self.points.new_ones(1, self.points.shape[0]), self._g, weight)


class PinnLoss:
    """``sum_i w_i mean r_i(theta)^2`` over the terms (module docstring): callable on theta,
    ``residual(theta)`` its rows, ``terms_values(theta)`` each term's mean square."""

    def __init__(self, field: PinnField, terms: dict, weights: dict | None = None):
        if not terms:
            raise ConfigError("a PINN loss needs at least one term")
        weights = dict(weights or {})
        unknown = set(weights) - set(terms)
        if unknown:
            raise ConfigError(f"weights name unknown terms {sorted(unknown)}; terms: {sorted(terms)}")
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 or not math.isfinite(w):
                raise ConfigError(f"weights.{name} must be a number >= 0, got {w!r}")
        self.field, self.terms = field, dict(terms)
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.terms}
        self._forms = self._network_forms = None                  # fixed data: built once, on first use

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return sum(w * torch.mean(self.terms[name](self.field, theta) ** 2) for name, w in self.weights.items())

    def forms(self) -> list:
        """Every term as a :class:`~invfem.pinn.curvature.LinearForm` (None for a term that has
        none); they do not depend on theta, so they are built once."""
        if self._forms is None:
            self._forms = [self.terms[name].linear_form(w / self.terms[name].points.shape[0])
                           if hasattr(self.terms[name], "linear_form") else None for name, w in self.weights.items()]
        return self._forms

    @property
    def supported(self) -> bool:
        """Whether the closed-form curvature applies (:func:`~invfem.pinn.curvature.supports_curvature`)."""
        return supports_curvature(self.field.mlp, self.forms())

    has_operator = True

    def curvature(self, theta: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> PinnCurvature:
        """The closed-form state at ``theta``: ``value``, ``gradient()``, ``apply(V)``, ``hessian()``."""
        if self._network_forms is None:
            if not self.supported:
                raise ConfigError(UNSUPPORTED)
            self._network_forms = network_forms(self.field, self.forms())
        return PinnCurvature(self.field.mlp, self._network_forms, theta, chunk)

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The exact ``(P, P)`` Hessian in closed form (the channel-wise HBP recursion)."""
        return self.curvature(theta).hessian()

    def hessian_operator(self, theta: torch.Tensor):
        """``V -> H V`` (vector or ``(P, k)`` block) at ``theta`` by the closed-form R-operator."""
        return self.curvature(theta).apply

    def residual(self, theta: torch.Tensor) -> torch.Tensor:
        """The rows ``(w_i / n_i)^1/2 r_i``: ``loss(theta) == ||residual(theta)||^2``."""
        rows = []
        for name, w in self.weights.items():
            r = self.terms[name](self.field, theta)
            rows.append(r * math.sqrt(w / r.shape[0]))
        return torch.cat(rows)

    def terms_values(self, theta: torch.Tensor) -> dict:
        """Each term's mean square (unweighted), as floats."""
        with torch.no_grad():
            return {name: float(torch.mean(term(self.field, theta) ** 2)) for name, term in self.terms.items()}
