"""Closed-form per-point Jacobian and weighted Hessian of an :class:`~invfem.nn.MLP`, as GEMMs.

For ``kappa_q = phi(z_L(x_q; theta)) + shift`` and per-point weights ``g_q`` (gradient of an
outer loss in kappa) and ``w_q`` (its pointwise curvature) this computes

* ``J = d kappa / d theta``                                        ``(Q, P)``
* ``N = sum_q g_q Hess_theta kappa_q + w_q J_q J_q^T``             ``(P, P)``

and, on request, the derivatives in the network input ``x_q`` that a coefficient
``kappa(theta, u_q)`` of a state ``u`` needs: ``kappa_x``, the mixed ``d/dx (g grad_theta
kappa + w kappa J)`` and ``g kappa_xx + w kappa_x^2``.

The algebra (Bishop 1992; Dangel, Harmeling & Hennig 2020; ``HESSIAN.md``). Per point, with
``a~ = [a; 1]``, ``D_l = diag(sigma'(z_l))``, ``delta_l = d kappa / d z_l``: fold the weights
into the top of the recursion, ``G_L = g phi'' + w phi'^2`` and ``delta^_l = g delta_l``; then
``G_l = diag(g abar_l sigma''(z_l)) + D_l W_{l+1}^T G_{l+1} W_{l+1} D_l`` is the Hessian of the
weighted loss in ``z_l``. With ``P_{l,m} = M_{m,l}^T G_m`` (``M_{m,l} = dz_m/dz_l``) and
``T_{m-1,l} = d a_{m-1} / d z_l``, block ``(W~_l, W~_m)``, ``l <= m``, is

    N[(i,j), (i',j')] = sum_q P_{l,m}[i,i'] a~_{l-1}[j] a~_{m-1}[j']
                      + [l < m] sum_q delta^_m[i'] a~_{l-1}[j] T_{m-1,l}[j',i].

Each sum over the points is ONE matrix product with the points as the inner dimension
(``U^T V`` with rows ``vec(P_{l,m})`` and ``vec(a~ a~^T)``), accumulated over chunks of points
and permuted into the flat layout once. About ``2 P^2 Q`` flops, the cost of a single
``(P x Q) (Q x P)`` product; the per-point recursions cost about ``1/width`` of that.
Every block is checked against ``torch.func`` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invfem.errors import ShapeError
from invfem.linalg.pattern import csr_tensor
from invfem.nn.mlp import MLP

DEFAULT_CHUNK = 1024  # points per chunk: large enough for efficient GEMMs (measured: 512-2048 within noise)


def supports_fast_hessian(mlp) -> bool:
    """Whether the closed form applies: an :class:`MLP` with one output (any registered activation)."""
    return isinstance(mlp, MLP) and mlp.widths[-1] == 1


@dataclass
class NetworkTerms:
    """What :func:`network_terms` returns (entries not asked for are None).

    ``kappa (Q,)``, ``jac (Q, P)``, ``hessian (P, P)``; with input derivatives: ``kappa_x
    (Q, n_in)``, ``mixed (Q, P, n_in)`` = ``d/dx_q`` of the weighted gradient, ``input_hessian
    (Q, n_in, n_in)`` = second derivative of the weighted loss in ``x_q``.
    """

    kappa: torch.Tensor
    jac: torch.Tensor
    hessian: torch.Tensor | None = None
    kappa_x: torch.Tensor | None = None
    mixed: torch.Tensor | None = None
    input_hessian: torch.Tensor | None = None


def mlp_jacobian_and_hessian(mlp: MLP, theta: torch.Tensor, points: torch.Tensor, weights: torch.Tensor | None,
                             chunk: int = DEFAULT_CHUNK, curvature: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(J, N)``: the per-point Jacobian of ``mlp(theta, points)`` and ``sum_q w_q Hess kappa_q``
    (plus ``sum_q c_q J_q J_q^T`` for a pointwise ``curvature`` c); ``weights=None`` skips N."""
    terms = network_terms(mlp, theta, points, weights, curvature, chunk=chunk)
    return terms.jac, terms.hessian


