"""Counted derivatives of a torch loss for the optimizers: f, gradient, HVP, dense Hessian.

The optimizers work on numpy float64 vectors; the oracle converts at the boundary (zero
copy on CPU), handing ``fun`` tensors on ``device`` (the device of ``x0``: with a GPU
``x0`` the loss, its derivatives and the dense Hessian stay on the GPU).  Derivatives come
from ``torch.func`` unless the user supplies ``jac``, ``hess`` or ``hessp`` (callables on
tensors).  Counts follow scipy: ``nfev`` (function values), ``njev`` (gradients), ``nhev``
(dense Hessians plus Hessian-vector products).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from invfem.derivatives import hessian as dense_hessian
from invfem.derivatives import hvp, value_and_grad
from invfem.errors import InvalidTrialPoint, NonFiniteError, ShapeError


class CountedOracle:
    """What every oracle of the trust-region loop shares: the device, the counters (``nfev``,
    ``njev``, ``nhev``, ``ninvalid``, ``paused``), numpy -> tensor, and a trial's (f, g)."""

    def __init__(self, n, device=None):
        self.n = n
        self.device = torch.device("cpu" if device is None else device)
        self.nfev = self.njev = self.nhev = 0
        self.ninvalid = 0          # trial points where fun raised InvalidTrialPoint or was not finite
        self.paused = 0.0          # seconds spent in callbacks and checkpoints: not the method's time

    def tensor(self, x) -> torch.Tensor:
        """``x`` (numpy) as a float64 tensor on the oracle's device."""
        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device)

    def trial_value_and_grad(self, x):
        """(f, g) at a trial point, or ``(inf, None)`` where ``fun`` raises InvalidTrialPoint (counted)."""
        try:
            f, g = self.value_and_grad(x)
        except InvalidTrialPoint:
            self.ninvalid += 1
            return math.inf, None
        if not math.isfinite(f):
            self.ninvalid += 1
        return f, g


class Oracle(CountedOracle):
    """``fun`` (flat float64 tensor -> 0-d tensor) with counted derivatives on numpy arrays."""

    def __init__(self, fun, n, jac=None, hess=None, hessp=None, hessian_chunk=None, device=None, gauss_newton=None):
        for name, value in (("fun", fun), ("jac", jac), ("hess", hess), ("hessp", hessp), ("gauss_newton", gauss_newton)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}")
        super().__init__(n, device)
        self.fun, self.jac, self.hess, self.hessp_fn = fun, jac, hess, hessp
        self.gauss_newton = gauss_newton      # x -> 2 J^T J of a least-squares loss (hessian: auto)
        self.hessian_chunk = hessian_chunk

    def _scalar(self, y):
        if not isinstance(y, torch.Tensor) or y.ndim != 0:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ShapeError(f"fun must return a 0-d tensor (a scalar loss), got {shape}")
        return y

    def value(self, x) -> float:
        """f(x) without building a graph; ``inf`` (counted in ``ninvalid``) where ``fun`` raises
        :class:`~invfem.errors.InvalidTrialPoint`, so the caller rejects the point like a NaN."""
        self.nfev += 1
        try:
            with torch.no_grad():
                value = float(self._scalar(self.fun(self.tensor(x))))
        except InvalidTrialPoint:
            self.ninvalid += 1
            return math.inf
        if not math.isfinite(value):
            self.ninvalid += 1                 # a NaN/inf trial is an invalid one too
        return value

    def value_and_grad(self, x):
        """(f(x), grad f(x)); counts one gradient (the value comes with it)."""
        self.njev += 1
        t = self.tensor(x)
        if self.jac is not None:
            self.nfev += 1
            with torch.no_grad():
                f = float(self._scalar(self.fun(t)))
            g = torch.as_tensor(self.jac(t), dtype=torch.float64)
        else:
            y, g = value_and_grad(lambda z: self._scalar(self.fun(z)), t)
            f = float(y)
        g = g.detach().reshape(-1).cpu().numpy().astype(np.float64, copy=True)
        if g.shape[0] != self.n:
            raise ShapeError(f"gradient has {g.shape[0]} entries, expected {self.n}")
        return f, g

    def hessian(self, x, kind: str = "exact") -> torch.Tensor:
        """The dense Hessian at x (user ``hess``, else ``invfem.derivatives.hessian``; ``kind=
        "gauss-newton"``: the oracle's ``gauss_newton``), symmetrised, as a tensor on the oracle's
        device (``.cpu().numpy()`` where a numpy model needs it)."""
        self.nhev += 1
        t = self.tensor(x)
        if kind == "gauss-newton":
            h = self.gauss_newton(t)
        else:
            h = self.hess(t) if self.hess is not None else dense_hessian(self.fun, t, chunk_size=self.hessian_chunk)
        h = torch.as_tensor(h, dtype=torch.float64, device=self.device).detach()
        if h.shape != (self.n, self.n):
            raise ShapeError(f"Hessian has shape {tuple(h.shape)}, expected {(self.n, self.n)}")
        if not bool(torch.isfinite(h.sum())) and not bool(torch.isfinite(h).all()):
            raise NonFiniteError("the Hessian contains NaN or inf at an accepted iterate")
        return (h + h.T).mul_(0.5)

    def hessp_block(self, x):
        """``V -> H(x) V`` on numpy blocks ``(n, k)`` (``k`` products counted): one call of a ``hessp``
        that takes blocks (``hessp.blocks``, :class:`invfem.structured.CachedProduct`), else column by
        column."""
        if getattr(self.hessp_fn, "blocks", False):
            t = self.tensor(x)

            def product(block):
                self.nhev += block.shape[1]
                out = self.hessp_fn(t, self.tensor(block))
                return torch.as_tensor(out, dtype=torch.float64).detach().cpu().numpy()
            return product
        single = self.hessp(x)
        return lambda block: np.stack([single(block[:, j]) for j in range(block.shape[1])], axis=1)

    def hessp(self, x):
        """v -> H(x) v: user ``hessp``, else the user ``hess`` built once, else forward-over-reverse
        ``hvp``; each product (or the one Hessian) counted in ``nhev``."""
        t = self.tensor(x)
        if self.hessp_fn is None and self.hess is not None:
            h = self.hessian(x).cpu().numpy()    # a user Hessian and no hessp: build it once per iterate
            return lambda v: h @ np.asarray(v, dtype=np.float64)

        def product(v):
            self.nhev += 1
            vt = self.tensor(v)
            out = self.hessp_fn(t, vt) if self.hessp_fn is not None else hvp(self.fun, t, vt)
            return torch.as_tensor(out, dtype=torch.float64).detach().reshape(-1).cpu().numpy()
        return product
