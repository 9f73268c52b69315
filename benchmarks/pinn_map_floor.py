"""Where the PINN R-operator's time goes, and its floors (``pinn_heat``, 2,521 parameters, 10,000 points).

    python benchmarks/pinn_map_floor.py [--n-points 10000] [--repeat 11] [--rounds 3]

Prints, per round (all interleaved in one process, in gradients' time, the gradient being
autograd's):

1. the closed-form HVP as invfem runs it (``PinnCurvature.apply``);
2. the same product with the jet maps' passes (``_lead_jac``, ``_add_k_times``) replaced by the
   identity: its GEMMs and the rest alone, a floor for any implementation of the maps (the values
   are wrong; only the time is kept);
3. the same product with the maps' passes as ONE fused numba kernel each (when numba is
   installed; it is not a dependency of invfem): what fusing the 4-7 eager passes per map buys
   inside the product;
4. the chunk state's size and the time to stream it once from memory at the copy bandwidth
   measured in the same run (the maps read their per-point factors once per product);

and, in cache, one map Jacobian product at a 2,048-point chunk, eager against fused.
"""

from __future__ import annotations

import argparse
import time

import torch

from _timing import interleaved

try:
    import numba
    from numba import prange
except ImportError:                      # the fused rows are skipped
    numba = None


if numba is not None:
    @numba.njit(parallel=True, error_model="numpy", boundscheck=False)
    def _fused_jac(x, s1, j0, jhi, has_h, transpose, out):
        """out = J x (transpose: J^T x) for x (n, C, M, q): one pass, a row of q points at a time."""
        n, C, M, q = x.shape
        k = jhi.shape[1] if has_h else 0
        for t in prange(n * M):
            i, m = t // M, t % M
            s, x0, o0 = s1[i], x[i, 0, m], out[i, 0, m]
            for p in range(q):
                o0[p] = s[p] * x0[p]
            for c in range(1, C):
                xc, oc, jc = x[i, c, m], out[i, c, m], j0[i, c - 1]
                if transpose:
                    for p in range(q):
                        oc[p] = s[p] * xc[p]
                        o0[p] += jc[p] * xc[p]
                else:
                    for p in range(q):
                        oc[p] = s[p] * xc[p] + jc[p] * x0[p]
            if has_h:
                xh, oh = x[i, C - 1, m], out[i, C - 1, m]
                for j in range(k):
                    jj = jhi[i, j]
                    if transpose:
                        oj = out[i, 1 + j, m]
                        for p in range(q):
                            oj[p] += jj[p] * xh[p]
                    else:
                        xj = x[i, 1 + j, m]
                        for p in range(q):
                            oh[p] += jj[p] * xj[p]

    @numba.njit(parallel=True, error_model="numpy", boundscheck=False)
    def _fused_k(zd, k00, k0, kii, has_h, out):
        """out += K zd for zd, out (n, C, M, q): one pass."""
        n, C, M, q = zd.shape
        k = kii.shape[1] if has_h else 0
        for t in prange(n * M):
            i, m = t // M, t % M
            z0, o0, kk = zd[i, 0, m], out[i, 0, m], k00[i]
            for p in range(q):
                o0[p] += kk[p] * z0[p]
            for c in range(1, C):
                zc, oc, kc = zd[i, c, m], out[i, c, m], k0[i, c - 1]
                for p in range(q):
                    o0[p] += kc[p] * zc[p]
                    oc[p] += kc[p] * z0[p]
            for j in range(k):
                zj, oj, kj = zd[i, 1 + j, m], out[i, 1 + j, m], kii[i, j]
                for p in range(q):
                    oj[p] += kj[p] * zj[p]

_EMPTY = torch.zeros(1, 0, 1, dtype=torch.float64)


def fused_lead_jac(self, m, x, transpose):
    """``_Chunk._lead_jac`` by the fused kernel (leading neuron and channel dims, middle dims flat)."""
    n, C, q = x.shape[0], x.shape[1], x.shape[-1]
    x4 = x.reshape(n, C, -1, q)
    out = torch.empty_like(x4)
    _fused_jac(x4.numpy(), m["s1"].numpy(), m["j0"].numpy(), m.get("j_hi", _EMPTY).numpy(), "j_hi" in m,
               transpose, out.numpy())
    return out.view(x.shape)


