"""A network's derivatives in its inputs, exact and differentiable in theta to any order.

``network_jet(mlp, theta, x, first, second)`` returns ``u_theta`` at the points ``x``, its first
derivatives in the coordinates ``first`` and its pure second derivatives in ``second`` (a
subset of ``first``), by propagating them forward through the layers with the activation's
closed-form derivatives (Taylor mode for the diagonal of the input Hessian; the "forward
Laplacian" of Li et al. 2023):

    z_1 = W_1 x + b_1,          dz_1 = W_1 e_i,                 d2z_1 = 0,
    a_l = s(z_l),               da_l = s'(z_l) dz_l,            d2a_l = s''(z_l) dz_l^2 + s'(z_l) d2z_l,
    z_{l+1} = W_{l+1} a_l + b,  dz_{l+1} = W_{l+1} da_l,        d2z_{l+1} = W_{l+1} d2a_l,

and the output transform the same way. Everything is plain torch arithmetic of theta (GEMMs
over all points and directions at once), so ``torch.func`` and invfem's ``hessian``, ``hvp``
and ``taylor_test`` differentiate a loss built from it exactly, without nesting autograd in x.
:class:`PinnField` adds the distance construction of reference 002 §4 (``u = d(x) N_theta(x)``,
the distance function on every basis function).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invfem.errors import ConfigError, ShapeError


@dataclass(frozen=True)
class Jet:
    """Values at ``n`` points with derivatives: ``value (n, ...)``, ``grad (len(first), n, ...)``
    (first derivatives in the coordinates ``first``), ``second (len(second), n, ...)`` (pure
    second derivatives in ``second``). ``...`` is empty for a scalar field, ``(w,)`` for a basis."""

    value: torch.Tensor
    grad: torch.Tensor
    second: torch.Tensor
    first: tuple
    second_dims: tuple

    def d(self, i: int) -> torch.Tensor:
        """The first derivative in coordinate ``i``."""
        return self.grad[self.first.index(i)]

    def dd(self, i: int) -> torch.Tensor:
        """The pure second derivative in coordinate ``i``."""
        return self.second[self.second_dims.index(i)]

    def laplacian(self, dims=None) -> torch.Tensor:
        """The sum of the pure second derivatives in ``dims`` (default: all of ``second``)."""
        dims = self.second_dims if dims is None else tuple(dims)
        return sum(self.dd(i) for i in dims)


def _dims(first, second, n_in: int) -> tuple[tuple, tuple]:
    first, second = tuple(int(i) for i in first), tuple(int(i) for i in second)
    for name, dims in (("first", first), ("second", second)):
        if len(set(dims)) != len(dims) or any(not 0 <= i < n_in for i in dims):
            raise ConfigError(f"{name} must list distinct input coordinates in 0..{n_in - 1}, got {list(dims)}")
    if not set(second) <= set(first):
        raise ConfigError(f"second derivatives {list(second)} need their first derivatives: first = {list(first)}")
    return first, second


def hidden_jet(mlp, theta: torch.Tensor, x: torch.Tensor, first=(), second=()) -> Jet:
    """The last hidden layer's activations ``(n, w)`` with their input derivatives: the basis
    functions ``phi_k`` that the output layer combines (reference 002's reading of an MLP)."""
    return _propagate(mlp, mlp.layers(theta)[:-1], x, first, second)


def network_jet(mlp, theta: torch.Tensor, x: torch.Tensor, first=(), second=()) -> Jet:
    """``u_theta = positivity(N_theta(x)) + shift`` ``(n,)`` at the points ``x`` ``(n, d)`` with its
    first derivatives in ``first`` and pure second derivatives in ``second`` (module docstring)."""
    if mlp.widths[-1] != 1:
        raise ConfigError(f"network_jet needs a network with one output, got widths {mlp.widths}")
    layers = mlp.layers(theta)
    hidden = _propagate(mlp, layers[:-1], x, first, second)
    w, b = layers[-1]
    return _pointwise(mlp.phi, _linear(hidden, w, b, squeeze=True), hidden.first, hidden.second_dims, mlp.shift)


def _propagate(mlp, layers, x, first, second) -> Jet:
    if x.ndim != 2 or x.shape[1] != mlp.widths[0]:
        raise ShapeError(f"points must have shape (n, {mlp.widths[0]}), got {tuple(x.shape)}")
    first, second = _dims(first, second, mlp.widths[0])
    n, k = x.shape[0], len(first)
    if not layers:
        eye = torch.eye(mlp.widths[0], dtype=x.dtype, device=x.device)[list(first)]        # (k, d)
        return Jet(x, eye[:, None, :].expand(k, n, -1), x.new_zeros(len(second), 1, x.shape[1]).expand(-1, n, -1),
                   first, second)
    (w, b), rest = layers[0], layers[1:]
    # the inputs' jet is (x, unit vectors, 0): the first layer's derivative channels are columns of W
    zs = (x @ w.T + b, w.T[list(first)][:, None, :].expand(k, n, -1),
          x.new_zeros(len(second), 1, w.shape[0]).expand(-1, n, -1))
    jet = _pointwise(mlp.sigma, zs, first, second)
    for w, b in rest:
        jet = _pointwise(mlp.sigma, _linear(jet, w, b), first, second)
    return jet


def _linear(jet: Jet, w, b, squeeze: bool = False):
    """``z = a W^T + b`` with ``dz = da W^T``, ``d2z = d2a W^T``."""
    z, dz, d2z = jet.value @ w.T + b, jet.grad @ w.T, jet.second @ w.T
    if squeeze:
        z, dz, d2z = z[..., 0], dz[..., 0], d2z[..., 0]
    return z, dz, d2z


def _pointwise(sigma, zs, first, second, shift: float = 0.0) -> Jet:
    z, dz, d2z = zs
    s1, s2 = sigma.derivatives(z)
    index = [first.index(i) for i in second]
    d2 = s2 * dz[index] ** 2 + s1 * d2z
    return Jet(sigma.value(z) + shift, s1 * dz, d2, first, second)


def product_jet(a: Jet, b: Jet) -> Jet:
    """The jet of the product ``a b`` (``b`` may carry a trailing basis axis; ``a`` broadcasts)."""
    if a.first != b.first or a.second_dims != b.second_dims:
        raise ConfigError(f"product_jet: both jets need the same derivatives, got {a.first}/{a.second_dims} "
                          f"and {b.first}/{b.second_dims}")
    extra = b.value.ndim - a.value.ndim
    grow = (lambda t: t.reshape(t.shape + (1,) * extra)) if extra > 0 else (lambda t: t)
    av, ag, a2 = grow(a.value), grow(a.grad), grow(a.second)
    index = [a.first.index(i) for i in a.second_dims]
    value = av * b.value
    grad = ag * b.value + av * b.grad
    second = a2 * b.value + 2 * ag[index] * b.grad[index] + av * b.second
    return Jet(value, grad, second, a.first, a.second_dims)


class BoxDistance:
    """An approximate distance to the boundary of the box ``[lower, upper]`` in the coordinates
    ``dims`` of the points: ``d(x) = prod_i (x_i - a_i)(b_i - x_i) / ((b_i - a_i) / 2)^2``, zero
    on every face, 1 at the centre, smooth; its jet in closed form."""

    def __init__(self, lower, upper, dims=None):
        self.lower = [float(v) for v in lower]
        self.upper = [float(v) for v in upper]
        if len(self.lower) != len(self.upper) or not all(a < b for a, b in zip(self.lower, self.upper)):
            raise ConfigError(f"BoxDistance: need lower < upper of one length, got {self.lower}, {self.upper}")
        self.dims = tuple(range(len(self.lower))) if dims is None else tuple(int(i) for i in dims)
        if len(self.dims) != len(self.lower):
            raise ConfigError(f"BoxDistance: dims {list(self.dims)} must name one coordinate per bound")

    def jet(self, x: torch.Tensor, first=(), second=()) -> Jet:
        """``d`` ``(n,)`` with its derivatives in ``first`` and pure second derivatives in ``second``."""
        first, second = _dims(first, second, x.shape[1])
        q, dq = [], []
        for i, a, b in zip(self.dims, self.lower, self.upper):
            scale = 4.0 / (b - a) ** 2
            q.append((x[:, i] - a) * (b - x[:, i]) * scale)
            dq.append((a + b - 2 * x[:, i]) * scale)
        value = torch.stack(q).prod(0)

        def others(j):
            rest = [q[m] for m in range(len(q)) if m != j]
            return torch.stack(rest).prod(0) if rest else torch.ones_like(value)

        def derivative(i, order):
            if i not in self.dims:
                return torch.zeros_like(value)
            j = self.dims.index(i)
            a, b = self.lower[j], self.upper[j]
            factor = dq[j] if order == 1 else torch.full_like(value, -8.0 / (b - a) ** 2)
            return factor * others(j)

        grad = torch.stack([derivative(i, 1) for i in first]) if first else value.new_zeros(0, value.shape[0])
        sec = torch.stack([derivative(i, 2) for i in second]) if second else value.new_zeros(0, value.shape[0])
        return Jet(value, grad, sec, first, second)


class PinnField:
    """The solution ``u_theta(x)`` a PINN loss differentiates: the network itself, or with a
    ``distance`` (a :class:`BoxDistance`) the construction of reference 002 §4,
    ``u = sum_k c_k d(x) phi_k(x) = d(x) N_theta(x)`` (the output layer linear): every basis
    function ``d phi_k`` vanishes on the boundary, so u meets the homogeneous Dirichlet
    condition exactly."""

    def __init__(self, mlp, distance: BoxDistance | None = None):
        if distance is not None and (mlp.positivity not in (None, "none") or mlp.shift):
            raise ConfigError("the distance construction needs a linear output layer (positivity none, shift 0)")
        self.mlp, self.distance = mlp, distance

    def jet(self, theta: torch.Tensor, x: torch.Tensor, first=(), second=()) -> Jet:
        """``u`` ``(n,)`` at ``x`` with its derivatives."""
        u = network_jet(self.mlp, theta, x, first, second)
        return u if self.distance is None else product_jet(self.distance.jet(x, first, second), u)

    def basis(self, theta: torch.Tensor, x: torch.Tensor, first=(), second=()) -> Jet:
        """The basis functions ``(n, w)`` the output layer combines (``d phi_k`` with a distance)."""
        phi = hidden_jet(self.mlp, theta, x, first, second)
        return phi if self.distance is None else product_jet(self.distance.jet(x, first, second), phi)

    def __call__(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``u_theta`` ``(n,)`` at ``x``."""
        return self.jet(theta, x).value
