"""Closed-form gradient and Hessian-vector products of a PINN loss (no autograd in theta).

Every PINN term of :mod:`invfem.pinn.losses` is linear in the network's input jet at its points:
``r_q = sum_c a_qc y_qc - f_q``, the channels ``y`` being the value, the first derivatives in
``first`` and one operator channel ``h = sum_i beta_i d_ii u + sum_j gamma_j d_j u`` (the
Laplacian for an elliptic term, ``d_t - alpha Laplacian`` folded into one channel for the heat
equation with a constant ``alpha``). A :class:`LinearForm` says which. The jet of the network,
channels ``(v, d_1..d_k, h)`` at every neuron, moves through a layer as

    z^c = W a^c (+ b for the value),     v' = s(z^0),   d_i' = s'(z^0) z^i,
    h' = s'(z^0) z^h + s''(z^0) sum_i beta_i (z^i)^2,

so the loss ``sum_q w r_q^2`` is a layered function of theta with a pointwise map coupling the
channels of one neuron. Its gradient is one backward pass; its Hessian-vector product is the
R-operator (Pearlmutter 1994): the forward tangent of the jet along ``V`` and the tangent of the
backward pass, which adds the map's second derivatives weighted by the adjoint (``K z'``; they
need ``s'''`` and ``s''''``, taken by forward-mode AD of the activation's own derivatives).
Everything is GEMMs over all points and channels at once with ``k`` directions batched, about
``12 C Q P`` flops per direction (``C`` channels, ``Q`` points, ``P`` parameters) against the
gradient's ``6 C Q P``. The full Hessian is the Gauss-Newton part ``2 w J^T J`` (the residual
Jacobian in closed form, one GEMM over the points: the ``2 Q P^2`` bound itself) plus the rest by
the channel-wise HBP recursion (:meth:`_Chunk.hessian_blocks`: per-point ``(n C)^2`` curvature,
one GEMM per layer pair with the non-zero channel pairs and points inner), or the product with
the identity (:meth:`PinnCurvature.hessian_products`).

The distance construction (``u = d(x) N(x)``) is linear in the network's jet with per-point
coefficients, so it only changes ``a`` (:func:`network_coefficients`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from invfem.errors import ConfigError
from invfem.nn.mlp import MLP, POSITIVITY

DEFAULT_CHUNK = 2048        # points per chunk of the state
BLOCK_ENTRIES = 1 << 18     # the full Hessian's products take as many directions as keep one tangent
                            # (directions x width x channels x chunk points) near this size: the passes are
                            # bound by memory traffic, not flops (pinn_heat, 2048-point chunks: one direction
                            # 46 ms, blocks of 8-32 directions 80-190 ms per direction)


@dataclass(frozen=True, eq=False)
class LinearForm:
    """A PINN term as a linear function of the input jet at its points.

    ``points (q, d)``; ``first``: the coordinates of the first-derivative channels; ``beta (k,)``:
    the weights of the pure second derivatives (in the coordinates ``first``) in the operator
    channel, ``gamma (d,)`` its first-order weights (None: no operator channel); ``coef (C, q)``
    the residual's coefficients of the channels ``(value, first..., h)``; ``f (q,)``; ``weight``:
    the term is ``weight * sum_q r_q^2``.
    """

    points: torch.Tensor
    first: tuple
    beta: torch.Tensor | None
    gamma: torch.Tensor | None
    coef: torch.Tensor
    f: torch.Tensor
    weight: float

    @property
    def has_h(self) -> bool:
        return self.gamma is not None

    @property
    def n_channels(self) -> int:
        return 1 + len(self.first) + int(self.has_h)


def network_coefficients(distance, form: LinearForm) -> torch.Tensor:
    """The coefficients ``(C, q)`` of the NETWORK's channels for ``u = d N`` (``distance`` a
    :class:`~invfem.pinn.fields.BoxDistance`, or None: ``u = N``), from the form's coefficients
    of u's channels (the transpose of the per-point map from N's jet to u's jet)."""
    if distance is None:
        return form.coef
    k, x, a = len(form.first), form.points, form.coef
    extra = [] if not form.has_h else [int(j) for j in torch.nonzero(form.gamma).flatten() if int(j) not in form.first]
    second = [] if not form.has_h else [i for i, b in zip(form.first, form.beta.tolist()) if b != 0]
    d = distance.jet(x, tuple(form.first) + tuple(extra), tuple(second))
    out = torch.empty_like(a)
    out[0] = d.value * a[0]
    for i in range(k):
        out[0] = out[0] + d.grad[i] * a[1 + i]
        out[1 + i] = d.value * a[1 + i]
    if form.has_h:
        h = a[-1]
        hd = sum(float(form.beta[form.first.index(i)]) * d.dd(i) for i in second) if second else torch.zeros_like(h)
        for j in torch.nonzero(form.gamma).flatten().tolist():
            hd = hd + float(form.gamma[j]) * d.d(j)
        out[0] = out[0] + hd * h
        for i in range(k):
            out[1 + i] = out[1 + i] + 2 * form.beta[i] * d.grad[i] * h
        out[-1] = d.value * h
    return out