def fused_add_k_times(self, m, zd, out):
    """``_Chunk._add_k_times`` by the fused kernel (``zd``, ``out`` with leading direction dims)."""
    lead = lambda t: t.movedim(tuple(range(t.ndim - 3)), tuple(range(2, t.ndim - 1))).reshape(
        t.shape[-3], t.shape[-2], -1, t.shape[-1])
    o4 = lead(out)
    if o4.data_ptr() != out.data_ptr():
        raise RuntimeError("out must move to a view, not a copy")
    _fused_k(lead(zd).numpy(), m["k00"].numpy(), m["k0"].numpy(), m.get("kii", _EMPTY).numpy(), "kii" in m,
             o4.numpy())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-points", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from invfem.derivatives import value_and_grad
    from invfem.experiment.run import load_problem
    from invfem.pinn.curvature import _Chunk

    problem = load_problem("pinn_heat", seed=0, n_points=args.n_points)
    loss, theta, p = problem.loss, problem.theta0, problem.n_params
    torch.manual_seed(0)
    v = torch.randn(p, dtype=torch.float64)
    state = loss.curvature(theta)
    eager = (_Chunk._lead_jac, _Chunk._add_k_times)

    def with_maps(jac, addk):
        def run():
            _Chunk._lead_jac, _Chunk._add_k_times = jac, addk
            try:
                return state.apply(v)
            finally:
                _Chunk._lead_jac, _Chunk._add_k_times = eager
        return run

    fns = {"grad": lambda: value_and_grad(loss, theta), "hvp": lambda: state.apply(v),
           "maps_identity": with_maps(lambda self, m, x, transpose: x, lambda self, m, zd, out: out)}
    if numba is not None:
        fns["maps_fused"] = with_maps(fused_lead_jac, fused_add_k_times)
        ref = state.apply(v)
        err = float((fns["maps_fused"]() - ref).abs().max() / ref.abs().max())
        print(f"fused maps' HVP against invfem's: max relative difference {err:.1e}")
    else:
        print("numba is not installed: the fused rows are skipped (pip install numba)")

    size = sum(t.numel() * 8 for c in state.chunks for t in
               [*c.acts, *c.delta, *(x for m in c.maps for x in m.values())])
    big = torch.randn(size // 8, dtype=torch.float64)
    dst = torch.empty_like(big)
    fns["stream_state"] = lambda: dst.copy_(big)          # reads and writes: twice the state's bytes

    print(f"\nstate: {size / 1e6:.0f} MB over {len(state.chunks)} chunks\n")
    print("| round | gradient [ms] | HVP | maps as identity (floor) | maps fused (numba) | copy bandwidth [GB/s] | "
          "stream the state once |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        t = interleaved(fns, args.repeat)
        g = t["grad"]
        bw = 2 * size / t["stream_state"]
        fused = f"{t['maps_fused'] / g:.3f}" if "maps_fused" in t else "—"
        print(f"| {r + 1} | {g * 1e3:.0f} | {t['hvp'] / g:.3f} | {t['maps_identity'] / g:.3f} | {fused} | "
              f"{bw / 1e9:.0f} | {size / bw / g:.3f} |")

    if numba is not None:
        chunk = next(c for c in state.chunks if c.C > 1)
        m = chunk.maps[1]
        x = torch.randn(m["s1"].shape[0], chunk.C, 1, chunk.q, dtype=torch.float64)
        reps = 50
        loop = lambda f: (lambda: [f() for _ in range(reps)])
        t = interleaved({"eager": loop(lambda: eager[0](chunk, m, x, False)),
                         "fused": loop(lambda: fused_lead_jac(chunk, m, x, False))}, args.repeat)
        print(f"\nin cache, one map Jacobian product at {chunk.q} points x {chunk.C} channels x "
              f"{x.shape[0]} neurons: eager {t['eager'] / reps * 1e6:.0f} us, fused {t['fused'] / reps * 1e6:.0f} us "
              f"({t['eager'] / t['fused']:.1f}x)")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\n({time.perf_counter() - start:.0f} s)")