def network_terms(mlp: MLP, theta: torch.Tensor, points: torch.Tensor, g: torch.Tensor | None = None,
                  w: torch.Tensor | None = None, *, input_derivatives: bool = False,
                  chunk: int = DEFAULT_CHUNK, on_chunk=None, store: bool = True) -> NetworkTerms:
    """Closed-form ``J`` and weighted Hessian ``sum_q g_q Hess kappa_q + w_q J_q J_q^T`` (module doc).

    ``g=None`` (and ``w=None``) skips the Hessian. ``on_chunk(sl, jac_rows, mixed_rows)`` is
    called for every chunk of points ``sl`` with its rows of ``J`` (``(c, P)``) and of
    ``mixed`` (``(c, P, n_in)`` or None), so a caller can consume ``J`` while it is in
    cache; ``store=False`` then skips the ``(Q, P)`` arrays (``jac``, ``mixed`` come back None).
    Tensors follow ``theta``'s device and dtype.
    """
    if not supports_fast_hessian(mlp):
        raise NotImplementedError(f"the closed-form network Hessian needs an invfem MLP with one output, got {mlp}")
    theta = theta.detach()
    if not mlp.output_bias:
        # no output bias = an output bias held at 0: the closed form of that network, with the
        # bias's row and column (the last entry of the flat layout) dropped
        p = theta.shape[0]
        consume = None if on_chunk is None else (lambda sl, jac_rows, mixed_rows: on_chunk(
            sl, jac_rows[:, :p], None if mixed_rows is None else mixed_rows[:, :p]))
        t = network_terms(mlp.with_output_bias(), torch.cat([theta, theta.new_zeros(mlp.widths[-1])]), points, g, w,
                          input_derivatives=input_derivatives, chunk=chunk, on_chunk=consume, store=store)
        cut = lambda a, rows: None if a is None else (a[:p, :p].contiguous() if rows else a[:, :p].contiguous())
        return NetworkTerms(t.kappa, cut(t.jac, False), cut(t.hessian, True), t.kappa_x, cut(t.mixed, False),
                            t.input_hessian)
    if points.ndim == 1 and mlp.widths[0] == 1:
        points = points.unsqueeze(-1)
    if points.ndim != 2 or points.shape[1] != mlp.widths[0]:
        raise ShapeError(f"points must have shape (n, {mlp.widths[0]}), got {tuple(points.shape)}")
    n_points = points.shape[0]
    for name, v in (("g", g), ("w", w)):
        if v is not None and v.shape != (n_points,):
            raise ShapeError(f"{name} must have shape ({n_points},) (one value per point), got {tuple(v.shape)}")
    if g is None and w is not None:
        g = torch.zeros_like(w)
    pass_ = _Pass(mlp, theta, n_points, chunk, want_hessian=g is not None, input_derivatives=input_derivatives,
                  store=store)
    points = points.to(device=theta.device, dtype=theta.dtype)
    for start in range(0, n_points, chunk):
        sl = slice(start, min(start + chunk, n_points))
        jac_rows, mixed_rows = pass_.chunk(points[sl], sl, None if g is None else g[sl], None if w is None else w[sl])
        if on_chunk is not None:
            on_chunk(sl, jac_rows, mixed_rows)
    return pass_.result()


