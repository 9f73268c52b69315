"""One layer-pair block of the PINN HBP's first term, three ways (why the full Hessian is not within 5x).

    python benchmarks/pinn_hbp_block.py [--width 24] [--points 64] [--no-compile]

The block ``sum_q sum_{c,d} P[i,c,k,d] A_l[j,c] A_m[j',d]`` of ``invfem.pinn.curvature`` at
``pinn_heat``'s sizes (width 24, fan-in + 1 = 25, C = 4 channels, one sub-chunk of points):

1. the V-route ``invfem.pinn.curvature`` uses: ONE GEMM with (channel pair, point) inner over the
   9 channel pairs where the residual curvature can be non-zero;
2. the pre-contraction ``X = P A_m`` per point (C-fold fewer flops in the GEMM), in eager torch;
3. the same with ``torch.compile`` (inductor fusing the per-point contraction), if a compiler is
   at hand (``--no-compile`` skips it).

Prints ms, Gflop/s and the ratio to the V-route, measured in one run, with the largest difference
between the three results.
"""

from __future__ import annotations

import argparse
import time

import torch

from invfem.pinn.curvature import channel_pairs


def best_ms(fn, repeat: int = 20) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    n, c, q = args.width, 4, args.points
    j = n + 1
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(n, c, n, c, q, dtype=torch.float64, generator=gen)
    a_l = torch.randn(j, c, q, dtype=torch.float64, generator=gen)
    a_m = torch.randn(j, c, q, dtype=torch.float64, generator=gen)
    # the heat PINN's channels (value, d_x, d_y, h): the pairs where P^res can be non-zero
    pairs = torch.tensor(channel_pairs(c - 2, True)[0])
    mask = torch.zeros(c * c, dtype=torch.float64)
    mask[pairs] = 1.0
    p *= mask.reshape(c, c)[None, :, None, :, None]   # zero outside those pairs, as P^res is
    cs, ds = pairs // c, pairs % c

    def v_route():                                     # (i, k) x (j, j')
        u = p.permute(0, 2, 1, 3, 4).reshape(n * n, c * c, q)[:, pairs].reshape(n * n, -1)
        v = (a_l[:, None, cs] * a_m[None, :, ds]).reshape(j * j, -1)
        return (u @ v.T).reshape(n, n, j, j)

    def pre_contracted(p, a_m, a_l):                   # (i, k, j') x j
        x = torch.einsum("ickdq,jdq->ikjcq", p, a_m).reshape(n * n * j, c * q)
        return (x @ a_l.reshape(j, -1).T).reshape(n, n, j, j).transpose(2, 3)

    reference = v_route()
    flops_v = 2 * n * n * j * j * len(pairs) * q
    flops_pre = 2 * n * n * j * j * c * q + 2 * n * n * j * c * c * q
    rows = [("V-route: one GEMM over the 9 channel pairs (invfem)", best_ms(v_route), flops_v, 0.0)]
    out = pre_contracted(p, a_m, a_l)
    rows.append(("pre-contraction X = P A_m, eager", best_ms(lambda: pre_contracted(p, a_m, a_l)), flops_pre,
                 float((out - reference).abs().max())))
    compiled_note = "skipped (--no-compile)"
    if not args.no_compile:
        try:
            start = time.perf_counter()
            fused = torch.compile(pre_contracted)
            out = fused(p, a_m, a_l)
            compiled_note = f"compiled in {time.perf_counter() - start:.0f} s"
            rows.append(("pre-contraction, torch.compile (inductor)", best_ms(lambda: fused(p, a_m, a_l)), flops_pre,
                         float((out - reference).abs().max())))
        except Exception as exc:  # no compiler on the machine, or inductor refuses: say so and go on
            compiled_note = f"unavailable ({type(exc).__name__})"
    scale = float(reference.abs().max())
    print(f"block (n {n}, J {j}, C {c}, {q} points); torch threads {torch.get_num_threads()}; "
          f"torch.compile: {compiled_note}\n")
    print("| route | ms | Gflop/s | / V-route | max difference (relative) |")
    print("|---|---|---|---|---|")
    for label, ms, flops, diff in rows:
        print(f"| {label} | {ms:.2f} | {flops / ms / 1e6:.0f} | {ms / rows[0][1]:.2f} | {diff / scale:.1e} |")


if __name__ == "__main__":
    main()
