"""Closed-form directional derivatives of an :class:`~invfem.nn.MLP` for blocks of directions.

For ``kappa_q = phi(z_L(x_q; theta)) + shift`` at fixed points, per-point weights ``g``
(the gradient of an outer loss in kappa) and a block of parameter directions ``V (P, k)``,
the Hessian-vector product of ``L(theta) = outer(kappa_theta)`` is

    H V = J^T (W J V) + N_g V,     N_g = sum_q g_q Hess_theta kappa_q,

with ``W`` the outer loss's Hessian in kappa (applied by the caller to ``J V``). Both network
parts come from two passes of GEMMs over all points, points last (Pearlmutter 1994's R-operator
written out; ``HESSIAN.md``). With ``a~ = [a; 1]``, ``s'_l, s''_l = sigma', sigma''(z_l)``,
``delta_l = d kappa / d z_l`` and ``beta_l = g delta_l``, per direction ``(dW_l, db_l)``:

* tangent forward: ``dz_1 = dW_1 x + db_1``, ``da_l = s'_l dz_l``,
  ``dz_{l+1} = W_{l+1} da_l + dW_{l+1} a_l + db_{l+1}``, and ``J V = phi'(z_L) dz_L``;
* tangent of the ``g``-weighted backward pass, seeded with the cotangent ``Y = W J V`` (that
  seed adds ``J^T Y``, the backward pass being linear in it):
  ``dbeta_L = g phi'' dz_L + Y phi'``,
  ``dbeta_l = s''_l dz_l (g W_{l+1}^T delta_{l+1}) + s'_l (dW_{l+1}^T beta_{l+1} + W_{l+1}^T dbeta_{l+1})``;
* the product: block ``W_l`` is ``sum_q dbeta_l a~_{l-1}^T + beta_l da_{l-1}^T``, block ``b_l`` is
  ``sum_q dbeta_l``.

The forward and backward state at ``theta`` is computed once (:class:`NetworkDirections`) and
serves every block: a Krylov solver's products at one iterate share it. About ``12 n^2`` flops
per point and direction for a hidden ``n x n`` layer (six products of the forward pass's size)
against ``6 n^2`` for a gradient.
"""

from __future__ import annotations

from typing import Callable

import torch

from invfem.errors import ShapeError
from invfem.nn.hessian import _forward, supports_fast_hessian

#: bytes of per-point tangents held at once (sets how many directions a pass takes)
TANGENT_BYTES = 256 * 2**20