class _Pass:
    """Accumulators of one pass over the points, chunk by chunk.

    Per-point quantities are stored points-last, ``(..., c)``: every per-point product with a
    weight matrix is then ONE matrix product with the contraction in the leading dimension.
    """

    def __init__(self, mlp: MLP, theta: torch.Tensor, n_points: int, chunk: int, want_hessian: bool,
                 input_derivatives: bool, store: bool):
        self.mlp, self.want_hessian, self.input_derivatives = mlp, want_hessian, input_derivatives
        self.layers = mlp.layers(theta)
        self.widths = widths = mlp.widths
        self.n_layers = L = len(self.layers)
        self.offsets, pos = [], 0                        # flat offset of W_l; b_l follows it
        for w, b in self.layers:
            self.offsets.append(pos)
            pos += w.numel() + b.numel()
        self.n_params = pos
        self.like = theta
        n_in, rows = widths[0], (n_points if store else min(chunk, n_points))
        self.store = store
        self.kappa = theta.new_empty(n_points)
        self.jac = theta.new_empty(rows, pos)            # J rows (all points, or one chunk's when not stored)
        if input_derivatives:
            self.kappa_x = theta.new_empty(n_points, n_in)
            self.mixed = theta.new_empty(rows, pos, n_in)
            self.input_hessian = theta.new_empty(n_points, n_in, n_in)
        self.triu = [None] + [_triu_flat(widths[l], theta.device) for l in range(1, L + 1)]
        # GEMM outputs per block (l <= m), in their native layouts; permuted once in result()
        self.r1: dict[tuple[int, int], torch.Tensor] = {}
        self.r2: dict[tuple[int, int], torch.Tensor] = {}

    def _rows(self, sl: slice) -> slice:
        return sl if self.store else slice(0, sl.stop - sl.start)

    # -- one chunk -------------------------------------------------------------------------
    def chunk(self, x, sl, g, w):
        L, layers, widths = self.n_layers, self.layers, self.widths
        c = x.shape[0]
        kappa, acts, s1, s2, delta, abar, dphi, d2phi = _forward_backward(self.mlp, layers, x)
        self.kappa[sl] = kappa
        jac = self.jac[self._rows(sl)]
        for l in range(1, L + 1):                        # J rows: W_l (i, j) = delta_l[i] a_{l-1}[j], then b_l
            n, k, off = widths[l], widths[l - 1], self.offsets[l - 1]
            d_rows, a_rows = delta[l].T.contiguous(), acts[l - 1].T.contiguous()    # points first: unit strides
            torch.mul(d_rows[:, :, None], a_rows[:, None, :], out=jac[:, off:off + n * k].view(c, n, k))
            jac[:, off + n * k:off + n * k + n] = d_rows
        mixed = self.mixed[self._rows(sl)] if self.input_derivatives else None
        if self.input_derivatives:
            self.kappa_x[sl] = (layers[0][0].T @ delta[1]).T
        if not self.want_hessian:
            return jac, mixed
        aug = [torch.cat([a, a.new_ones(1, c)]) for a in acts]     # a~_l  (n_l + 1, c)
        wdelta = [None] + [g * delta[l] for l in range(1, L + 1)]
        # pt[l][m] = P_{l,m} = M_{m,l}^T G_m  (n_l, n_m, c), m = l..L; pt[l][l] = G_l
        pt = [None] * (L + 1)
        pt[L] = {L: (g * d2phi + (0 if w is None else w * dphi * dphi))[None, None, :]}
        for l in range(L - 1, 0, -1):
            w_next = layers[l][0]
            pt[l] = {m: _times_rows(w_next.T, p).mul_(s1[l][:, None, :]) for m, p in pt[l + 1].items()}
            # G_l = D_l W_{l+1}^T G_{l+1} W_{l+1} D_l + diag(g abar_l sigma''):  P_{l,l+1} W_{l+1} D_l
            g_l = _times_rows(w_next.T, pt[l][l + 1].transpose(0, 1).contiguous()).mul_(s1[l][:, None, :])
            g_l.diagonal(dim1=0, dim2=1).add_((g * abar[l] * s2[l]).T)
            pt[l][l] = g_l
        # tt[k][l] = T_{k,l} = d a_k / d z_l  (n_k, n_l, c), l < k < L
        tt = [None] * L
        for k in range(2, L):
            w_k = layers[k - 1][0]
            tt[k] = {l: _times_rows(w_k, t).mul_(s1[k][:, None, :]) for l, t in (tt[k - 1] or {}).items()}
            tt[k][k - 1] = s1[k][:, None, :] * w_k[:, :, None] * s1[k - 1][None, :, :]
        for m in range(1, L + 1):
            for l in range(1, m + 1):
                v = (aug[l - 1][:, None, :] * aug[m - 1][None, :, :]).view(-1, c)
                u = pt[l][m].view(-1, c)
                if l == m:     # symmetric G_l: only its upper triangle (half the flops of this block)
                    u = u.index_select(0, self.triu[l])
                _accumulate(self.r1, (l, m), u, v)
                if l < m:
                    left = (aug[l - 1][:, None, :] * wdelta[m][None, :, :]).view(-1, c)
                    # T_{l,l} = D_l is diagonal: keep only its diagonal (n_l times fewer flops)
                    right = s1[l] if m - 1 == l else tt[m - 1][l].view(-1, c)
                    _accumulate(self.r2, (l, m), left, right)
        if self.input_derivatives:
            self._input_terms(sl, mixed, c, aug, s1, wdelta, pt, tt)
        return jac, mixed

    def _input_terms(self, sl, out, c, aug, s1, wdelta, pt, tt):
        """Mixed theta/x and x/x second derivatives of the weighted loss (``kappa(theta, u_q)``)."""
        L, widths = self.n_layers, self.widths
        w1 = self.layers[0][0]
        n_in = widths[0]
        for l in range(1, L + 1):
            n, k, off = widths[l], widths[l - 1], self.offsets[l - 1]
            gm = _times_rows(w1.T, pt[1][l])                 # (G_l dz_l/dx)^T = W_1^T P_{1,l}  (n_in, n_l, c)
            if l == 1:                                        # d a_{l-1} / dx  (k, n_in, c)
                da = torch.eye(n_in, dtype=w1.dtype, device=w1.device)[:, :, None].expand(n_in, n_in, c)
            elif l == 2:
                da = s1[1][:, None, :] * w1[:, :, None]
            else:
                da = torch.einsum("jiq,id->jdq", tt[l - 1][1], w1)
            for d in range(n_in):        # W part (i, j): (G dz/dx)[i, d] a_{l-1}[j] + delta^[i] (d a_{l-1}/dx)[j, d]
                block = out[:, off:off + n * k, d].view(c, n, k)
                torch.mul(gm[d].T[:, :, None], aug[l - 1][:-1].T[:, None, :], out=block)
                block.addcmul_(wdelta[l].T[:, :, None], da[:, d, :].T[:, None, :])
            out[:, off + n * k:off + n * k + n, :] = gm.permute(2, 1, 0)
        self.input_hessian[sl] = torch.einsum("id,ijq,je->qde", w1, pt[1][1], w1)

    # -- assembly of the flat matrix -------------------------------------------------------
    def result(self) -> NetworkTerms:
        terms = NetworkTerms(kappa=self.kappa, jac=self.jac if self.store else None)
        if self.input_derivatives:
            terms.kappa_x, terms.input_hessian = self.kappa_x, self.input_hessian
            terms.mixed = self.mixed if self.store else None
        if self.want_hessian:
            terms.hessian = self._assemble()
        return terms

    def _assemble(self) -> torch.Tensor:
        """Permute every block ``[i, j, i', j']`` into the flat layout (W row-major, then b) and mirror."""
        widths, offsets = self.widths, self.offsets
        h = self.like.new_empty(self.n_params, self.n_params)     # every entry is written below (tested)
        for (l, m), r1 in self.r1.items():
            n_l, n_m, k_l, k_m = widths[l], widths[m], widths[l - 1], widths[m - 1]
            if l == m:          # upper triangle (i <= i') of a symmetric block: mirror (i, j) <-> (i', j')
                packed = r1.view(-1, k_l + 1, k_m + 1)
                full = r1.new_empty(n_l * n_l, k_l + 1, k_m + 1)
                full[self.triu[l]] = packed
                full[_transposed_index(self.triu[l], n_l)] = packed.transpose(1, 2)
                diagonal = torch.arange(n_l, device=r1.device) * (n_l + 1)          # i = i': symmetric in (j, j')
                full[diagonal] = 0.5 * (full[diagonal] + full[diagonal].transpose(1, 2))
                r1 = full
            block = r1.view(n_l, n_m, k_l + 1, k_m + 1).permute(0, 2, 1, 3)          # [i, j, i', j'] (a view)
            rw, cw = offsets[l - 1], offsets[m - 1]
            rb, cb = rw + n_l * k_l, cw + n_m * k_m
            ww = h[rw:rb, cw:cb].view(n_l, k_l, n_m, k_m)          # (W_l, W_m), (b_l, W_m): where r2 adds
            bw = h[rb:rb + n_l, cw:cb].view(n_l, n_m, k_m)
            ww.copy_(block[:, :k_l, :, :k_m])
            h[rw:rb, cb:cb + n_m].view(n_l, k_l, n_m).copy_(block[:, :k_l, :, k_m])
            bw.copy_(block[:, k_l, :, :k_m])
            h[rb:rb + n_l, cb:cb + n_m].copy_(block[:, k_l, :, k_m])
            if m == l + 1:      # adjacent layers: r2[(j, i'), i] holds only the entries j' = i
                r2 = self.r2[(l, m)].view(k_l + 1, n_m, n_l)
                ww.diagonal(dim1=0, dim2=3).add_(r2[:k_l])
                bw.diagonal(dim1=0, dim2=2).add_(r2[k_l])
            elif l < m:         # r2[(j, i'), (j', i)]
                r2 = self.r2[(l, m)].view(k_l + 1, n_m, k_m, n_l).permute(3, 0, 1, 2)
                ww.add_(r2[:, :k_l])
                bw.add_(r2[:, k_l])
            if l < m:
                rows, cols = slice(rw, rb + n_l), slice(cw, cb + n_m)
                h[cols, rows] = h[rows, cols].T
        return h


