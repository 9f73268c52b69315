"""Cost of the PINN derivatives of ``pinn_heat`` (reference 001's size: 2,521 parameters, 10,000 points).

    python benchmarks/pinn_hessian.py [--n-points 10000] [--func-columns 16] [--small 1000]
                                      [--trncg 30] [--trncg-seconds 0] [--repeat 3] [--no-hessian]

Prints, all measured in one run on this machine:

1. the gradient (autograd, and the closed form of ``invfem.pinn.curvature``) and one Hessian-vector
   product (autograd's forward-over-reverse ``invfem.derivatives.hvp`` and the closed-form
   R-operator), each in gradients' time;
2. the full Hessian by the closed forms (the channel-wise HBP recursion, and P R-operator products)
   against its GEMM bound: the time of the float64 product
   ``(P x Q) (Q x P)`` of ``2 Q P^2`` flops (Q the residual rows, the cost of the Gauss-Newton
   part J^T J alone), and against ``torch.func.hessian`` — timed on ``--func-columns`` of its
   columns at full size (``vmap`` of forward-over-reverse, what ``jacfwd(jacrev)`` runs per
   chunk) and extrapolated to all P (torch.func.hessian itself, all columns in one batch, needs far
   more than 24 GB here: 64 columns in one batch were already killed for memory), and timed whole
   at ``--small`` points in batches of 64 columns, where both Hessians are compared entry by entry;
3. ``--trncg`` iterations of trust-ncg with reference 001's preset on the closed-form products
   (and the closed-form gradient of the same held state, what ``hessian_path`` gives a Krylov
   method): seconds per iteration, in gradients, with the CG iterations per step; with
   ``--trncg-seconds S`` a second run of S seconds of wall time, the cost per iteration over a
   longer run (the CG count grows as the loss falls).

``--no-hessian`` skips 2 (the full Hessians take minutes) for the derivative table and trust-ncg alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _timing import interleaved


def gemm_bound(p: int, q: int, repeat: int) -> float:
    a = torch.randn(p, q, dtype=torch.float64)
    b = torch.randn(q, p, dtype=torch.float64)
    return interleaved({"gemm": lambda: a @ b}, repeat)["gemm"]


def full_hessians(args, problem, q, t):
    """Table 2: the full Hessian by the closed forms against its GEMM bound and torch.func (``q`` the
    residual rows, ``t`` table 1's timings)."""
    from invfem.derivatives import hessian
    from invfem.experiment.run import load_problem
    loss, theta, p = problem.loss, problem.theta0, problem.n_params
    bound = gemm_bound(p, q, args.repeat)
    start = time.perf_counter()
    h = loss.curvature(theta).hessian_hbp()
    t_hbp = time.perf_counter() - start
    start = time.perf_counter()
    h_products = loss.curvature(theta).hessian_products()
    t_full = time.perf_counter() - start
    hbp_err = float((h_products - h).abs().max() / h.abs().max())
    del h_products
    grad_fn = torch.func.grad(loss)
    cols = torch.eye(p, dtype=torch.float64)[:args.func_columns]
    column = lambda u: torch.func.jvp(grad_fn, (theta,), (u,))[1]
    start = time.perf_counter()
    block = torch.func.vmap(column)(cols)
    t_cols = time.perf_counter() - start
    col_err = float((block.T - h[:, :args.func_columns]).abs().max() / h.abs().max())
    t_func = t_cols / args.func_columns * p
    print(f"\n| full Hessian ({p} x {p}) | s | / GEMM bound | vs torch.func |")
    print("|---|---|---|---|")
    print(f"| GEMM bound 2 Q P^2 = {2 * q * p * p / 1e9:.0f} Gflop (measured {2 * q * p * p / bound / 1e9:.0f} "
          f"Gflop/s) | {bound:.2f} | 1 | |")
    print(f"| closed form: Gauss-Newton GEMM + channel-wise HBP of the rest (the default) | {t_hbp:.1f} | "
          f"{t_hbp / bound:.1f} | "
          f"{t_func / t_hbp:.0f}x faster |")
    print(f"| closed form: P R-operator products | {t_full:.1f} | {t_full / bound:.0f} | "
          f"{t_func / t_full:.0f}x faster |")
    print(f"| autograd HVP column by column (the HVP row x P) | {t['hvp'] * p:.0f} | {t['hvp'] * p / bound:.0f} | "
          f"{t_func / (t['hvp'] * p):.1f}x faster |")
    print(f"| torch.func.hessian, {args.func_columns} columns timed, extrapolated | {t_func:.0f} | "
          f"{t_func / bound:.0f} | 1 |")
    print(f"\nHBP vs products: max relative difference {hbp_err:.1e}; "
          f"columns of torch.func vs HBP: max relative difference {col_err:.1e}; "
          f"symmetry {float((h - h.T).abs().max() / h.abs().max()):.1e}")
    del h, block

    small = load_problem("pinn_heat", seed=0, n_points=args.small)
    start = time.perf_counter()
    hs = small.loss.hessian(small.theta0)
    ts = time.perf_counter() - start
    start = time.perf_counter()
    hf = hessian(small.loss, small.theta0, chunk_size=64)
    tf = time.perf_counter() - start
    print(f"\nat {args.small} points, whole: closed form {ts:.1f} s, torch.func (vmap of forward-over-reverse, "
          f"64 columns at a time: all at once exceeds 24 GB) {tf:.1f} s ({tf / ts:.0f}x); "
          f"max relative difference {float((hs - hf).abs().max() / hf.abs().max()):.1e}")
    del hs, hf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-points", type=int, default=10000)
    parser.add_argument("--func-columns", type=int, default=16)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--trncg", type=int, default=30)
    parser.add_argument("--trncg-seconds", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-hessian", action="store_true", help="skip the full Hessians (table 2)")
    args = parser.parse_args()
    from invfem.derivatives import hvp, value_and_grad
    from invfem.experiment.run import load_problem
    from invfem.optim import minimize
    from invfem.structured import hessian_path

    problem = load_problem("pinn_heat", seed=0, n_points=args.n_points)
    loss, theta, p = problem.loss, problem.theta0, problem.n_params
    q = sum(term.points.shape[0] for term in loss.terms.values())
    torch.manual_seed(0)
    v = torch.randn(p, dtype=torch.float64)
    state = loss.curvature(theta)
    t = interleaved({"grad": lambda: value_and_grad(loss, theta), "grad_closed": state.gradient,
                     "state": lambda: loss.curvature(theta), "hvp": lambda: hvp(loss, theta, v),
                     "hvp_closed": lambda: state.apply(v)}, args.repeat)
    g = t["grad"]
    print(f"pinn_heat: {p} parameters, {q} residual rows; torch threads {torch.get_num_threads()}\n")
    print("| derivative | s | gradients |")
    print("|---|---|---|")
    for key, label in (("grad", "gradient (autograd)"), ("grad_closed", "gradient (closed form, state held)"),
                       ("state", "closed-form state at a new theta (forward, backward, maps)"),
                       ("hvp", "HVP (autograd forward-over-reverse)"), ("hvp_closed", "HVP (closed-form R-operator)")):
        print(f"| {label} | {t[key]:.4f} | {t[key] / g:.2f} |")
    err = float((state.apply(v) - hvp(loss, theta, v)).abs().max() / hvp(loss, theta, v).abs().max())
    print(f"\nclosed-form HVP vs autograd: max relative difference {err:.1e}")

    if not args.no_hessian:
        full_hessians(args, problem, q, t)

    path = hessian_path(problem)
    for iterations, seconds in ((args.trncg, None), (None, args.trncg_seconds or None)):
        if not iterations and not seconds:
            continue
        stop = None if seconds is None else (lambda state, s=seconds: state["time"] >= s)
        res = minimize(loss, theta, method="trust-ncg", callback=stop,
                       options={"preset": "reference-001", "maxiter": iterations or 10 ** 6, "gtol": 0},
                       **path.minimize_arguments("hvp"))
        steps = res.history[1:]
        times = [b["time"] - a["time"] for a, b in zip(res.history, steps)]
        inner = [s["inner_iterations"] for s in steps]
        per = statistics.mean(times)
        what = f"{len(steps)} iterations" if seconds is None else f"{seconds:g} s ({len(steps)} iterations)"
        print(f"\ntrust-ncg (reference-001 preset), {what}: {per:.3f} s per iteration = "
              f"{per / g:.1f} gradients (median {statistics.median(times) / g:.1f}, max {max(times) / g:.1f}); "
              f"CG iterations per step: mean {statistics.mean(inner):.1f}, median {statistics.median(inner):g}, "
              f"max {max(inner)}; {per / statistics.mean(inner) / g:.2f} gradients per CG iteration, overheads "
              f"included; loss {res.history[0]['f']:.3e} -> {res.fun:.3e}")


if __name__ == "__main__":
    main()