def network_forms(field, forms) -> list:
    """The forms with their coefficients in the network's channels (:func:`network_coefficients`
    for ``field.distance``): what :class:`PinnCurvature` takes. They do not depend on theta."""
    return [replace(form, coef=network_coefficients(field.distance, form)) for form in forms]


def _higher_derivatives(sigma, z: torch.Tensor, closed: bool = True):
    """``s, s', s'', s''', s''''`` of an activation at ``z``: its ``jet4`` where it has one (and
    ``closed``), else the closed-form first two and the next two by forward-mode AD of them
    (entrywise, exact)."""
    if closed and sigma.jet4 is not None:
        return sigma.jet4(z)
    s1, s2 = sigma.derivatives(z)
    ones = torch.ones_like(z)
    third = lambda u: torch.func.jvp(lambda t: sigma.derivatives(t)[1], (u,), (ones,))[1]
    s3, s4 = torch.func.jvp(third, (z,), (ones,))
    return sigma.value(z), s1, s2, s3, s4


def channel_pairs(k: int, has_h: bool):
    """The channel pairs (flat indices ``c C + d`` and ``d C + c``) where the residual part of the
    pre-activation curvature ``P^res[c, d]`` and the tangent maps ``T[d, c]`` can be non-zero, for
    ``k`` first-derivative channels and an operator channel ``has_h`` (``C = 1 + k + has_h``).

    The jet is triangular: ``d_i'`` depends on the value and ``d_i``, ``h'`` on all, the value on
    the value; and ``K`` couples only (value, any) and (``d_i``, ``d_i``) with an operator channel.
    So ``P^res = T^T K T`` lives on ``c = 0 or d = 0 or (c = d a first derivative, with h)`` (9 of
    16 pairs for the heat PINN) and ``T`` on ``c = 0 or c = d or d = h`` (9 of 16)."""
    C = 1 + k + int(has_h)
    first, h = range(1, 1 + k), C - 1
    res = [c * C + d for c in range(C) for d in range(C) if c == 0 or d == 0 or (c == d and has_h and c in first)]
    tan = [d * C + c for d in range(C) for c in range(C) if c == 0 or c == d or (has_h and d == h)]
    return res, tan