def _forward(mlp: MLP, layers, x: torch.Tensor, augmented: bool = False):
    """The forward pass at the points ``x`` ``(c, n_in)``, points last: ``kappa (c,)``,
    activations ``acts[l] = a_l`` (``a_0 = x^T``), ``s1[l], s2[l]`` = sigma', sigma'' at ``z_l``
    (hidden layers) and phi', phi'' at the output. ``augmented``: each ``a_l`` is held as the
    ``(n_l + 1, c)`` buffer ``[a_l; 1]`` (``acts[l]`` its view without the last row; the buffers
    returned as a last item), the one copy a GEMM with ``[dW_l | db_l]`` needs."""
    sigma, phi = mlp.sigma, mlp.phi
    ones = x.new_ones(1, x.shape[0])
    aug = [torch.cat([x.T, ones])] if augmented else None
    acts, s1, s2 = [aug[0][:-1] if augmented else x.T], [None], [None]   # s1/s2 of hidden layers 1..L-1; (n, c)
    for w_l, b_l in layers[:-1]:
        z = torch.addmm(b_l[:, None], w_l, acts[-1])
        d1, d2 = sigma.derivatives(z)
        a = sigma.value(z)
        if augmented:
            aug.append(torch.cat([a, ones]))
            a = aug[-1][:-1]
        acts.append(a)
        s1.append(d1)
        s2.append(d2)
    w_out, b_out = layers[-1]
    z_out = torch.addmm(b_out[:, None], w_out, acts[-1])[0]
    dphi, d2phi = phi.derivatives(z_out)
    kappa = phi.value(z_out) + mlp.shift
    return (kappa, acts, s1, s2, dphi, d2phi) + ((aug,) if augmented else ())


