"""Cost of gradient, Hessian-vector product and full Hessian of the poisson_fem loss.

    python benchmarks/hessian_cost.py [--sizes 10 50 100] [--repeat 5]

For each P1 mesh (n x n squares) with the 921-parameter 2-20-20-20-1 MLP it prints the
median times of a gradient and of an HVP (forward-over-reverse), the time of the full
structured Hessian (``problem.hessian``: J^T W J + network Hessian, one factorization),
the factorizations it took, and, in the same run, the time of the generic
``torch.autograd.functional.hessian`` on the same loss (skipped, with its projection from
a few rows, where it would exceed --generic-limit seconds). Targets (issue 2):
HVP <= 4x gradient; structured Hessian faster than generic.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from invfem.derivatives import hvp, symmetry_error, value_and_grad
from problems.poisson_fem import make_problem


def _median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _generic_projection(loss, theta, rows=5):
    x = theta.clone().requires_grad_(True)
    t = time.perf_counter()
    (g,) = torch.autograd.grad(loss(x), x, create_graph=True)
    for i in range(rows):
        torch.autograd.grad(g[i], x, retain_graph=True)
    per_row = (time.perf_counter() - t) / rows
    return per_row * theta.shape[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--generic-limit", type=float, default=600.0)
    args = parser.parse_args(argv)
    torch.set_default_dtype(torch.float64)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    header = (f"{'mesh':>8} {'dofs':>6} {'quad':>6} {'grad s':>8} {'hvp s':>8} {'hvp/grad':>8} {'hess s':>8} "
              f"{'factor.':>7} {'generic s':>10} {'generic/hess':>12} {'rel.diff':>9} {'asym':>8}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        p = make_problem(n=n, seed=0)
        theta, solver = p.theta0, p.info["solver"]
        v = torch.randn(p.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        value_and_grad(p.loss, theta), hvp(p.loss, theta, v)  # warm-up
        t_grad = _median_time(lambda: value_and_grad(p.loss, theta), args.repeat)
        t_hvp = _median_time(lambda: hvp(p.loss, theta, v), args.repeat)
        solver.clear()
        solver.stats.reset()
        t = time.perf_counter()
        h = p.hessian(theta)
        t_hess = time.perf_counter() - t
        factorizations = solver.stats.factorizations
        projected = _generic_projection(p.loss, theta)
        if projected <= args.generic_limit:
            t = time.perf_counter()
            h_generic = torch.autograd.functional.hessian(p.loss, theta)
            t_generic = time.perf_counter() - t
            diff = float(torch.linalg.norm(h - h_generic) / torch.linalg.norm(h_generic))
            generic, ratio, diff_s = f"{t_generic:10.2f}", f"{t_generic / t_hess:12.2f}", f"{diff:9.1e}"
        else:
            generic, ratio, diff_s = f"~{projected:9.0f}", f"~{projected / t_hess:11.1f}", f"{'-':>9}"
        print(f"{n:>3}x{n:<4} {p.info['n_dofs']:>6} {p.info['n_quad']:>6} {t_grad:8.4f} {t_hvp:8.4f} "
              f"{t_hvp / t_grad:8.2f} {t_hess:8.2f} {factorizations:>7} {generic} {ratio} {diff_s} "
              f"{symmetry_error(h):8.1e}", flush=True)


if __name__ == "__main__":
    main()