class _Chunk:
    """The primal state of one term's chunk of points at one theta: the jet forward, the
    residual, the adjoint backward and the pointwise map's derivatives per hidden layer."""

    def __init__(self, mlp, layers, form: LinearForm, coef: torch.Tensor, sl: slice):
        x, first = form.points[sl], form.first
        q, d, C, k = x.shape[0], x.shape[1], form.n_channels, len(first)
        self.C, self.k, self.q, self.has_h = C, k, q, form.has_h
        self.layers, self.n_layers = layers, len(layers)
        self.beta = None if not form.has_h else form.beta.to(x)
        a0 = x.new_zeros(d, C, q)
        a0[:, 0] = x.T
        for i, dim in enumerate(first):
            a0[dim, 1 + i] = 1.0
        if form.has_h:
            a0[:, -1] = form.gamma.to(x)[:, None]
        self.acts, self.maps = [a0], []
        z = None
        for l, (w, b) in enumerate(layers):
            z = (w @ self.acts[-1].reshape(w.shape[1], -1)).reshape(w.shape[0], C, q)
            z[:, 0] += b[:, None]
            if l < self.n_layers - 1:
                self.maps.append(self._map(mlp.sigma, z))
                self.acts.append(self.maps[-1].pop("a"))
        y = z[0].clone()
        y[0] += mlp.shift
        self.coef = coef[:, sl]
        self.r = (self.coef * y).sum(0) - form.f[sl]
        self.weight = form.weight
        seed = (2 * form.weight * self.r) * self.coef
        self.value = form.weight * float((self.r * self.r).sum())
        # backward: delta[l] = d loss / d z_l (n_l, C, q); the maps get their adjoint-weighted K
        self.delta = [None] * self.n_layers
        delta = seed[None]
        for l in range(self.n_layers - 1, -1, -1):
            self.delta[l] = delta
            if l == 0:
                break
            abar = (layers[l][0].T @ delta.reshape(delta.shape[0], -1)).reshape(-1, C, q)
            self._weight_map(self.maps[l - 1], abar)
            delta = self._jac_t(self.maps[l - 1], abar)

    # -- the pointwise jet map of one hidden layer ---------------------------------------------
    def _map(self, sigma, z):
        s0, s1, s2, s3, s4 = _higher_derivatives(sigma, z[:, 0])
        k, m = self.k, {"s1": s1, "s2": s2, "s3": s3, "s4": s4}
        a = torch.empty_like(z)
        a[:, 0] = s0
        zi = z[:, 1:1 + k]                                          # (n, k, q)
        a[:, 1:1 + k] = s1[:, None] * zi
        m["zi"] = zi
        j0 = z.new_empty(z.shape[0], self.C - 1, z.shape[2])        # d (d_i', h') / d z0
        j0[:, :k] = s2[:, None] * zi
        if self.has_h:
            beta = self.beta[None, :, None]
            bsum = (beta * zi * zi).sum(1)                          # sum_i beta_i z_i^2
            zh = z[:, -1]
            a[:, -1] = s1 * zh + s2 * bsum
            j0[:, -1] = s2 * zh + s3 * bsum
            m["j_hi"] = 2 * s2[:, None] * beta * zi                 # d h' / d z_i
            m["zh"], m["bsum"] = zh, bsum
        m["j0"] = j0
        m["a"] = a
        return m

    def _jac(self, m, zd):
        """The map's Jacobian times tangents ``zd (..., n, C, q)`` (:meth:`_lead_jac` on the neuron
        and channel dims moved to the front; the result's strides follow, so moving back is a view)."""
        front = zd.ndim - 3
        return self._lead_jac(m, zd.movedim(tuple(range(front)), tuple(range(2, 2 + front))), False) \
            .movedim(tuple(range(2, 2 + front)), tuple(range(front)))

    def _jac_t(self, m, ab):
        """The transposed Jacobian times adjoints ``ab (..., n, C, q)`` (as :meth:`_jac`)."""
        front = ab.ndim - 3
        return self._lead_jac(m, ab.movedim(tuple(range(front)), tuple(range(2, 2 + front))), True) \
            .movedim(tuple(range(2, 2 + front)), tuple(range(front)))

    def _weight_map(self, m, ab):
        """The map's second derivatives weighted by the adjoint ``ab`` (n, C, q): ``K`` blocks."""
        k = self.k
        av, ai = ab[:, 0], ab[:, 1:1 + k]
        m["k00"] = av * m["s2"] + (ai * m["zi"]).sum(1) * m["s3"]
        k0 = ab.new_empty(ab.shape[0], self.C - 1, ab.shape[2])     # K[0, c] = K[c, 0], c > 0
        k0[:, :k] = ai * m["s2"][:, None]
        if self.has_h:
            ah = ab[:, -1]
            m["k00"] = m["k00"] + ah * (m["s3"] * m["zh"] + m["s4"] * m["bsum"])
            k0[:, :k] += 2 * (ah * m["s3"])[:, None] * self.beta[None, :, None] * m["zi"]
            k0[:, -1] = ah * m["s2"]
            m["kii"] = 2 * (ah * m["s2"])[:, None] * self.beta[None, :, None]
        m["k0"] = k0
        for name in ("zi", "zh", "bsum", "s2", "s3", "s4"):
            m.pop(name, None)

    def _add_k_times(self, m, zd, out):
        """``out += K zd`` (the adjoint-weighted second derivatives of the map, :meth:`_weight_map`):
        ``K`` lives on (value, any) and, with an operator channel, (``d_i``, ``d_i``)."""
        k, o0, z0 = self.k, out[..., :, 0, :], zd[..., :, 0, :]
        o0.addcmul_(m["k00"], z0)
        if self.C > 1:
            o0 += (m["k0"] * zd[..., :, 1:, :]).sum(-2)
            out[..., :, 1:, :].addcmul_(m["k0"], z0.unsqueeze(-2))
        if self.has_h:
            out[..., :, 1:1 + k, :].addcmul_(m["kii"], zd[..., :, 1:1 + k, :])
        return out

    def _lead_jac(self, m, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        """The map's Jacobian (``transpose``: its transpose) on the LEADING neuron and channel dims
        of ``x (n, C, ..., q)``, the per-point factors broadcast over the middle dims: structured, no
        dense ``C x C`` blocks, a few in-place passes (the products are bound by their number):
        ``s'`` on the diagonal, column 0 ``j0`` below it and, with an operator channel, its row
        ``j_hi`` over the first derivatives."""
        k, mid = self.k, x.ndim - 3
        b = lambda t: t.reshape(t.shape[0], *t.shape[1:-1], *([1] * mid), t.shape[-1])   # (n, .., q) -> (n, .., 1.., q)
        out = x * b(m["s1"]).unsqueeze(1)
        if self.C == 1:
            return out
        j0 = b(m["j0"])
        if transpose:
            out[:, 0] += (j0 * x[:, 1:]).sum(1)
            if self.has_h:
                out[:, 1:1 + k].addcmul_(b(m["j_hi"]), x[:, -1:])
        else:
            out[:, 1:].addcmul_(j0, x[:, :1])
            if self.has_h:
                out[:, -1] += (b(m["j_hi"]) * x[:, 1:1 + k]).sum(1)
        return out

    @staticmethod
    def _lead_w(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``w`` on the leading dim of ``x``: one GEMM."""
        return (w @ x.reshape(x.shape[0], -1)).reshape(w.shape[0], *x.shape[1:])

    def _dense(self, m):
        """The map's Jacobian ``J[n, out, in, q]`` and adjoint-weighted second derivatives
        ``K[n, c, d, q]`` as dense per-neuron ``C x C`` blocks (for the full Hessian)."""
        C, k = self.C, self.k
        n, q = m["s1"].shape
        jac = m["s1"].new_zeros(n, C, C, q)
        kk = m["s1"].new_zeros(n, C, C, q)
        idx = torch.arange(C)
        jac[:, idx, idx] = m["s1"][:, None]
        jac[:, 1:, 0] = m["j0"]
        kk[:, 0, 0] = m["k00"]
        kk[:, 0, 1:] = kk[:, 1:, 0] = m["k0"]
        if self.has_h:
            jac[:, -1, 1:1 + k] = m["j_hi"]
            kk[:, 1 + torch.arange(k), 1 + torch.arange(k)] = m["kii"]
        return jac, kk

    def adjoints(self):
        """The residual's adjoints ``rho_l = d r / d z_l`` (n_l, C, q), output layer first: the
        backward pass seeded with the coefficients (the loss's ``delta`` is ``2 w r rho``)."""
        rho = [None] * self.n_layers
        r = self.coef[None]
        for l in range(self.n_layers - 1, -1, -1):
            rho[l] = r
            if l == 0:
                break
            ab = (self.layers[l][0].T @ r.reshape(r.shape[0], -1)).reshape(-1, self.C, self.q)
            r = self._jac_t(self.maps[l - 1], ab)
        return rho

    def residual_jacobian(self, output_bias: bool) -> torch.Tensor:
        """``d r / d theta`` (q, P) in the flat layout of theta (W row-major then b per layer; the
        output bias only with ``output_bias``): row q is ``(sum_c rho_l[i, c] a_l[j, c], rho_l[i, 0])``."""
        pieces = []
        for l, (rho, a) in enumerate(zip(self.adjoints(), self.acts)):
            pieces.append(torch.einsum("icq,jcq->qij", rho, a).reshape(self.q, -1))
            if l < self.n_layers - 1 or output_bias:
                pieces.append(rho[:, 0].T)
        return torch.cat(pieces, 1)

    def hessian_blocks(self, blocks: dict, diag: dict, cross: dict, sub: int) -> None:
        """Add this chunk's Hessian blocks ``(W~_l, W~_m)``, ``l <= m``, but for the Gauss-Newton part
        ``2 w J^T J`` (:meth:`residual_jacobian`), ``sub`` points at a time, in the GEMMs' native
        layouts (``W~ = [W b]``, ``J = fan-in + 1``): ``blocks[(l, m)]`` ``(n_l, n_m, J_l, J_m)`` the
        first term, ``diag[(l, l+1)]`` ``(n_{l+1}, n_l, J_l)`` and ``cross[(l, m)]``
        ``(n_{m-1}, n_l, n_m, J_l)`` the second.

        The channel-wise HBP recursion (``invfem.nn.hessian``'s algebra with every neuron a
        ``C``-vector) of the residual part: ``G_L = 0`` (the output is linear and r linear in it; its
        ``2 w a a^T`` is the Gauss-Newton part), ``G_l = J_l^T W_{l+1}^T G_{l+1} W_{l+1} J_l + K_l``,
        ``P_{l,m} = J_l^T W_{l+1}^T P_{l+1,m}``, ``T_{m,l} = d a_{m-1} / d z_l``; block ``(l, m)`` is
        ``sum_q sum_{c,d} P[i,c,k,d] A~_l[j,c] A~_m[j',d] + [l<m] sum_q sum_{c,d} delta_m[k,d]
        T[j',d,i,c] A~_l[j,c]``, each sum ONE GEMM with the channel pairs and points inner, over the
        pairs where ``P`` and ``T`` can be non-zero only (:func:`channel_pairs`). A diagonal block ``(l, l)``
        is symmetric (``G_l`` is): it gets ``U`` over the pairs ``c <= d`` (those with ``c = d``
        halved), and :meth:`PinnCurvature.hessian_hbp` adds ``U^T``."""
        C = self.C
        split = lambda flat: (flat, flat // C, flat % C)                 # flat index, first, second
        res, tan = (torch.tensor(p) for p in channel_pairs(self.k, self.has_h))
        upper = res[res // C <= res % C]
        pairs = {"res": split(res), "tan": split(tan), "upper": split(upper),
                 "half": 1.0 - 0.5 * (upper // C == upper % C).to(self.coef)}
        for start in range(0, self.q, sub):
            self._hessian_part(blocks, diag, cross, slice(start, min(start + sub, self.q)), pairs)

    def _hessian_part(self, blocks: dict, diag: dict, cross: dict, sl: slice, pairs) -> None:
        L, C = self.n_layers, self.C
        q = sl.stop - sl.start
        cut = lambda t: t[..., sl]
        maps = [{key: cut(v) for key, v in m.items()} for m in self.maps]
        dense = [self._dense(m) for m in maps]
        aug = []
        for a in self.acts:
            a = cut(a)
            one = a.new_zeros(1, C, q)
            one[0, 0] = 1.0
            aug.append(torch.cat([a, one]))                          # A~_l (J_l, C, q)
        delta = [cut(d) for d in self.delta]
        ws = [w for w, _ in self.layers]
        # G_l (n_l, C, n_l, C, q) of the residual part, from the last hidden layer down (G_L = 0)
        g = [None] * L
        for l in range(L - 2, -1, -1):
            jac, kk = dense[l]
            n = jac.shape[0]
            if g[l + 1] is None:
                gl = jac.new_zeros(n, C, n, C, q)
            else:                                                      # J^T W^T G W J, G symmetric
                wt = ws[l + 1].T
                h = self._lead_w(wt, self._lead_w(wt, g[l + 1]).permute(2, 3, 0, 1, 4).contiguous())
                y = self._lead_jac(maps[l], h, True).permute(2, 3, 0, 1, 4)
                gl = self._lead_jac(maps[l], y, True)
            gl.diagonal(dim1=0, dim2=2).add_(kk.permute(1, 2, 3, 0))   # + K_l on the neuron diagonal
            g[l] = gl
        for m in range(L - 1):
            p = g[m]
            for l in range(m, -1, -1):                                # P_{l,m}, l = m..0
                if l == m:                   # symmetric: the pairs c <= d, the block's transpose added later
                    self._term1(blocks, (l, m), p, aug[l], aug[m], pairs["upper"], pairs["half"])
                else:
                    self._term1(blocks, (l, m), p, aug[l], aug[m], pairs["res"])
                if l > 0:
                    p = self._lead_jac(maps[l - 1], self._lead_w(ws[l].T, p), True)
        for l in range(L - 1):
            jac = dense[l][0]
            # m = l + 1: T_{l+1,l} = J_l is neuron-diagonal: sum_d delta[k,d] J[i,d,c] at j' = i
            y = torch.einsum("kdq,idcq->kicq", delta[l + 1], jac)        # (n_{l+1}, n_l, C, q)
            right = aug[l].reshape(aug[l].shape[0], -1)
            part = (y.reshape(-1, C * q) @ right.T).reshape(y.shape[0], y.shape[1], -1)   # (k, i, j)
            diag[(l, l + 1)] += part                                       # [k, i, j] at j' = i
            t = None
            for m in range(l + 2, L):
                # T_{m,l} (n_{m-1}, C, n_l, C, q) = J_{m-1} W_{m-1} T_{m-1,l}
                if t is None:                                          # T_{l+2,l} = J_{l+1} W_{l+1} J_l
                    t = self._lead_jac(maps[l + 1], ws[l + 1][:, None, :, None, None] * jac.permute(1, 0, 2, 3), False)
                else:
                    t = self._lead_jac(maps[m - 1], self._lead_w(ws[m - 1], t), False)
                nj, ni = t.shape[0], t.shape[2]
                tan, ds, cs = pairs["tan"]                            # flat d C + c
                left = t.permute(0, 2, 1, 3, 4).reshape(nj * ni, C * C, q)[:, tan].reshape(nj * ni, -1)
                dm = delta[m]
                rhs = (dm[:, None, ds] * aug[l][None, :, cs]).reshape(dm.shape[0] * aug[l].shape[0], -1)
                cross[(l, m)].view(nj * ni, -1).addmm_(left, rhs.T)       # [j', i, k, j]

    @staticmethod
    def _term1(blocks, key, p, left, right, res, scale=None):
        """``sum_q sum_{(c,d) in res} s_cd P[i,c,k,d] A~_l[j,c] A~_m[j',d]`` into ``blocks[key]``
        ``(n_l, n_m, J_l, J_m)`` (``res`` the pairs' flat indices, c and d; ``scale`` the ``s_cd``,
        default 1): ONE GEMM with (channel pair, q) inner, ``P`` as the left factor and
        ``A~_l (x) A~_m`` per point as the right (more flops than a pre-contracted ``P A~_m``, but
        no ``n^2 J C`` per-point intermediate: 4-7x faster at pinn_heat's size, 1.4-4.3x faster than
        the pre-contraction under torch.compile: benchmarks/pinn_hbp_block.py)."""
        ni, C, nk, _, q = p.shape
        res, cs, ds = res                                                 # flat c C + d, c, d
        u = p.permute(0, 2, 1, 3, 4).reshape(ni * nk, C * C, q)[:, res].reshape(ni * nk, -1)
        v = left[:, None, cs] * right[None, :, ds]
        if scale is not None:
            v *= scale[:, None]
        blocks[key].view(ni * nk, -1).addmm_(u, v.reshape(left.shape[0] * right.shape[0], -1).T)

    # -- derivatives ---------------------------------------------------------------------------
    def gradient(self):
        """Per layer ``(dW, db)`` of this chunk's loss."""
        out = []
        for l in range(self.n_layers):
            d, a = self.delta[l], self.acts[l]
            out.append((d.reshape(d.shape[0], -1) @ a.reshape(a.shape[0], -1).T, d[:, 0].sum(-1)))
        return out

    def product(self, tangents):
        """Per layer ``(H V)_W (k, n_l, n_{l-1})`` and ``(H V)_b (k, n_l)`` for the directions
        ``tangents = [(dW (k, n_l, n_{l-1}), db (k, n_l)), ...]``: every GEMM a 2-D ``mm``/``addmm``
        with the directions folded into its rows or columns, but ``W`` times a batch of tangents
        (:func:`_add_shared_mm`)."""
        C, q, L = self.C, self.q, self.n_layers
        kd = tangents[0][0].shape[0]
        zdots, adots = [], [None]
        for l, ((w, _), (dw, db)) in enumerate(zip(self.layers, tangents)):
            a = self.acts[l]
            zd = (dw.reshape(-1, dw.shape[-1]) @ a.reshape(a.shape[0], -1)).reshape(kd, w.shape[0], C, q)
            if adots[l] is not None:
                _add_shared_mm(zd.view(kd, w.shape[0], -1), w, adots[l].view(kd, w.shape[1], -1))
            zd[:, :, 0] += db[:, :, None]
            zdots.append(zd)
            if l < L - 1:
                adots.append(self._jac(self.maps[l], zd))
        rdot = (self.coef * zdots[-1][:, 0]).sum(1)                          # (kd, q)
        ddot = ((2 * self.weight * rdot)[:, None, :] * self.coef)[:, None]   # (kd, 1, C, q)
        out = [None] * L
        for l in range(L - 1, -1, -1):
            w, dw = self.layers[l][0], tangents[l][0]
            a, delta = self.acts[l], self.delta[l]
            n_out, n_in = w.shape
            hw = (ddot.reshape(kd * n_out, -1) @ a.reshape(n_in, -1).T).view(kd, n_out, n_in)
            if adots[l] is not None:                # delta adot^T for every direction: one GEMM
                hw += (delta.reshape(n_out, -1) @ adots[l].reshape(kd * n_in, -1).T).view(n_out, kd, n_in).transpose(0, 1)
            out[l] = (hw, ddot[:, :, 0].sum(-1))
            if l == 0:
                break
            abdot = (dw.transpose(1, 2).reshape(kd * n_in, n_out) @ delta.reshape(n_out, -1)).view(kd, n_in, C, q)
            _add_shared_mm(abdot.view(kd, n_in, -1), w.T, ddot.reshape(kd, n_out, -1))
            ddot = self._add_k_times(self.maps[l - 1], zdots[l - 1], self._jac_t(self.maps[l - 1], abdot))
        return out


def _add_shared_mm(out: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> None:
    """``out[k] += w @ x[k]`` for every direction ``k`` (``out (k, m, N)``, ``x (k, n, N)``): ONE
    ``addmm`` for a single direction, the CG's case (the broadcast ``bmm`` measured 1.3x slower at
    pinn_heat's shapes), a ``baddbmm`` for a block."""
    if out.shape[0] == 1:
        out[0].addmm_(w, x[0])
    else:
        out.baddbmm_(w.expand(out.shape[0], *w.shape), x)


UNSUPPORTED = ("the closed-form PINN curvature needs an invfem MLP with one linear output and terms that are "
               "linear in the jet")


def supports_curvature(mlp, forms) -> bool:
    """Whether the closed form applies: an invfem MLP with one linear output (any activation)
    and every term given as a :class:`LinearForm`."""
    return (isinstance(mlp, MLP) and mlp.widths[-1] == 1 and mlp.phi is POSITIVITY[None]
            and all(form is not None for form in forms))


class PinnCurvature:
    """The loss ``sum_terms weight * sum_q r_q^2`` of the network ``mlp`` at one theta: ``value``,
    ``gradient()`` and ``apply(V)`` (``H V`` for a vector ``(P,)`` or a block ``(P, k)``), from
    the chunk states; ``forms`` with their coefficients in the network's channels
    (:func:`network_forms`)."""

    def __init__(self, mlp, forms, theta: torch.Tensor, chunk: int = DEFAULT_CHUNK):
        if not supports_curvature(mlp, forms):
            raise ConfigError(UNSUPPORTED)
        self.mlp, self.theta = mlp, theta.detach()
        self.layers = self.mlp.layers(self.theta)
        self.chunks = []
        for form in forms:
            coef = form.coef.to(self.theta)
            for start in range(0, form.points.shape[0], chunk):
                self.chunks.append(_Chunk(self.mlp, self.layers, form, coef,
                                          slice(start, min(start + chunk, form.points.shape[0]))))
        self.value = sum(c.value for c in self.chunks)

    def _flatten(self, parts, kd=None) -> torch.Tensor:
        bias = self.mlp.output_bias
        pieces = []
        for l, (hw, hb) in enumerate(parts):
            pieces.append(hw.reshape(-1) if kd is None else hw.reshape(kd, -1))
            if l < len(parts) - 1 or bias:
                pieces.append(hb)
        return torch.cat(pieces, -1)

    def _summed(self, per_chunk) -> list:
        """``per_chunk(chunk)`` (per layer ``(W part, b part)``) summed over the chunks."""
        total = None
        for c in self.chunks:
            part = per_chunk(c)
            total = part if total is None else [(a + x, b + y) for (a, b), (x, y) in zip(total, part)]
        return total

    def gradient(self) -> torch.Tensor:
        """``grad loss (P,)``."""
        return self._flatten(self._summed(lambda c: c.gradient()))

    def _tangents(self, v: torch.Tensor):
        """``V (P, k)`` as per-layer ``(dW (k, n_l, n_{l-1}), db (k, n_l))``."""
        kd, pos, out = v.shape[1], 0, []
        vt = v.T
        for l, (w, b) in enumerate(self.layers):
            dw = vt[:, pos:pos + w.numel()].reshape(kd, *w.shape)
            pos += w.numel()
            if l < len(self.layers) - 1 or self.mlp.output_bias:
                db = vt[:, pos:pos + b.numel()]
                pos += b.numel()
            else:
                db = vt.new_zeros(kd, b.numel())
            out.append((dw.contiguous(), db.contiguous()))
        return out

    def apply(self, v: torch.Tensor) -> torch.Tensor:
        """``H V``: ``v`` a vector ``(P,)`` or a block ``(P, k)``."""
        block = v if v.ndim == 2 else v[:, None]
        tangents = self._tangents(block.to(self.theta))
        out = self._flatten(self._summed(lambda c: c.product(tangents)), block.shape[1]).T
        return out if v.ndim == 2 else out[:, 0]

    def hessian_hbp(self, sub: int = 64) -> torch.Tensor:
        """The full ``(P, P)`` Hessian: the Gauss-Newton part ``2 w J^T J`` of every chunk (ONE GEMM
        over its points, :meth:`_Chunk.residual_jacobian`) plus the residual part by the channel-wise
        HBP recursion (:meth:`_Chunk.hessian_blocks`), ``sub`` points per contraction."""
        sizes = [(w.shape[0], w.shape[1] + 1) for w, _ in self.layers]
        new = self.theta.new_zeros
        pairs = [(l, m) for m in range(len(sizes)) for l in range(m + 1)]
        first = {(l, m): new(sizes[l][0], sizes[m][0], sizes[l][1], sizes[m][1]) for l, m in pairs}
        diag = {(l, l + 1): new(sizes[l + 1][0], sizes[l][0], sizes[l][1]) for l in range(len(sizes) - 1)}
        cross = {(l, m): new(sizes[m][1] - 1, sizes[l][0], sizes[m][0], sizes[l][1]) for l, m in pairs if m > l + 1}
        for c in self.chunks:
            c.hessian_blocks(first, diag, cross, sub)
        for l in range(len(sizes)):                    # the diagonal blocks hold U with block = U + U^T
            first[(l, l)] += first[(l, l)].permute(1, 0, 3, 2).clone()
        blocks = {key: b.permute(0, 2, 1, 3).contiguous() for key, b in first.items()}      # [i, j, k, j']
        for (l, m), d in diag.items():
            idx = torch.arange(d.shape[1])
            blocks[(l, m)][idx, :, :, idx] += d.permute(1, 2, 0)                            # j' = i
        for (l, m), c in cross.items():
            blocks[(l, m)][:, :, :, :-1] += c.permute(1, 3, 2, 0)                           # [j', i, k, j]
        # flat index of W~_l[i, j]: W row-major then b (the output bias dropped when absent)
        index, pos = [], 0
        for l, (n_out, fan) in enumerate(sizes):
            w_idx = pos + torch.arange(n_out * (fan - 1)).reshape(n_out, fan - 1)
            pos += n_out * (fan - 1)
            has_bias = l < len(sizes) - 1 or self.mlp.output_bias
            b_idx = (pos + torch.arange(n_out)) if has_bias else torch.full((n_out,), -1)
            pos += n_out if has_bias else 0
            index.append(torch.cat([w_idx, b_idx[:, None]], 1).reshape(-1))
        h = self.theta.new_empty(pos, pos)
        for (l, m), block in blocks.items():
            rows, cols = index[l], index[m]
            keep_r, keep_c = rows >= 0, cols >= 0
            b = block.reshape(rows.shape[0], cols.shape[0])[keep_r][:, keep_c]
            r, c = rows[keep_r], cols[keep_c]
            h[r[:, None], c[None, :]] = b
            if l != m:
                h[c[:, None], r[None, :]] = b.T
        for c in self.chunks:
            jr = c.residual_jacobian(self.mlp.output_bias)
            h.addmm_(jr.T, jr, alpha=2 * c.weight)
        return h

    def block_size(self) -> int:
        """Directions per product for :meth:`hessian_products` (:data:`BLOCK_ENTRIES`)."""
        per_direction = max(max(w.shape[0] for w, _ in self.layers) * c.C * c.q for c in self.chunks)
        return max(1, BLOCK_ENTRIES // per_direction)

    def hessian(self) -> torch.Tensor:
        """The full ``(P, P)`` Hessian, the Gauss-Newton GEMM plus the channel-wise HBP (:meth:`hessian_hbp`:
        8x faster than the products at reference 001's size: benchmarks/pinn_hessian.py)."""
        return self.hessian_hbp()

    def hessian_products(self, block: int | None = None) -> torch.Tensor:
        """The full ``(P, P)`` Hessian as the R-operator's product with the identity, ``block``
        columns at a time (default :meth:`block_size`)."""
        p = self.theta.shape[0]
        block = self.block_size() if block is None else block
        h = self.theta.new_empty(p, p)
        for start in range(0, p, block):
            stop = min(start + block, p)
            eye = self.theta.new_zeros(p, stop - start)
            eye[torch.arange(start, stop), torch.arange(stop - start)] = 1.0
            h[:, start:stop] = self.apply(eye)
        return h