def _forward_backward(mlp: MLP, layers, x: torch.Tensor):
    """:func:`_forward` and one backward pass: ``kappa, acts, s1, s2, delta, abar, dphi, d2phi``
    with ``delta[l] = d kappa / d z_l`` and ``abar[l] = d kappa / d a_l``."""
    kappa, acts, s1, s2, dphi, d2phi = _forward(mlp, layers, x)
    L = len(layers)
    delta, abar = [None] * (L + 1), [None] * L       # backward
    delta[L] = dphi[None, :]
    for l in range(L - 1, 0, -1):
        abar[l] = layers[l][0].T @ delta[l + 1]      # layers[l] = (W_{l+1}, b_{l+1})
        delta[l] = s1[l] * abar[l]
    return kappa, acts, s1, s2, delta, abar, dphi, d2phi


class NetworkJacobian:
    """``kappa`` and the network Jacobian ``J = d kappa / d theta`` at the points ``(Q, P)``, kept
    factored (per layer ``delta_l`` and ``a_{l-1}``, one forward and one backward pass) so that
    a sparse coupling can be applied to it without forming ``J``: :meth:`left_multiply`.

    Block ``W_l`` of ``M @ J`` is ``sum_q M[d, q] delta_l[i, q] a_{l-1}[j, q]``: one sparse
    product of ``M`` stacked ``n_l`` times with its values scaled by ``delta_l[i, col]`` (or
    stacked over ``j`` where ``a_{l-1}`` is the narrower factor) with the other factor; ``b_l``'s
    block is ``M delta_l^T``. The flops of ``M @ J`` (``2 nnz(M) P``) without writing or reading
    anything of size ``Q x P``: at 30x30 P1 (5400 points, 921 parameters) ``J`` is 40 MB, and
    writing it cost more than the product (``benchmarks/jacobian_cost.py``).
    """

    def __init__(self, mlp: MLP, theta: torch.Tensor, points: torch.Tensor):
        if not supports_fast_hessian(mlp):
            raise NotImplementedError(f"the closed-form network Jacobian needs an invfem MLP with one output, got {mlp}")
        theta = theta.detach()
        self.n_params = theta.shape[0]
        if not mlp.output_bias:      # as network_terms: an output bias held at 0, its column dropped
            mlp, theta = mlp.with_output_bias(), torch.cat([theta, theta.new_zeros(mlp.widths[-1])])
        if points.ndim == 1 and mlp.widths[0] == 1:
            points = points.unsqueeze(-1)
        if points.ndim != 2 or points.shape[1] != mlp.widths[0]:
            raise ShapeError(f"points must have shape (n, {mlp.widths[0]}), got {tuple(points.shape)}")
        self.layers = mlp.layers(theta)
        self.kappa, self._acts, _, _, self._delta, _, _, _ = _forward_backward(
            mlp, self.layers, points.to(device=theta.device, dtype=theta.dtype))
        self.n_points = points.shape[0]

    def left_multiply(self, matrix: torch.Tensor) -> torch.Tensor:
        """``matrix @ J`` ``(r, P)`` for a sparse CSR ``matrix`` ``(r, Q)`` (class docstring)."""
        if matrix.layout != torch.sparse_csr or matrix.ndim != 2 or matrix.shape[1] != self.n_points:
            raise ShapeError(f"matrix must be sparse CSR with {self.n_points} columns (one per point), got "
                             f"{matrix.layout} {tuple(matrix.shape)}")
        crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
        rows, nnz = matrix.shape[0], values.numel()
        out = values.new_empty(rows, sum(w.numel() + b.numel() for w, b in self.layers))
        off = 0
        for l, (w_l, _) in enumerate(self.layers, start=1):
            n, k = w_l.shape
            delta, act = self._delta[l], self._acts[l - 1]
            scale, other, stack = (delta, act, n) if n <= k else (act, delta, k)
            times = torch.arange(stack, device=crow.device)
            stacked_crow = torch.cat([(crow[:-1][None, :] + times[:, None] * nnz).reshape(-1),
                                      crow.new_full((1,), stack * nnz)])
            stacked = csr_tensor(stacked_crow, col.repeat(stack), (values[None, :] * scale.index_select(1, col)).reshape(-1),
                                 (stack * rows, self.n_points))
            block = (stacked @ other.T.contiguous()).view(stack, rows, -1)       # (stack, r, the other width)
            block = block.permute(1, 0, 2) if n <= k else block.permute(1, 2, 0)  # (r, n, k)
            out[:, off:off + n * k].view(rows, n, k).copy_(block)
            out[:, off + n * k:off + n * k + n] = matrix @ delta.T.contiguous()
            off += n * k + n
        return out if off == self.n_params else out[:, :self.n_params].contiguous()


def _times_rows(matrix: torch.Tensor, stack: torch.Tensor) -> torch.Tensor:
    """``out[a, ...] = sum_k matrix[a, k] stack[k, ...]`` as one matrix product."""
    return (matrix @ stack.reshape(stack.shape[0], -1)).view(matrix.shape[0], *stack.shape[1:])


def _triu_flat(n: int, device) -> torch.Tensor:
    """Flat indices ``i * n + i'`` of the upper triangle ``i <= i'`` of an ``n x n`` matrix."""
    i, j = torch.triu_indices(n, n, device=device)
    return i * n + j


def _transposed_index(flat: torch.Tensor, n: int) -> torch.Tensor:
    """``i * n + i'`` -> ``i' * n + i``."""
    return (flat % n) * n + flat // n


def _accumulate(store: dict, key, left: torch.Tensor, right: torch.Tensor) -> None:
    """``store[key] += left right^T`` (points last: the sum over the chunk's points as one GEMM)."""
    if key in store:
        store[key].addmm_(left, right.T)
    else:
        store[key] = left @ right.T