class NetworkDirections:
    """The network's state at ``theta`` and ``points`` for closed-form products with directions.

    ``kappa (Q,)``; :meth:`jvp` gives ``J V``; :meth:`hvp` the Hessian-vector products of
    ``outer(kappa_theta)`` given the outer loss's gradient ``g`` (at construction) and its
    Hessian in kappa as a block map (module docstring).
    """

    def __init__(self, mlp, theta: torch.Tensor, points: torch.Tensor, g: torch.Tensor | None = None):
        """State at ``theta``; ``g`` (or a later :meth:`weigh`) the outer gradient :meth:`hvp` needs."""
        if not supports_fast_hessian(mlp):
            raise NotImplementedError(f"closed-form directional derivatives need an invfem MLP with one output, got {mlp}")
        theta = theta.detach()
        self.n_params = theta.shape[0]
        if not mlp.output_bias:      # an output bias held at 0: its entry padded in, dropped from products
            mlp, theta = mlp.with_output_bias(), torch.cat([theta, theta.new_zeros(mlp.widths[-1])])
        if points.ndim == 1 and mlp.widths[0] == 1:
            points = points.unsqueeze(-1)
        if points.ndim != 2 or points.shape[1] != mlp.widths[0]:
            raise ShapeError(f"points must have shape (n, {mlp.widths[0]}), got {tuple(points.shape)}")
        self.mlp, self.widths = mlp, mlp.widths
        self.layers = mlp.layers(theta)
        # a~_l = [a_l; 1] (n_l + 1, Q) is the one copy of the activations: the bias's column rides
        # in every GEMM with a_l (no elementwise pass per direction for db, no concatenation per pass)
        (self.kappa, _, self.s1, self.s2, self.dphi, self.d2phi, self.aug) = _forward(
            mlp, self.layers, points.to(device=theta.device, dtype=theta.dtype), augmented=True)
        self.n_points = points.shape[0]
        self.wt = [w.T.contiguous() for w, _ in self.layers]                      # W_l^T for the backward
        self.like = theta
        self.g = None
        if g is not None:
            self.weigh(g)

    def weigh(self, g: torch.Tensor) -> None:
        """Set the outer loss's gradient in kappa ``g (Q,)`` (the weights of ``N_g``), once."""
        if self.g is not None:
            raise ValueError("NetworkDirections.weigh: g is set already (build a new one for another g)")
        if g.shape != (self.n_points,):
            raise ShapeError(f"g must have shape ({self.n_points},) (one value per point), got {tuple(g.shape)}")
        self.g = g.detach().to(self.like)
        # the backward pass weighted by g from its seed: beta_l = g delta_l (g is per point, so it
        # commutes with the recurrence), g W_{l+1}^T delta_{l+1} = W_{l+1}^T beta_{l+1}; and
        # s2g_l = s''_l W_{l+1}^T beta_{l+1}, the second-order term's weight, in place of s''_l
        L = len(self.layers)
        self.beta, self.s2g = [None] * (L + 1), [None] * L
        self.beta[L] = (self.g * self.dphi)[None, :]
        for l in range(L - 1, 0, -1):
            gabar = self.wt[l] @ self.beta[l + 1]
            self.beta[l] = self.s1[l] * gabar
            self.s2g[l] = self.s2[l] * gabar         # not in place: an activation may share s' and s''
            self.s2[l] = None                         # freed layer by layer (memory: Q x widths)
        self.s2 = None

    def _split(self, block: torch.Tensor):
        """``(P, k)`` -> per layer ``[dW_l | db_l]`` ``(k, n_l, n_{l-1} + 1)`` (the bias as the last column)."""
        k = block.shape[1]
        if block.shape[0] == self.n_params and self.n_params != self.like.shape[0]:
            block = torch.cat([block, block.new_zeros(1, k)])
        rows = block.T
        out, off = [], 0
        for w, b in self.layers:
            n, m = w.shape
            out.append(torch.cat([rows[:, off:off + n * m].reshape(k, n, m),
                                  rows[:, off + n * m:off + n * m + n].reshape(k, n, 1)], 2))
            off += n * m + n
        return out

    def _tangents(self, parts):
        """``dz_l`` and ``da_l = s'_l dz_l`` ``(k, n_l, Q)`` for l = 1..L (``da`` of hidden layers only)."""
        dz, da = [None], [None]
        for l, dwb in enumerate(parts, start=1):
            if l > 1:                                                          # W_l da_{l-1} + [dW_l|db_l] a~_{l-1}
                z = torch.matmul(self.layers[l - 1][0], da[l - 1]).baddbmm_(dwb, self.aug[l - 1].expand(dwb.shape[0], -1, -1))
            else:
                z = torch.matmul(dwb, self.aug[0])
            dz.append(z)
            da.append(self.s1[l] * z if l < len(parts) else None)
        return dz, da

    def _check(self, block: torch.Tensor) -> torch.Tensor:
        if block.ndim == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[0] != self.n_params:
            raise ShapeError(f"directions must have shape ({self.n_params}, k), got {tuple(block.shape)}")
        return block.to(self.like)

    def _width(self) -> int:
        """Directions per pass: their tangents within :data:`TANGENT_BYTES`."""
        per_direction = 8 * self.n_points * (3 * sum(self.widths[1:-1]) + 4)
        return max(1, int(TANGENT_BYTES // per_direction))

    def jvp(self, block: torch.Tensor) -> torch.Tensor:
        """``(J V)^T`` ``(k, Q)`` for directions ``V (P, k)``."""
        block = self._check(block)
        out, width = [], self._width()
        for start in range(0, block.shape[1], width):
            dz, _ = self._tangents(self._split(block[:, start:start + width]))
            out.append(self.dphi * dz[-1][:, 0, :])
        return torch.cat(out)

    def hvp(self, block: torch.Tensor, outer_hvp: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``H V`` ``(P, k)`` of ``outer(kappa_theta)``: ``outer_hvp`` maps ``J V`` ``(k, Q)`` to
        ``W J V`` ``(k, Q)`` (the outer loss's Hessian in kappa); ``g`` was given at construction."""
        if self.g is None:
            raise ValueError("hvp needs the outer loss's gradient g: NetworkDirections(mlp, theta, points, g) or weigh(g)")
        block = self._check(block)
        width = self._width()
        return torch.cat([self._hvp_pass(block[:, s:s + width], outer_hvp) for s in range(0, block.shape[1], width)], 1)

    def _hvp_pass(self, block, outer_hvp):
        parts = self._split(block)
        dz, da = self._tangents(parts)
        L, k = len(self.layers), block.shape[1]
        jv = self.dphi * dz[L][:, 0, :]
        y = outer_hvp(jv)
        if y.shape != jv.shape:
            raise ShapeError(f"outer_hvp must return shape {tuple(jv.shape)}, got {tuple(y.shape)}")
        dbeta = (self.g * self.d2phi * dz[L][:, 0, :] + y * self.dphi)[:, None, :]     # (k, 1, Q)
        del jv, y
        dz[L] = None                     # each tangent freed once used (memory: k x width x Q per layer)
        out = []
        for l in range(L, 0, -1):
            grad_wb = torch.matmul(dbeta, self.aug[l - 1].T)                           # (k, n_l, n_{l-1} + 1)
            if l > 1:
                grad_wb[:, :, :-1].add_(torch.matmul(self.beta[l], da[l - 1].transpose(1, 2)))
                dw_next = parts[l - 1][:, :, :-1]                                      # dW_l (k, n_l, n_{l-1})
                back = torch.matmul(self.wt[l - 1], dbeta)                             # W_l^T dbeta_l
                back.baddbmm_(dw_next.transpose(1, 2), self.beta[l].expand(k, -1, -1))  # + dW_l^T beta_l
                dbeta = back.mul_(self.s1[l - 1]).addcmul_(dz[l - 1], self.s2g[l - 1])
                del back
                dz[l - 1] = da[l - 1] = None
            n, m = self.layers[l - 1][0].shape
            out.append(torch.cat([grad_wb[:, :, :-1].reshape(k, n * m), grad_wb[:, :, -1]], 1))
        flat = torch.cat(out[::-1], 1).T
        return flat[:self.n_params].contiguous() if flat.shape[0] != self.n_params else flat.contiguous()
