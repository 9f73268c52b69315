"""Cost of the exact Hessian of the poisson_fem loss against its flop bound and the generic one.

    python benchmarks/hessian_cost.py [--sizes 10 30 100] [--repeat 5] [--generic-limit 120]

For each P1 mesh (n x n squares) with the 921-parameter 2-20-20-20-1 MLP it prints the
median times of a gradient, an HVP and the structured Hessian (``problem.hessian``), and,
measured in the same run and interleaved with it:

* **bound**: one float64 ``(P x Q) (Q x P)`` product, i.e. ``2 P^2 Q`` flops — the cost of the
  closed-form network Hessian's GEMMs (Q quadrature points);
* **generic**: the batched generic Hessian :func:`invfem.derivatives.hessian` (vmap of
  forward-over-reverse HVPs over the unit vectors, ``--chunk`` at a time); where the full
  run would exceed ``--generic-limit`` seconds it is projected from one timed chunk (``~``).

Targets (issue 8): Hessian / bound <= 5 at 10x10 and <= 3 at 30x30 and 100x100;
generic / structured >= 10 at every size. Also: relative difference to the generic Hessian
(where computed), asymmetry, factorizations the Hessian took (1 expected).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.func import vmap

from invfem.files import save_figure
from invfem.derivatives import hessian, hvp, symmetry_error, value_and_grad
from invfem.problems.poisson_fem import make_problem
from _timing import interleaved


def generic_hessian_time(loss, theta, chunk, limit):
    """(seconds, Hessian or None, projected?) of the batched generic Hessian."""
    eye = torch.eye(theta.shape[0], dtype=theta.dtype)
    start = time.perf_counter()
    vmap(lambda v: hvp(loss, theta, v))(eye[:chunk])
    per_chunk = time.perf_counter() - start
    projected = per_chunk * theta.shape[0] / chunk
    if projected > limit:
        return projected, None, True
    start = time.perf_counter()
    h = hessian(loss, theta, chunk_size=chunk)
    return time.perf_counter() - start, h, False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=64, help="HVP directions per batch of the generic Hessian")
    parser.add_argument("--generic-limit", type=float, default=120.0)
    parser.add_argument("--figure", help="write a bar chart of the times (PNG) here")
    args = parser.parse_args(argv)
    rows = []
    torch.set_default_dtype(torch.float64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    header = (f"{'mesh':>7} {'dofs':>6} {'Q':>6} {'grad s':>8} {'hvp s':>8} {'hess s':>8} {'bound s':>8} "
              f"{'hess/bound':>10} {'generic s':>10} {'generic/hess':>12} {'rel.diff':>9} {'asym':>8} {'factor.':>7}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        p = make_problem(n=n, seed=0)
        theta, solver = p.theta0, p.info["solver"]
        n_params, n_quad = p.n_params, p.info["n_quad"]
        v = torch.randn(n_params, generator=torch.Generator().manual_seed(1))
        a, b = torch.randn(n_params, n_quad), torch.randn(n_quad, n_params)
        times = interleaved({"grad": lambda: value_and_grad(p.loss, theta), "hvp": lambda: hvp(p.loss, theta, v),
                             "hess": lambda: p.hessian(theta), "bound": lambda: a @ b}, args.repeat)
        t_grad, t_hvp = times["grad"], times["hvp"]
        solver.clear()
        solver.stats.reset()
        h = p.hessian(theta)
        factorizations = solver.stats.factorizations
        chunk = max(4, min(args.chunk, 1_000_000 // n_quad))          # vmap memory grows with chunk x Q
        t_generic, h_generic, projected = generic_hessian_time(p.loss, theta, chunk, args.generic_limit)
        diff = "-" if h_generic is None else f"{float(torch.linalg.norm(h - h_generic) / torch.linalg.norm(h_generic)):.1e}"
        mark = "~" if projected else " "
        print(f"{f'{n}x{n}':>7} {p.info['n_dofs']:>6} {n_quad:>6} {t_grad:8.4f} {t_hvp:8.4f} {times['hess']:8.3f} "
              f"{times['bound']:8.3f} {times['hess'] / times['bound']:10.2f} {mark}{t_generic:9.1f} "
              f"{mark}{t_generic / times['hess']:11.0f} {diff:>9} {symmetry_error(h):8.1e} {factorizations:>7}",
              flush=True)
        rows.append((f"{n}x{n}\nQ={n_quad}", times["hess"], times["bound"], t_generic, projected))
    if args.figure:
        plot(rows, args.figure)


def plot(rows, path):
    """Grouped bars (log scale): structured Hessian, its 2 P^2 Q GEMM bound, generic Hessian."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    for k, (label, color) in enumerate([("structured Hessian", "tab:blue"), ("bound: 2P²Q GEMM", "tab:gray"),
                                        ("generic batched Hessian", "tab:red")]):
        values = [r[1 + k] for r in rows]
        bars = ax.bar(x + (k - 1) * 0.27, values, 0.27, label=label, color=color)
        if k == 2:
            for bar, r in zip(bars, rows):
                if r[4]:
                    bar.set_hatch("//")
    ax.set_yscale("log")
    ax.set_xticks(x, [r[0] for r in rows])
    ax.set_ylabel("seconds")
    ax.set_title("poisson_fem, 921-parameter MLP: one exact Hessian")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
